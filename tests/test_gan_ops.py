"""The resampling ops against naive references written from their definitions, and one
synthesis layer against a naive re-statement of StyleGAN2's modulated convolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stabledrag.gan import ops
from stabledrag.gan.networks import SynthesisLayer


def naive_upfirdn(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int],
                  flip: bool = False, gain: float = 1.0) -> np.ndarray:
    """scipy.signal.upfirdn-style definition on one `H x W` channel, by explicit loops:
    insert up-1 zeros after each sample, pad (x0, x1, y0, y1; negative crops), convolve
    ('valid' mode, true convolution unless flip), keep every down-th sample."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    x0, x1, y0, y1 = pad
    u = np.pad(u, ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[max(-y0, 0): u.shape[0] - max(-y1, 0), max(-x0, 0): u.shape[1] - max(-x1, 0)]
    k = f * gain
    fh, fw = k.shape
    oh, ow = u.shape[0] - fh + 1, u.shape[1] - fw + 1
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            acc = 0.0
            for a in range(fh):
                for b in range(fw):
                    # true convolution: out[i, j] = sum u[i + fh-1-a, j + fw-1-b] * k[a, b]
                    kv = k[fh - 1 - a, fw - 1 - b] if flip else k[a, b]
                    acc += u[i + fh - 1 - a, j + fw - 1 - b] * kv
            out[i, j] = acc
    return out[::down, ::down]


def full_conv2d(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'full' 2D true convolution by loops."""
    h, w = x.shape
    kh, kw = k.shape
    out = np.zeros((h + kh - 1, w + kw - 1))
    for i in range(h):
        for j in range(w):
            out[i: i + kh, j: j + kw] += x[i, j] * k
    return out


@pytest.mark.parametrize("up,down,pad,flip,gain", [
    (1, 1, (1, 2, 0, 3), False, 1.0),
    (2, 1, (2, 1, 2, 1), False, 4.0),
    (1, 2, (1, 1, 1, 1), False, 1.0),
    (2, 2, (-1, 2, 3, -2), True, 2.0),
    (3, 1, (0, 0, 0, 0), True, 1.0),
])
def test_upfirdn2d_matches_naive_definition(up, down, pad, flip, gain):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 6, 7).astype(np.float32)
    f = rng.rand(4, 3).astype(np.float32)  # asymmetric, so flips and offsets matter
    got = ops.upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=list(pad),
                        flip_filter=flip, gain=gain).numpy()
    for n in range(2):
        for c in range(3):
            ref = naive_upfirdn(x[n, c].astype(np.float64), f.astype(np.float64), up, down, pad, flip, gain)
            assert got[n, c].shape == ref.shape
            np.testing.assert_allclose(got[n, c], ref, rtol=1e-5, atol=1e-5)


def test_up_and_downsample_keep_constants_and_shapes():
    f = ops.setup_filter([1, 3, 3, 1])
    assert torch.allclose(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 8, 8), 3.0)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # Away from the zero-padded border a constant stays constant.
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.tensor(3.0), atol=1e-5)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(3.0), atol=1e-5)


def test_upsample2d_matches_naive_reference():
    rng = np.random.RandomState(1)
    x = rng.randn(1, 1, 5, 5)
    f = ops.setup_filter([1, 3, 3, 1])
    got = ops.upsample2d(torch.from_numpy(x).float(), f).numpy()[0, 0]
    ref = naive_upfirdn(x[0, 0], f.double().numpy(), 2, 1, (2, 1, 2, 1), gain=4.0)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_conv2d_resample_up2_matches_zero_insertion_then_filters():
    """StyleGAN2's up-conv equals: insert zeros, convolve with the 3x3 weight (a true convolution,
    as flip_weight=False says), convolve with 4*f, keep the centred 2H x 2W window starting at 2."""
    rng = np.random.RandomState(2)
    x = rng.randn(1, 2, 5, 5)
    w = rng.randn(3, 2, 3, 3)
    f = ops.setup_filter([1, 3, 3, 1]).double().numpy()
    got = ops.conv2d_resample(torch.from_numpy(x).float(), torch.from_numpy(w).float(),
                              f=torch.from_numpy(f).float(), up=2, padding=1, flip_weight=False).numpy()
    assert got.shape == (1, 3, 10, 10)
    for o in range(3):
        acc = np.zeros((10 + 2 + 3, 10 + 2 + 3))
        for i in range(2):
            xz = np.zeros((10, 10))
            xz[::2, ::2] = x[0, i]
            acc += full_conv2d(full_conv2d(xz, w[o, i]), 4 * f)
        np.testing.assert_allclose(got[0, o], acc[2:12, 2:12], rtol=1e-4, atol=1e-4)


def test_conv2d_resample_same_padding_is_plain_correlation():
    x = torch.randn(1, 2, 6, 6)
    w = torch.randn(4, 2, 3, 3)
    got = ops.conv2d_resample(x, w, padding=1)
    assert torch.allclose(got, torch.nn.functional.conv2d(x, w, padding=1), atol=1e-6)


def test_bias_act_order_bias_act_gain_clamp():
    x = torch.tensor([[-2.0, 0.5, 3.0]]).T[None]  # 1 x 3 x 1
    b = torch.tensor([1.0, -1.0, 0.0])
    y = ops.bias_act(x, b, act="lrelu", gain=2.0, clamp=4.0)
    ref = torch.tensor([-1.0 * 0.2 * 2, -0.5 * 0.2 * 2, 3.0 * 2]).clamp(-4, 4)
    assert torch.allclose(y.flatten(), ref)


def test_synthesis_layer_matches_naive_modulated_convolution():
    """conv1-type layer: styles = affine(w); weight * styles, demodulated per output channel;
    'same' correlation; + noise_const * strength; + bias; lrelu * sqrt(2); clamp."""
    torch.manual_seed(0)
    layer = SynthesisLayer(4, 5, w_dim=6, resolution=8, conv_clamp=0.8)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
        layer.affine.bias.normal_()
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(2, 6)
    got = layer(x, w, noise_mode="const")

    ref = torch.empty_like(got)
    for n in range(2):
        s = w[n] @ (layer.affine.weight / math.sqrt(6)).T + layer.affine.bias  # equalised lr, gain 1
        wt = layer.weight * s[None, :, None, None]
        wt = wt / torch.sqrt((wt ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xp = torch.nn.functional.pad(x[n], (1, 1, 1, 1))
        out = torch.zeros(5, 8, 8)
        for i in range(8):
            for j in range(8):
                out[:, i, j] = (wt * xp[None, :, i:i + 3, j:j + 3]).sum(dim=[1, 2, 3])
        out = out + layer.noise_const * 0.3 + layer.bias[:, None, None]
        out = torch.where(out >= 0, out, 0.2 * out) * math.sqrt(2)
        ref[n] = out.clamp(-0.8, 0.8)
    assert torch.allclose(got, ref, atol=1e-5)
