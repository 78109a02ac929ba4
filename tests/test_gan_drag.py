"""Dragging on a tiny random StyleGAN2: W+ handling, gradients, mask loss, editor, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stabledrag.gan.presets import gan_defaults
from stabledrag.drag import Backend
from stabledrag.errors import UserError
from stabledrag.gan.checkpoints import save_native
from stabledrag.gan.editor import GanEditor
from stabledrag.gan.networks import Generator, GeneratorConfig
from stabledrag.points import from_pairs
from stabledrag.sampling import sample_features


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32,
                          mapping_layers=2)
    return Generator(cfg)  # 8 ws; drag features from b16, resized to 32 x 32


def editor_for(G: Generator, seed: int = 1, **kw) -> GanEditor:
    ed = GanEditor(G, **kw)
    ed.generate(seed, truncation_psi=0.7)
    return ed


def test_backend_protocol_and_shapes(G):
    ed = editor_for(G)
    be = ed.backend()
    assert isinstance(be, Backend)
    assert be.image_size == (32, 32) and be.feature_res == 16
    state = be.initial_state()
    out = be.features(state)
    assert out.features.shape == (G.config.channels(16), 32, 32)
    prev = be.preview(state, out)
    assert prev.shape == (32, 32, 3) and prev.dtype == np.uint8
    assert np.array_equal(prev, ed.image())  # finishing from the drag block = full render


def test_gradients_reach_the_latent(G):
    be = editor_for(G).backend()
    state = be.initial_state()
    (w_opt,) = be.parameters(state)
    assert w_opt.requires_grad and w_opt.shape == (1, 6, 32)
    feats = be.features(state).features
    sample_features(feats, torch.tensor([[10.0, 12.0]])).sum().backward()
    assert w_opt.grad is not None and torch.isfinite(w_opt.grad).all() and w_opt.grad.abs().sum() > 0
    assert state.w_fixed.grad is None


def test_w_plus_drag_changes_only_the_first_six_vectors(G):
    ed = editor_for(G, feature_res=32)  # the b32 block depends on all six optimised ws
    w0 = ed.latent()
    sess = ed.session(from_pairs([((12, 14), (17, 14))]), gan_defaults("baseline", 32, max_steps=4))
    sess.run()
    w = ed.latent()
    changed = (w - w0).abs().amax(dim=-1)[0]
    assert (changed[:6] > 0).all()
    assert torch.equal(w[:, 6:], w0[:, 6:])


def test_w_mode_moves_one_vector_repeated(G):
    ed = editor_for(G)
    w0 = ed.latent()
    ed.session(from_pairs([((12, 14), (17, 14))]), gan_defaults("baseline", 32, max_steps=3), w_plus=False).run()
    w = ed.latent()
    assert not torch.equal(w[:, 0], w0[:, 0])
    assert all(torch.equal(w[:, i], w[:, 0]) for i in range(6))
    assert torch.equal(w[:, 6:], w0[:, 6:])


def test_mask_loss_is_draggan_form_and_skipped_without_two_regions(G):
    ed = editor_for(G)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    be = ed.backend(mask=mask)
    state = be.initial_state()
    ref = be.features(state)
    assert float(be.mask_loss(state, ref, ref).detach()) == 0.0
    with torch.no_grad():
        state.w_opt.add_(0.5)
    out = be.features(state)
    fixed = torch.from_numpy(~mask).float()
    expected = ((out.features - ref.features).abs() * fixed).mean()
    assert torch.allclose(be.mask_loss(state, out, ref), expected)
    assert ed.backend(mask=np.ones((32, 32), bool)).mask_loss(state, out, ref) is None
    assert ed.backend().mask_loss(state, out, ref) is None
    with pytest.raises(UserError):
        ed.backend(mask=np.ones((16, 16), bool))


def test_a_small_drag_moves_the_handle_content_towards_the_target(G):
    ed = editor_for(G, seed=2)
    handle, target = (14.0, 16.0), (19.0, 16.0)
    line = [(handle[0] + d, handle[1]) for d in range(-3, 9)]  # along the drag, past the target

    def best_match_x(feats: torch.Tensor, template: torch.Tensor) -> float:
        dist = (sample_features(feats, torch.tensor(line)) - template).norm(dim=1)
        return line[int(dist.argmin())][0]

    be0 = ed.backend()
    with torch.no_grad():
        f0 = be0.features(be0.initial_state()).features
    template = sample_features(f0, torch.tensor([handle]))[0]
    assert best_match_x(f0, template) == handle[0]

    result = ed.session(from_pairs([(handle, target)]), gan_defaults("baseline", 32, max_steps=40, lr=2e-2)).run()
    be1 = ed.backend()
    with torch.no_grad():
        f1 = be1.features(be1.initial_state()).features
    # The tracked handle ends near the target, and (measured here, independently of the session's
    # tracker) the place along the drag line that best matches the original handle feature moved
    # from the handle to within 2 px of the target.
    assert float(result.distances[0]) <= 2.0
    assert abs(best_match_x(f1, template) - target[0]) <= 2.0


def test_editor_session_continues_and_reset_restores(G, tmp_path):
    ed = editor_for(G)
    img0 = ed.image()
    w0 = ed.latent()
    cfg = gan_defaults("baseline", 32, max_steps=2)
    ed.session(from_pairs([((12, 14), (17, 14))]), cfg).run()
    w1 = ed.latent()
    assert not torch.equal(w1, w0)
    sess = ed.session(from_pairs([((12, 14), (17, 14))]), cfg)
    assert torch.equal(sess.backend.w_start, w1)  # Start again continues from the dragged latent
    sess.run()
    assert not torch.equal(ed.latent(), w1)

    for name in ("w.npy", "w.pt"):
        saved = ed.latent()
        if name.endswith(".pt"):
            torch.save(saved, tmp_path / name)
        else:
            np.save(tmp_path / name, saved.numpy())
        ed.reset()
        assert torch.equal(ed.latent(), w0) and np.array_equal(ed.image(), img0)
        ed.load_latent(tmp_path / name)
        assert torch.equal(ed.latent(), saved)
        ed.set_latent(w0)


def test_editor_rejects_points_outside_the_image(G):
    ed = editor_for(G)
    with pytest.raises(UserError):
        ed.session(from_pairs([((12, 14), (40, 14))]))


def test_cli_generate_and_edit(G, tmp_path):
    from PIL import Image

    from stabledrag.cli import main

    model = tmp_path / "model"
    save_native(G, model)
    assert main(["generate", "--model", str(model), "--seed", "3", "--device", "cpu",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (32, 32)

    mask = np.zeros((32, 32), np.uint8)
    mask[4:28, 4:28] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code = main(["edit", "--backend", "gan", "--model", str(model), "--seed", "3", "--device", "cpu",
                 "--drag", "12,14:16,14", "--mask", str(tmp_path / "mask.png"), "--method", "baseline",
                 "--steps", "3", "--set", "lr=0.01", "--quiet", "--out", str(tmp_path / "e.png"),
                 "--report", str(tmp_path / "r.json")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["config"]["lr"] == 0.01 and report["config"]["max_steps"] == 3
    assert report["steps"] <= 3 and len(report["final_distances"]) == 1
    assert len(report["trajectory"][0]) == 1 and "per_step" in report["timings"]
    assert Image.open(tmp_path / "e.png").size == (32, 32)
    assert main(["edit", "--backend", "gan", "--model", str(model), "--drag", "12,14:99,14",
                 "--device", "cpu", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["edit", "--backend", "gan", "--model", str(model), "--drag", "12,14:16,14", "--set", "nope=1",
                 "--device", "cpu", "--out", str(tmp_path / "x.png")]) == 2
