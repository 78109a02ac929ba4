"""Precision choices, checked on the CPU: native-bf16 detection, CPU refusal of half precision, the
fp16 gradient scaling through the UNet, and the VAE's fp32 fallback where fp16 overflows."""

from __future__ import annotations

import pytest
import torch

from stabledrag import device as devmod
from stabledrag.diffusion import features as feat_mod
from stabledrag.diffusion.features import FeatureExtractor
from stabledrag.diffusion.inversion import decode_latent
from stabledrag.diffusion.tiny import build_tiny_pipeline
from stabledrag.errors import UserError


@pytest.mark.parametrize("capability,bf16_flag,expected", [
    ((7, 5), True, torch.float16),   # T4: is_bf16_supported() may say True, but it is emulated
    ((7, 0), True, torch.float16),   # V100
    ((8, 0), True, torch.bfloat16),  # A100
    ((9, 0), True, torch.bfloat16),  # H100
    ((8, 6), False, torch.float16),
])
def test_default_dtype_needs_native_bf16(monkeypatch, capability, bf16_flag, expected):
    monkeypatch.delenv("STABLEDRAG_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_flag)
    assert devmod.default_dtype(torch.device("cuda")) == expected
    monkeypatch.setenv("STABLEDRAG_DTYPE", "fp32")
    assert devmod.default_dtype(torch.device("cuda")) == torch.float32


def test_cpu_is_fp32_and_half_on_cpu_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("STABLEDRAG_DTYPE", raising=False)
    assert devmod.choose("cpu") == (torch.device("cpu"), torch.float32)
    assert devmod.choose("cpu", "auto") == (torch.device("cpu"), torch.float32)
    with pytest.raises(UserError, match="--dtype fp32"):
        devmod.choose("cpu", "fp16")
    monkeypatch.setenv("STABLEDRAG_DTYPE", "bf16")
    with pytest.raises(UserError, match="STABLEDRAG_DTYPE"):
        devmod.choose("cpu")


def test_cli_and_app_accept_dtype():
    from stabledrag.cli import build_parser
    from stabledrag.webapp.args import parse_args

    ns = build_parser().parse_args(["edit", "--dtype", "fp16", "--drag", "1,1:5,5", "--out", "o.png"])
    assert ns.dtype == "fp16"
    assert parse_args(["--dtype", "bf16"]).dtype == "bf16" and parse_args([]).dtype is None


def _latent_grad(unet, weight, scale=None, monkeypatch=None):
    if scale is not None:
        monkeypatch.setattr(feat_mod, "FP16_GRAD_SCALE", scale)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 8, 8, generator=g).requires_grad_(True)
    emb = torch.randn(1, 77, 32, generator=g).to(unet.dtype)
    feats, _ = FeatureExtractor(unet, "up_blocks.0")(z, 500, emb)
    (weight * feats.sum()).backward()
    return z.grad


def test_fp16_drag_gradients_are_scaled_through_the_unet(monkeypatch):
    pipe = build_tiny_pipeline(seed=0)
    # A small loss (1e-6 x the feature sum: latent gradients ~1e-7, below fp16's normal range).
    ref = _latent_grad(pipe.unet, 1e-6)  # fp32: the exact gradient
    half = build_tiny_pipeline(seed=0).unet.half()
    scaled = _latent_grad(half, 1e-6)
    assert scaled.dtype == torch.float32 and torch.isfinite(scaled).all()
    rel = (scaled - ref).norm() / ref.norm()
    assert rel < 0.02, float(rel)  # as accurate as fp16 gets at loss weight 1 (measured 0.003)
    unscaled = _latent_grad(half, 1e-6, scale=1.0, monkeypatch=monkeypatch)  # without it: underflow
    assert (unscaled - ref).norm() / ref.norm() > 0.5


def test_fp16_vae_falls_back_to_fp32_where_it_overflows():
    pipe = build_tiny_pipeline(seed=0)
    with torch.no_grad():
        w = pipe.vae.decoder.conv_out.weight
        w.mul_(4e4 / float(w.abs().max()))  # weights still fit fp16 (< 65504), outputs do not
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = decode_latent(pipe.vae, z)
        pipe.vae.half()
        assert not torch.isfinite(pipe.vae.decode(z.half() / pipe.vae.config.scaling_factor).sample).all()
        out = decode_latent(pipe.vae, z)
    assert torch.isfinite(out).all() and pipe.vae.dtype == torch.float16
    assert torch.allclose(out.float(), ref, rtol=1e-3, atol=1e-2 * float(ref.abs().max()))
