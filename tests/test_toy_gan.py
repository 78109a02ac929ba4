"""The bundled toy GAN: its latent -> face recipe (`stabledrag.toy.gan_model`), its training program
(`scripts/train_gan.py`, tiny config), the discriminator, and the exported model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scripts import train_gan as T
from stabledrag.gan.checkpoints import TOY_MODEL_DIR, WEIGHTS_NAME, load_generator, load_native
from stabledrag.gan.discriminator import Discriminator, DiscriminatorConfig, minibatch_std
from stabledrag.toy import gan_model as M
from stabledrag.toy.detect import detect
from stabledrag.toy.render import render


def _tiny_trainer(adv: float = 0.0, seed: int = 0) -> T.Trainer:
    return T.Trainer(M.toy_generator_config("tiny"), T.TrainConfig(batch=2, adv_weight=adv, seed=seed))


# --- latent -> face ---------------------------------------------------------------------------


def test_face_from_z_gives_complete_faces_and_ignores_scale():
    rng = np.random.default_rng(3)
    for _ in range(6):
        z = rng.standard_normal(32)
        p = M.face_from_z(z)
        assert M.face_from_z(z) == p
        img, _ = render(p, 128)
        scaled, _ = render(M.face_from_z(3.0 * z), 128)  # the mapping network normalises z: so does the face
        assert np.abs(scaled.astype(int) - img.astype(int)).max() <= 1
        assert detect(img).complete
    a, b = M.face_from_z(rng.standard_normal(32)), M.face_from_z(rng.standard_normal(32))
    assert a != b


def test_face_from_z_rejects_short_latents():
    with pytest.raises(ValueError):
        M.face_from_z(np.zeros(M.FACE_DIMS - 1))


# --- discriminator ----------------------------------------------------------------------------


def test_discriminator_shape_and_gradients():
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorConfig(img_resolution=32, channel_base=64, channel_max=16))
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    out = D(x)
    assert out.shape == (4, 1)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in D.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    with pytest.raises(ValueError):
        D(torch.randn(2, 3, 16, 16))


def test_discriminator_downsamples_each_block_by_two():
    D = Discriminator(DiscriminatorConfig(img_resolution=32, channel_base=64, channel_max=16))
    x = D.from_rgb(torch.randn(2, 3, 32, 32))
    for r in D.block_resolutions:
        assert x.shape[-1] == r
        x = getattr(D, f"b{r}")(x)
    assert x.shape[-2:] == (4, 4)


def test_minibatch_std_sees_variety():
    same = torch.randn(1, 8, 4, 4).repeat(4, 1, 1, 1)
    y = minibatch_std(same, group_size=4)
    assert y.shape == (4, 9, 4, 4)
    assert y[:, -1].abs().max() < 1e-3  # identical samples: no spread
    y = minibatch_std(torch.randn(4, 8, 4, 4), group_size=4)
    assert y[:, -1].min() > 0.1


# --- training loop ----------------------------------------------------------------------------


def test_two_steps_then_resume_continues_identically(tmp_path):
    tr = _tiny_trainer()
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    for _ in range(2):
        stats = tr.step()
        assert np.isfinite(stats["loss"])
    assert tr.step_idx == 2 and tr.nimg == 4
    assert any(not torch.equal(before[k], v) for k, v in tr.G.state_dict().items())
    ckpt = tmp_path / "checkpoint.pt"
    tr.save(ckpt)
    back = T.Trainer.load(ckpt)
    assert back.step_idx == 2 and back.nimg == 4
    for k, v in tr.G_ema.state_dict().items():
        assert torch.equal(v, back.G_ema.state_dict()[k]), k
    # Same optimiser state and data stream: the next step is the same in both.
    tr.step()
    back.step()
    for k, v in tr.G.state_dict().items():
        assert torch.allclose(v, back.G.state_dict()[k], atol=1e-6), k


def test_adversarial_step_trains_the_discriminator():
    tr = _tiny_trainer(adv=0.5)
    assert tr.D is not None
    d_before = {k: v.clone() for k, v in tr.D.state_dict().items()}
    stats = tr.step()  # step 0 also applies lazy R1
    assert {"d_loss", "r1", "g_adv", "recon"} <= set(stats)
    assert any(not torch.equal(d_before[k], v) for k, v in tr.D.state_dict().items())


def test_cli_trains_resumes_and_exports(tmp_path):
    run, out = tmp_path / "run", tmp_path / "model"
    common = ["--size", "tiny", "--batch", "2", "--run-dir", str(run), "--out", str(out), "--gate-n", "2",
              "--threads", "1"]
    assert T.main(common + ["--max-steps", "2"]) == 0
    assert (run / "checkpoint.pt").is_file() and (run / "log.txt").is_file()
    assert list(run.glob("samples_*.png"))
    assert T.main(common + ["--max-steps", "3", "--resume"]) == 0
    sd = torch.load(run / "checkpoint.pt", weights_only=True)
    assert sd["step"] == 3
    G = load_native(out)
    assert G.img_resolution == 32 and G.config.feature_res == 16
    info = json.loads((out / T.TRAINING_INFO_NAME).read_text())
    assert info["steps"] == 3
    img = G(G.seed_to_z(0))
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()


# --- the bundled model ------------------------------------------------------------------------


@pytest.mark.skipif(not (TOY_MODEL_DIR / WEIGHTS_NAME).is_file(),
                    reason="the toy GAN has not been exported yet (python -m scripts.train_gan)")
def test_bundled_toy_gan_renders_128px():
    G = load_generator(None, device="cpu")
    assert G.img_resolution == 128
    assert G.config.drag_feature_res in G.synthesis.block_resolutions
    with torch.no_grad():
        img = G(G.seed_to_z(0), truncation_psi=0.7)
    assert img.shape == (1, 3, 128, 128) and torch.isfinite(img).all()
    assert float(img.std()) > 0.05  # an image, not a constant
    size = sum(p.stat().st_size for p in TOY_MODEL_DIR.iterdir() if p.is_file())
    assert size < 20 * 2 ** 20
