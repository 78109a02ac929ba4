"""StyleGAN2 generator in plain PyTorch, with the official parameter names and runtime semantics.

Module and parameter names equal NVlabs' `G_ema.state_dict()` (stylegan2-ada-pytorch and the
stylegan3 repository's `networks_stylegan2`), so a state dict taken from an official pickle
loads with `strict=True`:

    synthesis.b{res}.{const, resample_filter, conv0.*, conv1.*, torgb.*}
    synthesis.b{res}.convN.{weight, bias, noise_strength, noise_const, resample_filter, affine.*}
    mapping.fc{i}.{weight, bias}, mapping.w_avg, mapping.embed.* (when c_dim > 0)

Runtime semantics follow the official `training/networks.py`: equalised learning rate applied
at run time (weight gains), lrelu with gain sqrt(2), `conv_clamp` clamping (also in float32),
modulated convolutions with demodulation, FIR-filtered up-sampling, a skip ("toRGB") image path,
constant noise, and truncation towards `w_avg`. Everything runs in float32 (the official
`force_fp32=True`); the fp16 settings of a checkpoint are recorded and otherwise ignored.

The synthesis network can also return every block's feature map `x` (DragGAN drags on the
b128 block's output) and can stop early once the requested blocks have run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn

from ..dataclass_dict import DictSettings
from . import ops

ARCHITECTURES = ("skip", "orig", "resnet")
NOISE_MODES = ("const", "random", "none")


@dataclass
class GeneratorConfig(DictSettings):
    """Architecture of a StyleGAN2 generator (the official constructor arguments, flattened).

    z_dim / c_dim / w_dim: latent, label and intermediate-latent sizes.
    img_resolution: output size (a power of two >= 4); img_channels: 3 for RGB.
    mapping_layers, embed_features, layer_features, mapping_activation, mapping_lr_multiplier,
    w_avg_beta: the mapping network's arguments (None = the official defaults derived from w_dim).
    channel_base, channel_max: channels at resolution r are `min(channel_base // r, channel_max)`.
    num_fp16_res: recorded from the checkpoint; this implementation always runs float32.
    conv_clamp: clamp conv outputs to +-conv_clamp (None = off); applies in float32 too.
    architecture: "skip" (official generators), "orig" or "resnet".
    resample_filter: FIR taps for up-sampling. use_noise: per-layer noise inputs.
    activation: synthesis activation. kernel_size: synthesis conv kernel.
    feature_res: resolution of the block whose output drives dragging; None = `default_feature_res`.
    """

    settings_name = "generator settings"  # `to_dict` / `from_dict` come from DictSettings

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 512
    img_channels: int = 3
    mapping_layers: int = 8
    embed_features: Optional[int] = None
    layer_features: Optional[int] = None
    mapping_activation: str = "lrelu"
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: Optional[float] = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: Optional[float] = None
    architecture: str = "skip"
    resample_filter: list = field(default_factory=lambda: [1, 3, 3, 1])
    use_noise: bool = True
    activation: str = "lrelu"
    kernel_size: int = 3
    feature_res: Optional[int] = None

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.feature_res is not None and self.feature_res not in self.block_resolutions:
            raise ValueError(f"feature_res must be one of {self.block_resolutions}, got {self.feature_res}")
        ops.activation_gain(self.activation)
        ops.activation_gain(self.mapping_activation)

    @property
    def block_resolutions(self) -> list[int]:
        """`[4, 8, ..., img_resolution]`."""
        return [2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (2 log2(res) - 2 for skip)."""
        convs = sum(1 if res == 4 else 2 for res in self.block_resolutions)
        return convs + 1  # plus the last block's toRGB (only the last one counts, whatever the architecture)

    @property
    def default_feature_res(self) -> int:
        """The block used for dragging: b128 (DragGAN's block 6) on models of 256 px and more;
        on smaller models the block at half the image resolution (b64 on a 128 px model), which
        keeps DragGAN's "a few blocks before the end" position while staying above 8 px."""
        if self.img_resolution >= 256:
            return 128
        return max(8, self.img_resolution // 2)

    @property
    def drag_feature_res(self) -> int:
        """`feature_res` if set, else `default_feature_res`."""
        return self.feature_res if self.feature_res is not None else self.default_feature_res


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` so its mean square along `dim` is 1 (the mapping network's input norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: `act(x @ (W * lr/sqrt(in))^T + b * lr)`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`N x in` -> `N x out`."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (and optional label c) -> w, broadcast to `num_ws` copies, with optional truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        sizes = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(sizes[i], sizes[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """z: `N x z_dim` (any float dtype), c: `N x c_dim` or None. Returns `N x num_ws x w_dim`
        (or `N x w_dim` when num_ws is None), truncated towards `w_avg` by `truncation_psi` on the
        first `truncation_cutoff` vectors (all when None)."""
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be N x {self.z_dim}, got {None if z is None else tuple(z.shape)}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this generator is conditional: c must be N x {self.c_dim}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation needs w_avg, which this generator does not track")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor] = None,
                     up: int = 1, padding: int = 0, resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True, flip_weight: bool = True) -> torch.Tensor:
    """Style-modulated (and demodulated) convolution as one grouped convolution per sample.

    x: `N x I x H x W`; weight: `O x I x k x k`; styles: `N x I`; noise broadcastable to the
    output. Returns `N x O x H' x W'`.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # N x O x I x k x k
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = ops.conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n,
                            flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up-sampling), noise, bias, lrelu, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = ops.activation_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x: `N x in x r/up x r/up`, w: `N x w_dim` -> `N x out x r x r`."""
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device,
                                generator=generator) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to colour, bias, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x: `N x C x r x r`, w: `N x w_dim` -> `N x img_channels x r x r`."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Plain equalised-lr convolution (used as the resnet block's 1x1 up-sampling skip)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ops.activation_gain(activation)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """`N x in x H x W` -> `N x out x H*up x W*up`."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = ops.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, padding=self.padding,
                                flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | 2x up-conv0) -> conv1 -> toRGB added to the up-sampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, **layer_kwargs: Any) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "const", generator: Optional[torch.Generator] = None,
                render: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """ws: `N x (num_conv + num_torgb) x w_dim`. Returns the block's features `x`
        (`N x C x r x r`) and the image so far (`N x img_channels x r x r`, None if `render` is off)."""
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(torch.float32).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, generator=generator)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, generator=generator)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, gain=math.sqrt(0.5), generator=generator)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, generator=generator)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, generator=generator)
        if not render:
            return x, None
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ (`N x num_ws x w_dim`) -> image (`N x img_channels x R x R`, roughly in [-1, 1])."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, **layer_kwargs: Any) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        ch = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(ch[res // 2] if res > 4 else 0, ch[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, architecture=architecture,
                                   resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", feature_res: Sequence[int] | None = None,
                render: bool = True, generator: Optional[torch.Generator] = None
                ) -> tuple[Optional[torch.Tensor], dict[int, torch.Tensor]]:
        """Run the blocks on `ws` (`N x num_ws x w_dim`).

        feature_res: resolutions whose block output `x` (`N x C x r x r`) to return (None = none;
        pass `self.block_resolutions` for every block).
        render: build the image; when False the network stops after the last requested block
        (much cheaper for dragging on an early block) and returns None for the image.
        Returns `(image or None, {res: features})`.
        """
        self._check_ws(ws)
        wanted = self._check_res(feature_res)
        stop = self.img_resolution if render else max(wanted, default=self.block_resolutions[0])
        x, img, feats = self.run_blocks(ws, None, None, 0, stop, noise_mode=noise_mode, feature_res=wanted,
                                        render=render, generator=generator)
        return (img if render else None), feats

    def run_blocks(self, ws: torch.Tensor, x: Optional[torch.Tensor], img: Optional[torch.Tensor], after_res: int,
                   until_res: int, noise_mode: str = "const", feature_res: Sequence[int] = (), render: bool = True,
                   generator: Optional[torch.Generator] = None
                   ) -> tuple[torch.Tensor, Optional[torch.Tensor], dict[int, torch.Tensor]]:
        """Run the blocks with resolution in `(after_res, until_res]`, starting from the features `x`
        and image `img` that the block at `after_res` produced (None, None and 0 to start at b4).

        Lets a caller stop at the drag block and later finish the image from there without
        recomputing the early blocks. Returns `(x, img, {res: features})` at `until_res`.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = ws.to(torch.float32)
        wanted = set(feature_res)
        feats: dict[int, torch.Tensor] = {}
        w_idx = 0
        for res in self.block_resolutions:
            if res > until_res:
                break
            block = getattr(self, f"b{res}")
            if res > after_res:
                block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
                x, img = block(x, img, block_ws, noise_mode=noise_mode, generator=generator, render=render)
                if res in wanted:
                    feats[res] = x
            w_idx += block.num_conv
        return x, img, feats

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be N x {self.num_ws} x {self.w_dim}, got {tuple(ws.shape)}")

    def _check_res(self, feature_res: Sequence[int] | None) -> set[int]:
        wanted = set(feature_res or [])
        unknown = wanted - set(self.block_resolutions)
        if unknown:
            raise ValueError(f"no synthesis block at resolutions {sorted(unknown)}; blocks: {self.block_resolutions}")
        return wanted


class Generator(nn.Module):
    """The StyleGAN2 generator: `mapping` (z -> W+) and `synthesis` (W+ -> image, features)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
            channel_base=cfg.channel_base, channel_max=cfg.channel_max, architecture=cfg.architecture,
            resample_filter=list(cfg.resample_filter), conv_clamp=cfg.conv_clamp, use_noise=cfg.use_noise,
            activation=cfg.activation, kernel_size=cfg.kernel_size,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=self.num_ws, num_layers=cfg.mapping_layers,
            embed_features=cfg.embed_features, layer_features=cfg.layer_features,
            activation=cfg.mapping_activation, lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=cfg.w_avg_beta,
        )
        self.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.synthesis.b4.const.device

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """z: `N x z_dim` -> image `N x img_channels x R x R` (float32, about [-1, 1]); the same call
        as the official `G(z, c, truncation_psi, truncation_cutoff, noise_mode=...)`."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        img, _ = self.synthesis(ws, noise_mode=noise_mode, generator=generator)
        return img

    def seed_to_z(self, seed: int) -> torch.Tensor:
        """The official seed -> z: `np.random.RandomState(seed).randn(1, z_dim)` (float64 -> float32),
        on this generator's device. Returns `1 x z_dim`."""
        import numpy as np

        z = np.random.RandomState(int(seed)).randn(1, self.z_dim)
        return torch.from_numpy(z).to(device=self.device, dtype=torch.float32)


def to_uint8(img: torch.Tensor) -> "Any":
    """`N x 3 x H x W` (or `3 x H x W`) float image in [-1, 1] -> `H x W x 3` uint8 numpy array of the
    first sample, rounded like the official `generate.py` (`x * 127.5 + 128`, clamp, truncate)."""
    if img.ndim == 4:
        img = img[0]
    img = (img.detach().permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.cpu().numpy()
