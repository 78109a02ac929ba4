"""Synthetic feature fields with known motion, for testing and benchmarking point trackers.

A field is a smooth random background (`C x H x W`, low-frequency noise) plus Gaussian "objects",
each a feature vector spread over a small Gaussian footprint. The handle is an object; a
*distractor* is an object whose vector equals the handle's except in a few channels (a look-alike:
the other eye, a repeated texture). Motion moves the handle object by a known offset; *drift* adds a
random change to the handle's vector (its appearance changes while it is dragged).
All positions are `(x, y)` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def smooth_field(channels: int, size: int, generator: torch.Generator, scale: int = 8,
                 amplitude: float = 1.0) -> torch.Tensor:
    """A smooth random field `C x size x size`: Gaussian noise on a coarse grid, bicubic upsampled."""
    coarse = torch.randn(1, channels, max(2, size // scale), max(2, size // scale), generator=generator)
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    return field * amplitude


def add_object(field: torch.Tensor, center: tuple[float, float], vector: torch.Tensor,
               footprint: float = 1.5) -> torch.Tensor:
    """Return `field` + a Gaussian blob of `vector` (`C`) centred at `center` (x, y); width `footprint`."""
    c, h, w = field.shape
    ys = torch.arange(h, dtype=field.dtype)[:, None]
    xs = torch.arange(w, dtype=field.dtype)[None, :]
    g = torch.exp(-((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / (2 * footprint ** 2))
    return field + vector[:, None, None] * g[None]


@dataclass
class TrackingCase:
    """One tracking problem: fit on `f0` at `handle`, track on `f1`; the truth is `truth`."""

    f0: torch.Tensor
    f1: torch.Tensor
    handle: torch.Tensor  # 1 x 2
    truth: torch.Tensor  # 1 x 2
    distractor: torch.Tensor | None  # 1 x 2 position of the look-alike in f1, if any


def make_case(generator: torch.Generator, channels: int = 64, size: int = 64, shift_max: int = 2,
              distractor: bool = False, drift: float = 0.0, noise: float = 0.02,
              cue_channels: int = 8, cue_strength: float = 0.8,
              distractor_distance: float | None = None) -> TrackingCase:
    """Draw one case.

    The handle object sits near the centre; it moves by a random integer offset (|dx|, |dy| <=
    shift_max, not both zero). With `distractor`, a look-alike whose vector differs from the handle's
    only in `cue_channels` channels (by `cue_strength` relative to the object's per-channel scale)
    sits 3-4 px from the handle's *new* position (integer position), or exactly
    `distractor_distance` px from it when given (a near look-alike, at a float position whose
    distance to the handle's *start* is at least as large, so it is in the training map too).
    `drift` scales a random change of the handle's vector after the move (relative to the vector's
    norm). `noise` is i.i.d. per-pixel noise.
    """
    g = generator
    bg = smooth_field(channels, size, g, amplitude=0.5)
    vec = torch.randn(channels, generator=g)
    p0 = torch.tensor([size / 2 + float(torch.randint(-4, 5, (1,), generator=g)),
                       size / 2 + float(torch.randint(-4, 5, (1,), generator=g))])
    while True:
        shift = torch.randint(-shift_max, shift_max + 1, (2,), generator=g).float()
        if shift.abs().sum() > 0:
            break
    p1 = p0 + shift
    look = None
    if distractor:
        cue = torch.zeros(channels)
        idx = torch.randperm(channels, generator=g)[:cue_channels]
        cue[idx] = cue_strength * torch.sign(torch.randn(cue_channels, generator=g)) * vec.abs().mean() * 2
        ang = float(torch.rand(1, generator=g)) * 2 * torch.pi
        if distractor_distance is None:
            dist = 3.0 + float(torch.rand(1, generator=g))
            look = torch.round(p1 + dist * torch.tensor([torch.cos(torch.tensor(ang)), torch.sin(torch.tensor(ang))]))
            # keep the look-alike away from the handle's start too, so fitting sees it as background
            if (look - p0).norm() < 3:
                look = torch.round(p1 - (look - p1))
        else:
            # the look-alike at exactly that distance from the handle's new position, on the side
            # away from its start (so it is at least as far from the start)
            for k in range(64):
                a = torch.tensor(ang + k * 0.1)
                look = p1 + distractor_distance * torch.stack([torch.cos(a), torch.sin(a)])
                if (look - p0).norm() >= distractor_distance - 1e-4:
                    break
    drift_vec = torch.randn(channels, generator=g)
    drift_vec = drift_vec / drift_vec.norm() * vec.norm() * drift

    def render(handle_pos: torch.Tensor, handle_vec: torch.Tensor) -> torch.Tensor:
        f = add_object(bg.clone(), tuple(handle_pos.tolist()), handle_vec)
        if look is not None:
            f = add_object(f, tuple(look.tolist()), vec + cue)
        return f + noise * torch.randn(f.shape, generator=g)

    f0 = render(p0, vec)
    f1 = render(p1, vec + drift_vec)
    return TrackingCase(f0, f1, p0[None], p1[None], None if look is None else look[None])


def shifted_field(field: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """The field moved by integer `(dx, dy)` (content at (x, y) goes to (x+dx, y+dy)), edges rolled."""
    return torch.roll(field, shifts=(dy, dx), dims=(1, 2))


class TranslatingTextureBackend:
    """A tiny differentiable `stabledrag.drag.Backend`: a smooth texture moved by a learnable offset.

    The state is a 2-vector `(ox, oy)`; the features are the texture translated by it (content at
    (x, y) appears at (x + ox, y + oy)), so a handle reaches its target exactly when the offset equals
    target - handle. Features are at image resolution. `keep` (H x W, 1 = keep) enables a mask loss
    pinning the features outside the editable region. `poison_at_step` makes `features` return NaN
    from that call on, to test the divergence guard.
    """

    def __init__(self, texture: torch.Tensor, keep: torch.Tensor | None = None,
                 poison_at_step: int | None = None) -> None:
        self.texture = texture
        self.image_size = (texture.shape[2], texture.shape[1])
        self.keep = keep
        self.poison_at_step = poison_at_step
        self.calls = 0

    def initial_state(self) -> torch.Tensor:
        return torch.zeros(2, requires_grad=True)

    def parameters(self, state: torch.Tensor) -> list[torch.Tensor]:
        return [state]

    def features(self, state: torch.Tensor):
        from ..drag import BackendOutput

        c, h, w = self.texture.shape
        ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        gx = (xs - state[0]) * (2.0 / (w - 1)) - 1
        gy = (ys - state[1]) * (2.0 / (h - 1)) - 1
        grid = torch.stack([gx, gy], dim=-1)[None]
        feat = F.grid_sample(self.texture[None], grid, mode="bilinear", padding_mode="border",
                             align_corners=True)[0]
        self.calls += 1
        if self.poison_at_step is not None and self.calls > self.poison_at_step:
            feat = feat * float("nan")
        return BackendOutput(feat, {})

    def mask_loss(self, state, out, ref):
        from ..supervision import feature_mask_loss

        if self.keep is None:
            return None
        return feature_mask_loss(out.features, ref.features, self.keep)

    def preview(self, state, out):
        f = out.features[:3]
        f = (f - f.min()) / (f.max() - f.min() + 1e-8)
        return (f.permute(1, 2, 0) * 255).byte().numpy()
