"""A StyleGAN2-style residual discriminator (our own code), used to train the bundled toy GAN.

Layout (StyleGAN2 "resnet" D, Karras et al. 2020, Fig. 7c):

    fromRGB (1x1, lrelu) at the image resolution
    per resolution r > 4:  conv3x3 (lrelu) -> blur + conv3x3 stride 2 (lrelu), plus a
                           skip blur + 1x1 stride 2 (linear, no bias); sum scaled by sqrt(1/2)
    epilogue at 4x4:       minibatch standard deviation -> conv3x3 -> fc -> fc to one logit

All weights use the equalised learning rate (scaled at run time) like the generator, and the
down-sampling is FIR-filtered with `[1, 3, 3, 1]` before striding (anti-aliasing), so the
discriminator sees the same kind of signal statistics the generator's up-sampling produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops


@dataclass
class DiscriminatorConfig:
    """Architecture of the discriminator.

    img_resolution: input size (a power of two >= 8); img_channels: 3 for RGB.
    channel_base / channel_max: channels at resolution r are `min(channel_base // r, channel_max)`.
    mbstd_group: group size of the minibatch standard deviation layer (clipped to the batch).
    mbstd_channels: feature groups the minibatch std is computed over.
    """

    img_resolution: int = 128
    img_channels: int = 3
    channel_base: int = 4096
    channel_max: int = 128
    mbstd_group: int = 4
    mbstd_channels: int = 1

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {r}")

    def channels(self, res: int) -> int:
        """Feature channels at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


class EqConv2d(nn.Module):
    """Convolution with equalised learning rate, optional FIR blur + stride-2 down-sampling."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "lrelu", down: int = 1, resample_filter: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)), persistent=False)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise FIR filter that, followed by a stride-2 conv, anti-aliases the down-sampling.
        Pads so that `blur -> conv(k, stride 2)` maps H to H/2 exactly."""
        f = self.resample_filter
        fh = f.shape[0]
        k = self.kernel_size
        # total padding so that (H + p - fh + 1 - k) // 2 + 1 == H / 2
        p = fh - 2 + k - 1
        pad = [(p + 1) // 2, p // 2, (p + 1) // 2, p // 2]
        c = x.shape[1]
        x = F.pad(x, pad)
        return F.conv2d(x, f.to(x.dtype)[None, None].expand(c, 1, *f.shape), groups=c)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """`N x in x H x W` -> `N x out x H/down x W/down`."""
        w = self.weight * self.weight_gain
        if self.down > 1:
            x = F.conv2d(self._blur(x), w, stride=self.down)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        return ops.bias_act(x, self.bias, act=self.activation, gain=ops.activation_gain(self.activation) * gain)


class EqLinear(nn.Module):
    """Dense layer with equalised learning rate."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear") -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = 1 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`N x in` -> `N x out`."""
        return ops.bias_act(x.matmul((self.weight * self.weight_gain).t()), self.bias, act=self.activation)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (second one down-sampling) plus a 1x1 down-sampling skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqConv2d(in_channels, in_channels, 3)
        self.conv1 = EqConv2d(in_channels, out_channels, 3, down=2)
        self.skip = EqConv2d(in_channels, out_channels, 1, bias=False, activation="linear", down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`N x in x r x r` -> `N x out x r/2 x r/2`."""
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return x + y


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append `num_channels` feature maps holding the standard deviation of the features across
    groups of `group_size` samples (lets D see a lack of variety). `N x C x H x W` -> `N x (C+nc) x H x W`."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:
        g -= 1
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (N/g) x nc
    y = y.reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Image `N x C x R x R` (about [-1, 1]) -> real/fake logit `N x 1`."""

    def __init__(self, config: Optional[DiscriminatorConfig] = None) -> None:
        super().__init__()
        cfg = config or DiscriminatorConfig()
        self.config = cfg
        res = cfg.img_resolution
        self.block_resolutions = [2 ** i for i in range(int(math.log2(res)), 2, -1)]  # R, R/2, ..., 8
        self.from_rgb = EqConv2d(cfg.img_channels, cfg.channels(res), 1)
        for r in self.block_resolutions:
            setattr(self, f"b{r}", DiscriminatorBlock(cfg.channels(r), cfg.channels(r // 2)))
        c4 = cfg.channels(4)
        self.epilogue_conv = EqConv2d(c4 + cfg.mbstd_channels, c4, 3)
        self.epilogue_fc = EqLinear(c4 * 16, c4, activation="lrelu")
        self.out = EqLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: `N x img_channels x R x R` -> `N x 1` logits (no sigmoid)."""
        cfg = self.config
        if img.ndim != 4 or img.shape[1] != cfg.img_channels or img.shape[-1] != cfg.img_resolution \
                or img.shape[-2] != cfg.img_resolution:
            raise ValueError(f"expected N x {cfg.img_channels} x {cfg.img_resolution} x {cfg.img_resolution}, "
                             f"got {tuple(img.shape)}")
        x = self.from_rgb(img.to(torch.float32))
        for r in self.block_resolutions:
            x = getattr(self, f"b{r}")(x)
        x = minibatch_std(x, cfg.mbstd_group, cfg.mbstd_channels)
        x = self.epilogue_conv(x)
        x = self.epilogue_fc(x.flatten(1))
        return self.out(x)
