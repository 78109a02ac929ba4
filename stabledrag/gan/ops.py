"""Pure-PyTorch resampling and activation ops with StyleGAN2's exact semantics.

These re-state, in plain PyTorch (no compiled extensions, CPU and GPU), what NVlabs'
`torch_utils.ops` compute, so official weights give the official images:

- `upfirdn2d`: upsample by zero insertion, pad (negative = crop), convolve with a 2D FIR
  filter, downsample by keeping every `down`-th pixel (like `scipy.signal.upfirdn`).
- `upsample2d` / `downsample2d`: the "same-size multiple" paddings around `upfirdn2d`.
- `conv2d_resample`: a convolution fused with up/downsampling, padded once at the start; the
  up path is a stride-2 transposed convolution followed by the FIR filter, with the exact
  paddings of the official implementation (they decide where the image lands by a pixel).
- `bias_act`: bias, activation, gain, clamp — in that order.

Tensors are `N x C x H x W`; filters are float32 `fh x fw` tensors (see `setup_filter`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

# (function, default gain) per activation name, as the official `bias_act` defines them.
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2.0)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2.0)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
}


def activation_gain(act: str) -> float:
    """Default output gain of activation `act` (sqrt(2) for relu/lrelu, else 1)."""
    if act not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {act!r}; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[act][1]


def bias_act(
    x: torch.Tensor,
    b: Optional[torch.Tensor] = None,
    act: str = "linear",
    gain: Optional[float] = None,
    clamp: Optional[float] = None,
    dim: int = 1,
) -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain` (default: the activation's),
    then clamp to `[-clamp, clamp]` when `clamp` is not None. Same shape as `x`."""
    if act not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {act!r}; supported: {sorted(_ACTIVATIONS)}")
    fn, default_gain = _ACTIVATIONS[act]
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = fn(x)
    gain = default_gain if gain is None else float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(f: Sequence[float] | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """A 1D tap list (e.g. `[1, 3, 3, 1]`) -> its normalised outer product, float32 `k x k`.

    A 2D input is kept 2D. Normalised so a constant signal keeps its value (sum = 1).
    """
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2 or f.numel() == 0:
        raise ValueError(f"filter must be 1D or 2D and non-empty, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def _pads(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """`p`, `[px, py]` or `[x0, x1, y0, y1]` -> `(x0, x1, y0, y1)`."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must have 1, 2 or 4 values, got {padding}")


def upfirdn2d(
    x: torch.Tensor,
    f: Optional[torch.Tensor],
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad/crop, FIR-filter and downsample each channel of `x`.

    x: `N x C x H x W`. f: `fh x fw` float32 filter (None = identity). padding: with respect to
    the upsampled image, `(x0, x1, y0, y1)`; negative values crop. flip_filter=False means true
    convolution (the filter is flipped before correlating). The filter is scaled by `gain`.
    Output: `N x C x H' x W'` with `H' = (H*up + y0 + y1 - fh) // down + 1`.
    """
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    x0, x1, y0, y1 = _pads(padding)
    if up > 1:
        # Zero insertion: each pixel followed by up-1 zeros, in both directions.
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = f.to(device=x.device, dtype=x.dtype) * gain
    if not flip_filter:
        f = f.flip([0, 1])  # conv2d correlates; flipping makes it a convolution
    weight = f[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample `N x C x H x W` by `up` with FIR filter `f`; output `N x C x H*up x W*up`."""
    fh, fw = f.shape
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Downsample `N x C x H x W` by `down` with FIR filter `f`; output `N x C x H/down x W/down`."""
    fh, fw = f.shape
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: Optional[torch.Tensor] = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """2D convolution of `x` (`N x Cin x H x W`) with `w` (`Cout x Cin/groups x kh x kw`), fused with
    upsampling/downsampling by the FIR filter `f`. `padding` is with respect to the upsampled
    image and applied once. flip_weight=True means correlation (like `F.conv2d`).
    """
    out_ch, in_per_group, kh, kw = w.shape
    fh, fw = (1, 1) if f is None else f.shape
    x0, x1, y0, y1 = _pads(padding)
    if up > 1:
        x0 += (fw + up - 1) // 2
        x1 += (fw - up) // 2
        y0 += (fh + up - 1) // 2
        y1 += (fh - up) // 2
    if down > 1:
        x0 += (fw - down + 1) // 2
        x1 += (fw - down) // 2
        y0 += (fh - down + 1) // 2
        y1 += (fh - down) // 2

    def conv(inp: torch.Tensor, wt: torch.Tensor, stride: int = 1, pad: Sequence[int] = (0, 0),
             transpose: bool = False, flip: bool = True) -> torch.Tensor:
        if not flip and (kw > 1 or kh > 1):
            wt = wt.flip([2, 3])
        if transpose:
            return F.conv_transpose2d(inp, wt, stride=stride, padding=list(pad), groups=groups)
        return F.conv2d(inp, wt, stride=stride, padding=list(pad), groups=groups)

    # A 1x1 kernel commutes with the resampling: filter on the cheaper side.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[x0, x1, y0, y1])
        return conv(x, w, flip=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = conv(x, w, flip=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[x0, x1, y0, y1], gain=up * up)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[x0, x1, y0, y1])
        return conv(x, w, stride=down, flip=flip_weight)
    if up > 1:
        # Stride-`up` transposed convolution (its weight is the transpose of a convolution's,
        # per group), then the FIR filter with whatever padding is left over.
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        x0 -= kw - 1
        x1 -= kw - up
        y0 -= kh - 1
        y1 -= kh - up
        pxt = max(min(-x0, -x1), 0)
        pyt = max(min(-y0, -y1), 0)
        x = conv(x, w, stride=up, pad=(pyt, pxt), transpose=True, flip=not flip_weight)
        x = upfirdn2d(x, f, padding=[x0 + pxt, x1 + pxt, y0 + pyt, y1 + pyt], gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    if x0 == x1 and y0 == y1 and x0 >= 0 and y0 >= 0:
        return conv(x, w, pad=(y0, x0), flip=flip_weight)
    x = upfirdn2d(x, None, padding=[x0, x1, y0, y1])
    x = conv(x, w, flip=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down)
    return x
