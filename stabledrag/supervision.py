"""Motion supervision and mask losses.

Motion loss for handle p moving towards target t, with d = (t - p) / |t - p| and the patch
Omega(p, r_m):  L = | F(Omega(p) + d) - source |_1, where the shifted features are sampled bilinearly
(with gradient) and `source` is
- plain supervision: stopgrad(F(Omega(p)))  (DragGAN, DragDiffusion);
- confident supervision (StableDrag), for handles whose tracking confidence fell below tau:
  the template patch (the paper: stopgrad(F0(Omega(p^0)))), so the content pushed forward is the
  handle's real content, not a patch that has already drifted. Here the source may be a mix
  `m * template + (1 - m) * current` with a per-handle template share `m` in [0, 1] (see
  `template_mix`), and the drag loop may refresh the template while tracking is confident.
All points are `(x, y)` in feature pixels.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .sampling import disk_offsets, draggan_patch, sample_features, square_offsets


def patch_offsets(radius: float, shape: str = "square", device=None) -> torch.Tensor:
    """Offsets `P x 2` (x, y) of the motion patch: a `(2r+1)^2` square or a disk of radius r.
    Raises ValueError for "draggan", whose patch depends on the handle (`motion_patch`)."""
    if shape == "draggan":
        raise ValueError("DragGAN's patch depends on the handle's position: use motion_patch")
    return square_offsets(radius, 1.0, device) if shape == "square" else disk_offsets(radius, device)


def motion_patch(handles: torch.Tensor, radius: float, shape: str, size: tuple[int, int],
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Patch positions `N x P x 2` (x, y) around `handles` (`N x 2`) on a map of `size = (W, H)`,
    and their validity (`N x P` bool, or None when all are valid): offsets of `patch_offsets`, or
    for "draggan" DragGAN's own grid patch (`sampling.draggan_patch`)."""
    if shape == "draggan":
        pos, valid = draggan_patch(handles, size, radius)
        return pos.to(dtype), valid
    offs = patch_offsets(radius, shape, handles.device).to(dtype)
    return handles.to(dtype)[:, None, :] + offs[None], None


def motion_loss(
    feat: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    radius: float,
    shape: str = "square",
    template: Optional[torch.Tensor] = None,
    template_mix: Optional[torch.Tensor] = None,
    template_weight: float = 1.0,
    min_distance: float = 1.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """Shifted-patch L1 motion loss summed over handles.

    feat: current `C x H x W` features (with grad).
    handles, targets: `N x 2` (x, y) feature px (current handles, targets).
    template: `N x P x C` template patches (detached; e.g. `template_patches(F0, p0, ...)`), used
      with `template_mix`: `N` template shares in [0, 1]; the source of handle i is
      `m_i * template_i + (1 - m_i) * stopgrad(F(Omega(p_i)))` and its loss is scaled by
      `1 + (template_weight - 1) * m_i`. Confident supervision with the paper's switch is
      `m_i = 1[conf_i < tau]`; None = plain supervision.
    min_distance: handles at most this close to their target get no loss (the stop distance).
    reduction: per handle, "sum" = sum over patch positions of the channel-mean |.| (DragDiffusion),
    "mean" = mean over positions and channels (DragGAN).
    Returns a scalar (0 with grad when no handle needs supervision).
    Raises ValueError when `template` and `template_mix` are not given together.
    """
    if (template is None) != (template_mix is None):
        raise ValueError("template and template_mix go together")
    n = handles.shape[0]
    handles = handles.to(feat.device, feat.dtype)
    targets = targets.to(feat.device, feat.dtype)
    delta = targets - handles
    dist = delta.norm(dim=1)
    active = dist > min_distance
    if not bool(active.any()):
        return feat.sum() * 0.0
    direction = delta / dist.clamp_min(1e-8)[:, None]
    patch, valid = motion_patch(handles, radius, shape, (feat.shape[2], feat.shape[1]), feat.dtype)  # N x P x 2
    shifted = sample_features(feat, patch + direction[:, None, :])  # N x P x C
    source = sample_features(feat.detach(), patch)
    weights = torch.ones(n, device=feat.device, dtype=feat.dtype)
    if template is not None and bool((template_mix > 0).any()):
        assert template.shape == source.shape, f"template {tuple(template.shape)} != patch {tuple(source.shape)}"
        mix = template_mix.to(feat.device, feat.dtype).clamp(0, 1)
        source = mix[:, None, None] * template.detach().to(feat.dtype) + (1 - mix[:, None, None]) * source
        weights = 1 + (template_weight - 1) * mix
    per_pos = (shifted - source).abs().mean(-1)  # N x P
    if valid is None:
        per_handle = per_pos.sum(1) if reduction == "sum" else per_pos.mean(1)
    else:
        v = valid.to(per_pos.dtype)
        per_handle = (per_pos * v).sum(1)
        if reduction == "mean":
            per_handle = per_handle / v.sum(1).clamp_min(1)
    return (per_handle * weights * active.to(feat.dtype)).sum()


def template_patches(feat: torch.Tensor, handles: torch.Tensor, radius: float, shape: str = "square") -> torch.Tensor:
    """Detached patches `N x P x C` of `feat` (`C x H x W`) around `handles` (`N x 2`, (x, y)
    feature px): the content confident supervision pushes (same patch as `motion_loss`; for the
    "draggan" patch, positions outside the handle's patch sample as zeros)."""
    patch, valid = motion_patch(handles.to(feat.device), radius, shape, (feat.shape[2], feat.shape[1]), feat.dtype)
    out = sample_features(feat.detach(), patch)
    return out if valid is None else out * valid[..., None].to(out.dtype)


def active_handles(handles: torch.Tensor, targets: torch.Tensor, min_distance: float) -> torch.Tensor:
    """`N` bool: the handles `motion_loss` supervises (farther than `min_distance` from their target)."""
    return (targets - handles).norm(dim=1) > min_distance


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an `H x W` mask (bool or float) to `size = (W, H)` by nearest neighbour; float result."""
    m = mask.float()[None, None]
    return F.interpolate(m, size=(size[1], size[0]), mode="nearest")[0, 0]


def feature_mask_loss(feat: torch.Tensor, feat0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """DragGAN's mask term: mean over all elements of |F - F0| on the region to keep.

    feat, feat0: `C x H x W`; keep: `H x W` (1 = must stay, 0 = editable), resized if needed.
    """
    if keep.shape != feat.shape[1:]:
        keep = resize_mask(keep, (feat.shape[2], feat.shape[1]))
    keep = keep.to(feat.device, feat.dtype)
    return ((feat - feat0.detach()) * keep[None]).abs().mean()


def latent_mask_loss(latent: torch.Tensor, latent0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """DragDiffusion's mask term: sum of |x - x0| on the region to keep.

    latent, latent0: `B x C x h x w` (e.g. one-step-denoised latents); keep: `H x W` (1 = keep),
    resized to `h x w` by nearest neighbour.
    """
    h, w = latent.shape[-2:]
    if keep.shape != (h, w):
        keep = resize_mask(keep, (w, h))
    keep = keep.to(latent.device, latent.dtype)
    return ((latent - latent0.detach()).abs() * keep).sum()
