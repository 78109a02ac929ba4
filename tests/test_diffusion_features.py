"""UNet feature capture: block output at half image size, and the cut forward is exact."""

from __future__ import annotations

import pytest
import torch

from stabledrag.diffusion.features import FeatureExtractor, resolve_block
from stabledrag.diffusion.inversion import encode_prompt
from stabledrag.diffusion.tiny import build_tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=0, image_size=64)


def _inputs(pipe, seed=0):
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(1, 4, 8, 8, generator=g)
    return latent, encode_prompt(pipe, "a photo of a face")


def test_features_are_block_output_resized_to_half_image(pipe):
    latent, emb = _inputs(pipe)
    seen = {}
    handle = pipe.unet.up_blocks[2].register_forward_hook(lambda m, a, o: seen.setdefault("out", o))
    ext = FeatureExtractor(pipe.unet, "up_blocks.2", out_size=(32, 32))
    with torch.no_grad():
        feats, noise = ext(latent, 681, emb, need_noise=True)
    handle.remove()
    block = seen["out"]
    assert block.shape == (1, pipe.unet.config.block_out_channels[1], 8, 8)  # channels reversed
    assert feats.shape == (1, block.shape[1], 32, 32) and feats.dtype == torch.float32
    expected = torch.nn.functional.interpolate(block, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(feats, expected)
    assert noise.shape == latent.shape


@pytest.mark.parametrize("block", ["up_blocks.1", "up_blocks.2", "mid_block", "down_blocks.3"])
def test_cut_forward_gives_identical_features_and_latent_gradient(pipe, block):
    latent, emb = _inputs(pipe, seed=1)
    ext = FeatureExtractor(pipe.unet, block, out_size=(32, 32))
    weights = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))

    def run(need_noise):
        z = latent.clone().requires_grad_(True)
        feats, noise = ext(z, 681, emb, need_noise=need_noise)
        (feats * weights).abs().sum().backward()
        return feats.detach(), z.grad.detach(), noise

    f_cut, g_cut, n_cut = run(False)
    f_full, g_full, n_full = run(True)
    assert n_cut is None and n_full is not None
    assert torch.equal(f_cut, f_full)
    assert g_cut.abs().sum() > 0
    assert torch.allclose(g_cut, g_full, rtol=1e-6, atol=1e-9)
    assert ext.counts == {"cut": 1, "full": 1}


def test_cut_forward_skips_the_later_blocks(pipe):
    latent, emb = _inputs(pipe)
    calls = []
    hooks = [pipe.unet.up_blocks[3].register_forward_hook(lambda *a: calls.append("up3")),
             pipe.unet.conv_out.register_forward_hook(lambda *a: calls.append("out"))]
    try:
        ext = FeatureExtractor(pipe.unet, "up_blocks.2", out_size=(32, 32))
        with torch.no_grad():
            ext(latent, 681, emb, need_noise=False)
        assert calls == []
        with torch.no_grad():
            ext(latent, 681, emb, need_noise=True)
        assert calls == ["up3", "out"]
        # The hook is gone afterwards: a plain UNet call still runs to the end.
        with torch.no_grad():
            out = pipe.unet(latent, 681, encoder_hidden_states=emb).sample
        assert out.shape == latent.shape
    finally:
        for h in hooks:
            h.remove()


def test_unknown_block_names_the_valid_ones(pipe):
    with pytest.raises(ValueError, match="up_blocks.2"):
        resolve_block(pipe.unet, "up_blocks.9")
