"""DDIM inversion/denoising round trip and reference-latent control (source K/V in self-attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stabledrag.diffusion.attention import reference_attention, self_attention_layers
from stabledrag.diffusion.inversion import (InversionConfig, ddim_denoise, ddim_invert, decode_latent,
                                            denoise_timesteps, encode_image, encode_prompt, make_schedulers,
                                            start_timestep)
from stabledrag.diffusion.tiny import SD15_SCHEDULER_CONFIG, build_tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=0, image_size=64)


def _image(seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    arr = np.stack([xx * 3 + 20, yy * 3 + 30, 140 + 0 * xx], -1).astype(np.uint8)
    cx, cy = rng.integers(20, 44, size=2)
    arr[(xx - cx) ** 2 + (yy - cy) ** 2 < 100] = (250, 200, 40)
    return Image.fromarray(arr)


def test_default_schedule_lands_on_681():
    cfg = InversionConfig()
    assert cfg.inverse_steps == 35
    fwd, inv = make_schedulers(SD15_SCHEDULER_CONFIG, cfg)
    assert start_timestep(fwd, cfg) == 681
    assert int(inv.timesteps[cfg.inverse_steps - 1]) == 681
    steps = denoise_timesteps(fwd, cfg)
    assert len(steps) == 35 and steps[0] == 681 and steps[-1] == 1
    with pytest.raises(ValueError):
        InversionConfig(num_steps=10, strength=0.01)


def test_inversion_then_denoising_reconstructs_the_latent(pipe):
    cfg = InversionConfig(num_steps=20, strength=0.6)
    emb = encode_prompt(pipe, "a photo")
    x0 = encode_image(pipe.vae, _image())
    assert x0.shape == (1, 4, 8, 8)
    events = []
    z_t, t = ddim_invert(pipe.unet, pipe.scheduler.config, x0, emb, cfg, progress=events.append)
    assert t == start_timestep(make_schedulers(pipe.scheduler.config, cfg)[0], cfg)
    assert [e.phase for e in events] == ["inversion"] * (cfg.inverse_steps + 1)
    assert not torch.allclose(z_t, x0)  # it did move to a noisy latent
    rec = ddim_denoise(pipe.unet, pipe.scheduler.config, z_t, emb, cfg)
    err = (rec - x0).abs().mean()
    # Chance level: denoising random latents of the same spread from the same step.
    g = torch.Generator().manual_seed(0)
    chance = torch.stack([
        (ddim_denoise(pipe.unet, pipe.scheduler.config, torch.randn(z_t.shape, generator=g) * z_t.std() + z_t.mean(),
                      emb, cfg) - x0).abs().mean()
        for _ in range(2)
    ]).min()
    # (A random-weight UNet is far less smooth than a trained one, so DDIM inversion is only
    # approximate here: ~0.09 vs ~0.5 at 12 steps.)
    assert err < 0.3 * chance, (float(err), float(chance))
    # and the decoded image is closer to the decoded source than the random reconstructions are
    with torch.no_grad():
        img_err = (decode_latent(pipe.vae, rec) - decode_latent(pipe.vae, x0)).abs().mean()
    assert float(img_err) < 0.5


def test_self_attention_layers_follow_execution_order(pipe):
    names = self_attention_layers(pipe.unet, "up_blocks.2")
    assert len(names) == 6  # like SD 1.5's layers 10-15
    assert all(n.startswith(("up_blocks.2.", "up_blocks.3.")) and n.endswith("attn1") for n in names)
    assert names == sorted(names)
    with_mid = self_attention_layers(pipe.unet, "mid_block")
    assert with_mid[0].startswith("mid_block") and len(with_mid) == 10  # mid first, though listed last
    assert len(self_attention_layers(pipe.unet, "down_blocks.0")) == 16


def test_reference_attention_keeps_source_and_changes_edited_branch(pipe):
    g = torch.Generator().manual_seed(3)
    src, edit = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    emb = encode_prompt(pipe, "").expand(2, -1, -1)
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    with torch.no_grad():
        plain = pipe.unet(torch.cat([src, edit]), 681, encoder_hidden_states=emb).sample
        with reference_attention(pipe.unet, "up_blocks.2") as proc:
            ctrl = pipe.unet(torch.cat([src, edit]), 681, encoder_hidden_states=emb).sample
            calls = proc.calls
            # identical branches: sharing the source K/V changes nothing
            same = pipe.unet(torch.cat([src, src]), 681, encoder_hidden_states=emb).sample
    assert calls == 6
    assert torch.allclose(ctrl[0], plain[0], atol=1e-5)  # the source branch is untouched
    assert not torch.allclose(ctrl[1], plain[1], atol=1e-4)  # the edited one sees source K/V
    assert torch.allclose(same[1], plain[0], atol=1e-5)
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before  # restored


def test_reference_attention_restores_processors_after_errors(pipe):
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    with pytest.raises(RuntimeError):
        with reference_attention(pipe.unet, "up_blocks.1"):
            raise RuntimeError("boom")
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before
    with pytest.raises(ValueError):
        with reference_attention(pipe.unet, "decoder"):  # not a UNet block name
            pass
    assert len(self_attention_layers(pipe.unet, "up_blocks.0")) == 9  # UpBlock2D has none; later ones do
