"""Project a real image into a StyleGAN2 generator (GAN inversion), optionally with pivotal tuning.

    aligned, crop = align_image(photo, G.img_resolution)       # square crop + resize, box kept
    result = project(G, aligned, ProjectionConfig(), progress=cb, cancel=token)
    G_tuned = apply_weight_delta(G, result.weight_delta)        # identity when PTI was off
    editor.set_projection(result)                               # then drag as on a sample

Phases (each reported through the project's `ProgressCallback`, each cancellable):

1. `project_w`  - one w, started at the best of `w_avg` and a few mapped random z (compared on a
   cheap low-resolution partial render), optimised with Adam under a cosine-ramped learning
   rate and a decaying Gaussian perturbation of w (its scale taken from the spread of W), as in
   the StyleGAN2 projector (Karras et al. 2020, `projector.py`, read not copied). When the
   generator has noise inputs, its constant noise maps are optimised too, with the projector's
   multi-scale autocorrelation penalty and re-normalisation after each step. With
   `start_space="z"` the search runs in Z through the mapping network instead (stays on the
   image manifold; what the toy GAN needs).
2. `project_wplus` - every vector of W+ freed from the phase-1 w (Abdal et al., Image2StyleGAN).
3. `pti`     - pivotal tuning (Roich et al. 2021, PTI): the synthesis weights are fine-tuned with the
   latent frozen at the pivot, so the image is reproduced exactly while the latent stays where
   editing works. The change is returned as a weight *delta* (tuned - original), tensors by name.
   With `pti_min_res` only the blocks at that resolution and finer are tuned (ours): the coarse
   blocks keep the generator's layout, so a drag on the tuned generator moves parts as on its
   samples.
4. `refine` - with `refine_passes`, the GAN tab's "More steps" built in (`more_steps_config`): with
   pivotal tuning, more tuning at half the steps and learning rate, weighted towards where the image
   is still off; without it, more W+ steps at a quarter of the learning rate.

Losses (offline only: no LPIPS/VGG weights exist here, and the bundled toy checkpoint carries no
discriminator whose features could serve): pixel L2 + L1 on the image in [-1, 1], weighted up where
the target has local contrast (small parts count) and, in pivotal tuning, where the image is still
far from it (`pti_focus_weight`), and L1 on an average-pooled pyramid (multi-scale, coarse shape
first). Image conventions: uint8
`H x W x 3` RGB arrays in, generator images `N x 3 x R x R` float in [-1, 1] inside.

Results are cached per (model weights fingerprint, image bytes, config), so projecting the same
photo again (e.g. after a page reload) costs nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..dataclass_dict import DictSettings
from ..errors import UserError
from ..progress import CancelToken, ProgressCallback, report
from ..tensors import image_to_tensor
from .networks import Generator, to_uint8

log = logging.getLogger(__name__)

PHASES = ("project_w", "project_wplus", "pti", "refine")


# -- configuration and result ---------------------------------------------------------------------
@dataclass
class ProjectionConfig(DictSettings):
    """Settings of a projection (all recorded in the result).

    w_steps / wplus_steps / pti_steps: Adam steps of the three phases (0 skips a phase; pti_steps=0
    = no pivotal tuning). w_lr / wplus_lr / pti_lr: their peak learning rates (W phases use the
    projector's schedule: linear ramp-up over the first 5 %, cosine ramp-down over the last 25 %).
    PTI uses the same learning-rate shape. noise_factor / noise_ramp: the W phase perturbs w by
    `w_std * noise_factor * max(0, 1 - t/noise_ramp)^2`
    (t = fraction of the phase done). w_avg_samples: z samples used to measure `w_std`.
    l2_weight / l1_weight: pixel terms; pyramid_weight, pyramid_levels: L1 on 2x, 4x, ... average-
    pooled images. detail_weight: extra weight of the pixel terms where the target has local
    contrast (`1 + detail_weight * contrast`, contrast in [0, 1], see `detail_map`), so small
    high-contrast parts (eyes, mouth) are not traded for the large flat areas. noise_reg_weight: the
    projector's noise autocorrelation penalty (only when the
    generator has noise inputs). init_candidates: the W phase starts from the best of `w_avg` and
    this many mapped random z, compared on the generator's partial (skip) image at `init_res` px
    against the pooled target (cheap: the later blocks are not run); 0 = start at `w_avg` like the
    projector. start_space: "w" (the projector) or "z": phase 1 optimises z through the mapping
    network instead, which keeps the start on the generator's image manifold (useful for models
    whose W has large regions that draw no detail, e.g. the toy GAN). pti_locality_weight: PTI's
    locality regulariser (Roich et al. 2021, section 3.3; 0 = off): each tuning step also renders a
    latent `pti_locality_reach` of the way from the pivot towards a random sample of W and keeps the
    tuned generator's image there equal (L2 + L1) to the original's, so the tuning stays local and
    drags away from the pivot behave as on the original generator. pti_change_weight: keeps how the
    image *changes* near the pivot (0 = off): each tuning step also renders a latent
    `pti_change_reach` of the way from the pivot towards a random sample of W and asks that the
    tuned generator's image there differ from its image at the pivot as the reference generator's
    do (the generator as it was when tuning began, noise maps included; L2 + L1 on the two
    differences; the gradient reaches both tuned images), so the photo is fitted without making the
    generator stiff to latent moves (a drag moves the latent a little; unlike the locality term it
    does not pull the image at those latents towards the original's, which lacks the photo's
    details). Ours, after the locality term's pattern. pti_min_res: pivotal tuning changes only the
    synthesis blocks at this resolution (px) and finer, the coarser ones (with the constant input)
    stay as trained (0 = every block, as in PTI): the generator's layout, where parts sit and how
    they move when the latent moves, stays its own while the finer blocks fit the photo's details,
    so a drag on the tuned generator moves a part instead of smearing or stretching it (ours;
    must be 0 or one of the generator's block resolutions). pti_focus_weight: during pivotal tuning
    the pixel terms are also weighted by `1 + pti_focus_weight * error_map(image, target)`, where the
    image is still furthest from the photo (recomputed every step, scaled to max 1, no gradient
    through it; 0 = off): a part the pivot does not draw at all (a thin mouth on a face whose W+ lost
    it) pulls the tuning until it is drawn instead of being traded for the large areas (ours, after
    the hard-example weighting of focal losses). refine_passes: after the projection, this many
    passes of what the GAN tab's "More steps" does (`more_steps_config`: half the steps, continuing
    from the result; with pivotal tuning, the weights only at half the learning rate and with the
    focus weight at least `REFINE_FOCUS_WEIGHT`), built in (0 = none). seed: for
    the candidates, the W perturbation, the w_std samples and the locality / change samples.
    """

    settings_name = "projection settings"  # `to_dict` / `from_dict` come from DictSettings

    w_steps: int = 150
    wplus_steps: int = 150
    pti_steps: int = 150
    w_lr: float = 0.1
    wplus_lr: float = 0.02
    pti_lr: float = 1e-3
    noise_factor: float = 0.05
    noise_ramp: float = 0.75
    w_avg_samples: int = 2000
    l2_weight: float = 1.0
    l1_weight: float = 1.0
    pyramid_weight: float = 1.0
    pyramid_levels: int = 3
    noise_reg_weight: float = 1e5
    detail_weight: float = 10.0
    start_space: str = "w"
    init_candidates: int = 64
    init_res: int = 32
    pti_locality_weight: float = 0.0
    pti_locality_reach: float = 0.5
    pti_change_weight: float = 0.0
    pti_change_reach: float = 0.1
    pti_min_res: int = 0
    pti_focus_weight: float = 0.0
    refine_passes: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("w_steps", "wplus_steps", "pti_steps", "pyramid_levels", "refine_passes"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.start_space not in ("w", "z"):
            raise ValueError(f"start_space must be 'w' or 'z', got {self.start_space!r}")
        if self.w_steps + self.wplus_steps <= 0:
            raise ValueError("at least one of w_steps and wplus_steps must be > 0")
        for name in ("w_lr", "wplus_lr", "pti_lr"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.pti_locality_weight < math.inf:
            raise ValueError(f"pti_locality_weight must be a finite number >= 0, got {self.pti_locality_weight}")
        if not 0 < self.pti_locality_reach <= 1:
            raise ValueError(f"pti_locality_reach must be in (0, 1], got {self.pti_locality_reach}")
        if not 0 <= self.pti_change_weight < math.inf:
            raise ValueError(f"pti_change_weight must be a finite number >= 0, got {self.pti_change_weight}")
        if not 0 < self.pti_change_reach <= 1:
            raise ValueError(f"pti_change_reach must be in (0, 1], got {self.pti_change_reach}")
        if int(self.pti_min_res) < 0:
            raise ValueError(f"pti_min_res must be 0 or a block resolution, got {self.pti_min_res}")
        if not 0 <= self.pti_focus_weight < math.inf:
            raise ValueError(f"pti_focus_weight must be a finite number >= 0, got {self.pti_focus_weight}")


def recommended_projection(model: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """The projection settings recommended for the GAN `model` (a native model folder; None = the
    bundled toy GAN, `assets/models/toy_gan/`): the `project` entry of its `stabledrag_settings.json`
    (`stabledrag.model_settings`), `{}` for a single-file model (`.pkl`, `.safetensors`) or a folder
    without one. Keys are `ProjectionConfig` fields. (The toy GAN's: phase 1 in Z, because its W has
    wide regions that draw faces without eyes, and the pivotal tuning that its 50-face benchmark
    needs; see `python -m stabledrag bench toy --backend gan --source rendered`.)

    Raises UserError naming the file when it is malformed or a key / value is not a valid
    `ProjectionConfig` setting."""
    from ..model_settings import folder_overrides, settings_path
    from .presets import settings_folder

    folder = settings_folder(model)
    rec = folder_overrides(folder, "project")
    if rec:  # checked here, so every caller (CLI, bench, app) names the file for a bad value
        try:
            ProjectionConfig(**rec)
        except (TypeError, ValueError) as e:
            raise UserError(f"{os.fspath(settings_path(folder))!r}: bad projection setting: {e}") from None
    return rec


def projection_config(model: Optional[str | os.PathLike] = None, source: str = "projection setting",
                      **overrides: Any) -> ProjectionConfig:
    """`ProjectionConfig` for `model`: the defaults (the StyleGAN2 projector's shape), then the
    model's recommended settings (`recommended_projection`), then `overrides` (the user's).

    Raises UserError for a malformed model settings file (naming it) or a bad override (naming
    `source`, e.g. "--set")."""
    values = {**recommended_projection(model), **overrides}
    try:
        return ProjectionConfig(**values)
    except (TypeError, ValueError) as e:
        raise UserError(f"Bad {source}: {e}") from None


@dataclass(frozen=True)
class CropBox:
    """Where the generator-size image came from in the original photo.

    left, top, right, bottom: the crop in original pixels (right/bottom exclusive), a square.
    width, height: the original photo's size. resolution: the generator's size it was resized to.
    """

    left: int
    top: int
    right: int
    bottom: int
    width: int
    height: int
    resolution: int

    def to_list(self) -> list[int]:
        """`[left, top, right, bottom, width, height, resolution]`."""
        return [self.left, self.top, self.right, self.bottom, self.width, self.height, self.resolution]

    @classmethod
    def from_list(cls, values: Any) -> "CropBox":
        """Inverse of `to_list`."""
        v = [int(x) for x in values]
        if len(v) != 7:
            raise ValueError(f"a crop box has 7 numbers, got {len(v)}")
        return cls(*v)

    @property
    def is_identity(self) -> bool:
        """True when the photo was already the generator's size (nothing cropped or resized)."""
        return (self.left, self.top, self.right, self.bottom) == (0, 0, self.width, self.height) \
            and self.width == self.height == self.resolution


@dataclass
class ProjectionResult:
    """A projected image.

    ws: the latent, `1 x num_ws x w_dim` float32 (CPU). w: the phase-1 latent `1 x w_dim`.
    weight_delta: `{state-dict name: tuned - original}` for the tensors PTI (or noise optimisation)
    changed; empty without them. Apply with `apply_weight_delta`.
    target: the aligned image that was projected, `R x R x 3` uint8. image: its reconstruction
    (with the delta), image_before_pti: without it. psnr / ssim: reconstruction vs target (dB, [0,1])
    with the delta; psnr_before_pti / ssim_before_pti: W+ alone. crop: where `target` came from.
    seconds: per phase. config: the settings used. model_key: fingerprint of the generator.
    """

    config: ProjectionConfig
    ws: torch.Tensor
    w: torch.Tensor
    weight_delta: dict[str, torch.Tensor]
    target: np.ndarray
    image: np.ndarray
    image_before_pti: np.ndarray
    psnr: float
    ssim: float
    psnr_before_pti: float
    ssim_before_pti: float
    crop: Optional[CropBox] = None
    seconds: dict[str, float] = field(default_factory=dict)
    model_key: str = ""

    def metrics(self) -> dict[str, Any]:
        """JSON-ready numbers (quality, timings, config)."""
        return {
            "psnr": round(self.psnr, 3), "ssim": round(self.ssim, 4),
            "psnr_before_pti": round(self.psnr_before_pti, 3), "ssim_before_pti": round(self.ssim_before_pti, 4),
            "pti": self.config.pti_steps > 0, "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "config": self.config.to_dict(), "crop": None if self.crop is None else self.crop.to_list(),
        }


# -- image alignment and paste-back ---------------------------------------------------------------
def align_image(image: Any, resolution: int, box: Optional[tuple[int, int, int, int]] = None
                ) -> tuple[np.ndarray, CropBox]:
    """Crop a photo to a square and resize it to the generator's `resolution`.

    image: PIL image or `H x W x 3`/`H x W x 4`/`H x W` uint8 array (any size; alpha is dropped).
    box: `(left, top, right, bottom)` in photo pixels to crop (made square around its centre and
    kept inside the photo); None = the largest centred square. Resizing uses Lanczos (Pillow).
    Returns `(resolution x resolution x 3 uint8, CropBox)`. Raises UserError for an empty image.
    (No landmark alignment: FFHQ-style face alignment needs a landmark model this project lacks.)
    """
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    im = im.convert("RGB")
    w, h = im.size
    if w < 1 or h < 1:
        raise UserError("The image is empty.")
    if box is None:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        side = max(1, min(max(x1 - x0, y1 - y0), w, h))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = int(min(max(round(cx - side / 2), 0), w - side))
        top = int(min(max(round(cy - side / 2), 0), h - side))
    crop = CropBox(left, top, left + side, top + side, w, h, int(resolution))
    sq = im.crop((crop.left, crop.top, crop.right, crop.bottom))
    if sq.size != (resolution, resolution):
        sq = sq.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(sq, dtype=np.uint8).copy(), crop


def paste_back(original: Any, edited: np.ndarray, crop: CropBox) -> np.ndarray:
    """Put the edited generator-size image back where it was cropped from.

    original: the photo (PIL or `H x W x 3` uint8) of size `crop.width x crop.height`;
    edited: `R x R x 3` uint8. The edit is resized (Lanczos) to the crop box and replaces it.
    Returns the full photo `H x W x 3` uint8. Raises UserError when the sizes do not match.
    """
    from PIL import Image

    im = original if isinstance(original, Image.Image) else Image.fromarray(np.asarray(original))
    im = im.convert("RGB")
    if im.size != (crop.width, crop.height):
        raise UserError(f"The photo is {im.size[0]}x{im.size[1]} but the projection was cropped from a "
                        f"{crop.width}x{crop.height} photo.")
    if crop.is_identity:
        return np.asarray(edited, dtype=np.uint8).copy()
    patch = Image.fromarray(np.asarray(edited, dtype=np.uint8))
    side = crop.right - crop.left
    if patch.size != (side, side):
        patch = patch.resize((side, side), Image.LANCZOS)
    out = im.copy()
    out.paste(patch, (crop.left, crop.top))
    return np.asarray(out, dtype=np.uint8).copy()


# -- metrics --------------------------------------------------------------------------------------
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (99 for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else min(99.0, 10 * math.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (scikit-image, 7x7 window, over the colour channels) between two `H x W x 3` uint8 images."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


# -- generator helpers ----------------------------------------------------------------------------
_FINGERPRINTS: dict[int, tuple[Any, str]] = {}


def model_fingerprint(G: Generator) -> str:
    """SHA-1 of the generator's config and state dict (names, shapes, bytes); memoised per object
    (generators are not modified in place by this module)."""
    hit = _FINGERPRINTS.get(id(G))
    if hit is not None and hit[0]() is G:
        return hit[1]
    import weakref

    h = hashlib.sha1(repr(sorted(G.config.to_dict().items())).encode())
    _hash_tensors(h, G.state_dict().items())
    key = h.hexdigest()
    _FINGERPRINTS[id(G)] = (weakref.ref(G), key)
    return key


def _hash_tensors(h: Any, named: Any) -> None:
    """Feed `(name, tensor)` pairs to the hash `h`: each name, shape and float32 bytes, in order."""
    for name, t in named:
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def noise_buffers(G: Generator) -> dict[str, torch.Tensor]:
    """`{state-dict name: noise_const}` of every synthesis layer whose noise input has an effect
    (non-zero `noise_strength`)."""
    strengths = dict(G.named_parameters())
    return {n: b for n, b in G.named_buffers() if n.endswith("noise_const")
            and float(strengths[n[: -len("noise_const")] + "noise_strength"]) != 0.0}


def apply_weight_delta(G: Generator, delta: dict[str, torch.Tensor]) -> Generator:
    """A copy of `G` with `delta` (`{state-dict name: tensor}`, as from `ProjectionResult.weight_delta`)
    added to its weights; `G` itself when `delta` is empty. Raises UserError for names or shapes the
    generator does not have."""
    if not delta:
        return G
    state = G.state_dict()
    bad = [k for k, v in delta.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise UserError(f"The tuned weights do not fit this model ({', '.join(bad[:3])}); "
                        "load the model the projection was made with.")
    G2 = copy.deepcopy(G)
    with torch.no_grad():
        own = G2.state_dict()
        for k, v in delta.items():
            own[k].add_(v.to(own[k].device, own[k].dtype))
    return G2.eval().requires_grad_(False)


def weight_delta(G: Generator, tuned: Generator, atol: float = 0.0) -> dict[str, torch.Tensor]:
    """`{name: tuned - G}` (CPU float32) for floating tensors that differ by more than `atol`."""
    base = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in tuned.state_dict().items():
        if not v.is_floating_point():
            continue
        d = (v.detach() - base[k].detach()).to("cpu", torch.float32)
        if float(d.abs().max()) > atol:
            out[k] = d
    return out


def detail_map(target: torch.Tensor, spread: int = 2) -> torch.Tensor:
    """Local contrast of `target` (`N x 3 x R x R` in [-1, 1]): the colour distance to its 3x3 mean,
    dilated by `spread` px (max-pool) and scaled to max 1; `N x 1 x R x R` in [0, 1]."""
    blur = F.avg_pool2d(F.pad(target, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    c = (target - blur).abs().sum(1, keepdim=True)
    if spread > 0:
        c = F.max_pool2d(c, 2 * spread + 1, stride=1, padding=spread)
    return c / c.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]


def error_map(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Where `img` is still off `target` (both `N x 3 x R x R` in [-1, 1]): the colour distance (sum
    of the channels' absolute differences) averaged over 3x3 px and scaled to max 1 per image;
    `N x 1 x R x R` in [0, 1], no gradient."""
    with torch.no_grad():
        e = (img - target).abs().sum(1, keepdim=True)
        e = F.avg_pool2d(F.pad(e, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return e / e.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]


def reconstruction_loss(img: torch.Tensor, target: torch.Tensor, cfg: ProjectionConfig,
                        weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pixel L2 + L1 (weighted per pixel by `weight`, `N x 1 x R x R`, when given) and pyramid L1
    between `N x 3 x R x R` images in [-1, 1] (a scalar)."""
    diff = img - target
    if weight is not None:
        loss = cfg.l2_weight * (diff.square() * weight).mean() + cfg.l1_weight * (diff.abs() * weight).mean()
    else:
        loss = cfg.l2_weight * diff.square().mean() + cfg.l1_weight * diff.abs().mean()
    if cfg.pyramid_weight and cfg.pyramid_levels:
        a, b = img, target
        for _ in range(cfg.pyramid_levels):
            if a.shape[-1] < 8:
                break
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            loss = loss + cfg.pyramid_weight * (a - b).abs().mean()
    return loss


def noise_regularisation(noises: list[torch.Tensor]) -> torch.Tensor:
    """The StyleGAN2 projector's penalty: squared autocorrelation at 1 px shifts (x and y) of each
    noise map, summed over a 2x average-pooled pyramid down to 8 px. noises: `R x R` tensors."""
    reg = torch.zeros((), device=noises[0].device) if noises else torch.zeros(())
    for n in noises:
        x = n[None, None]
        while True:
            reg = reg + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


def _lr_schedule(t: float, peak: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The projector's learning-rate shape over the phase fraction `t` in [0, 1]."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return peak * ramp


# -- the projection -------------------------------------------------------------------------------
_CACHE: "OrderedDict[tuple, ProjectionResult]" = OrderedDict()
CACHE_SIZE = 8


def clear_cache() -> None:
    """Forget cached projections."""
    _CACHE.clear()


def _remember(key: tuple, result: "ProjectionResult") -> None:
    """Cache `result` under `key`, forgetting the oldest entries beyond `CACHE_SIZE`."""
    _CACHE[key] = result
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)


def cache_key(G: Generator, image: np.ndarray, config: ProjectionConfig) -> tuple:
    """`(model fingerprint, sha1 of the image's shape and bytes, config as sorted items)`."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    digest = hashlib.sha1(str(img.shape).encode() + img.tobytes()).hexdigest()
    return (model_fingerprint(G), digest, tuple(sorted(config.to_dict().items())))


def project(G: Generator, image: Any, config: Optional[ProjectionConfig] = None, *,
            crop: Optional[CropBox] = None, progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelToken] = None, preview_every: int = 0, use_cache: bool = True,
            init: Optional["ProjectionResult"] = None) -> ProjectionResult:
    """Find W+ (and, with `pti_steps > 0`, a weight delta) that make `G` reproduce `image`.

    G: a loaded generator (not modified). image: `R x R x 3` uint8 at the generator's resolution
    (use `align_image` first for other sizes; a PIL image or array of another size is aligned
    here with a centred square crop). crop: the box `image` came from (recorded in the result).
    progress: reports `Progress(phase in PHASES, step, total, info={"loss", "psnr"?}, preview?)`;
    previews (uint8 `R x R x 3`) every `preview_every` steps (0 = none). cancel: checked every
    step; raises `stabledrag.progress.Cancelled`. init: a previous result of the same image to
    continue from ("more steps": its W+ and delta are the start; the W phase is skipped).
    Cached per (model, image, config, init) unless `use_cache` is False. Raises UserError for a
    class-conditional generator, and (before any work) for a `pti_min_res` that is not one of its
    block resolutions (`pti_parameters`).
    """
    cfg = config if config is not None else ProjectionConfig()
    if G.c_dim > 0:
        raise UserError("This generator is class-conditional; projection supports unconditional models only.")
    res = G.img_resolution
    arr = np.asarray(image) if not hasattr(image, "convert") else None
    if arr is None or arr.shape != (res, res, 3) or arr.dtype != np.uint8:
        arr, auto_crop = align_image(image, res)
        crop = crop or auto_crop
    key = cache_key(G, arr, cfg) + (None if init is None else _start_digest(init),)
    if use_cache and key in _CACHE:
        _CACHE.move_to_end(key)
        hit = _CACHE[key]
        log.info("projection cache hit")
        return dataclasses.replace(hit, crop=crop or hit.crop)

    if cfg.pti_steps > 0:
        pti_parameters(G.synthesis, cfg.pti_min_res)  # a bad pti_min_res fails now, not after the W phases
    if cfg.refine_passes > 0:
        result = _project_with_passes(G, arr, cfg, crop, progress, cancel, preview_every, init)
        if use_cache:
            _remember(key, result)
        return result
    dev = G.device
    target = image_to_tensor(arr, dev)
    pix_w = 1.0 + cfg.detail_weight * detail_map(target) if cfg.detail_weight else None
    seconds: dict[str, float] = {}
    rng = torch.Generator(device="cpu").manual_seed(int(cfg.seed))
    # A private copy: noise maps and (PTI) weights change during projection; G stays untouched.
    base = G if init is None else apply_weight_delta(G, init.weight_delta)
    Gp = copy.deepcopy(base).eval().requires_grad_(False)
    noises = noise_buffers(Gp)

    def emit(phase: str, step: int, total: int, loss: float, img: Optional[torch.Tensor]) -> None:
        preview = None
        if img is not None and preview_every and (step % preview_every == 0 or step == total):
            preview = to_uint8(img)
        report(progress, phase, step, total, info={"loss": round(loss, 5)}, preview=preview)

    def check() -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()

    # Phase 1: W (projector), with the constant noise maps when the generator has them.
    if init is None and cfg.w_steps > 0:
        t0 = time.perf_counter()
        with torch.no_grad():
            z = torch.randn(max(cfg.w_avg_samples, cfg.init_candidates), G.z_dim, generator=rng).to(dev)
            w_samples = Gp.mapping(z, None)[:, 0]
            w_avg = Gp.mapping.w_avg.detach().clone()[None] if hasattr(Gp.mapping, "w_avg") else \
                w_samples.mean(0, keepdim=True)
            w_std = float(((w_samples - w_avg).square().sum(1).mean()) ** 0.5)
        if cfg.start_space == "z":
            best = _best_start(Gp, w_samples[: max(1, cfg.init_candidates)], target, cfg)
            leaf = z[best: best + 1].clone().requires_grad_(True)
            leaf_std = math.sqrt(G.z_dim)
        else:
            w_start = w_avg
            if cfg.init_candidates > 0:
                cands = torch.cat([w_avg, w_samples[: cfg.init_candidates]])
                w_start = cands[_best_start(Gp, cands, target, cfg)][None]
            leaf = w_start.clone().requires_grad_(True)
            leaf_std = w_std

        def to_w(v: torch.Tensor) -> torch.Tensor:
            return Gp.mapping(v, None)[:, 0] if cfg.start_space == "z" else v

        noise_leaves = []
        for name, buf in noises.items():
            n_leaf = buf.detach().clone().requires_grad_(True)
            _set_buffer(Gp, name, n_leaf)
            noise_leaves.append(n_leaf)
        opt = torch.optim.Adam([leaf] + noise_leaves, lr=cfg.w_lr, betas=(0.9, 0.999))
        report(progress, "project_w", 0, cfg.w_steps)
        for step in range(cfg.w_steps):
            check()
            t = step / cfg.w_steps
            for g in opt.param_groups:
                g["lr"] = _lr_schedule(t, cfg.w_lr)
            scale = leaf_std * cfg.noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
            w_noisy = to_w(leaf + torch.randn(leaf.shape, generator=rng).to(dev) * scale)
            img, _ = Gp.synthesis(w_noisy[:, None].repeat(1, G.num_ws, 1), noise_mode="const")
            loss = reconstruction_loss(img, target, cfg, pix_w)
            if noise_leaves and cfg.noise_reg_weight:
                loss = loss + cfg.noise_reg_weight * noise_regularisation(noise_leaves)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # the projector keeps each noise map at zero mean, unit variance
                for n in noise_leaves:
                    n.sub_(n.mean()).div_(n.square().mean().sqrt() + 1e-8)
            emit("project_w", step + 1, cfg.w_steps, float(loss.detach()), img.detach())
        for name, n_leaf in zip(noises, noise_leaves):
            _set_buffer(Gp, name, n_leaf.detach())
        with torch.no_grad():
            ws = to_w(leaf.detach())[:, None].repeat(1, G.num_ws, 1)
        seconds["project_w"] = time.perf_counter() - t0
    elif init is not None:
        ws = init.ws.to(dev).clone()
    else:
        ws = Gp.mapping.w_avg.detach().clone()[None, None].repeat(1, G.num_ws, 1)
    w_phase1 = ws[:, 0].detach().clone() if init is None else init.w.to(dev).clone()

    def toward_random_w(latent: torch.Tensor, reach: float, G_ref: Generator) -> torch.Tensor:
        """A latent `reach` of the way from `latent` (W+) towards a random sample of `G_ref`'s W
        (one z from the projection's `rng`), for the PTI regularisers."""
        with torch.no_grad():
            z = torch.randn(1, G.z_dim, generator=rng).to(dev)
            w_z = G_ref.mapping(z, None)[:, :1]  # 1 x 1 x w_dim
            return latent + reach * (w_z - latent)

    def locality_loss(latent: torch.Tensor, G_ref: Generator) -> torch.Tensor:
        """PTI's locality regulariser (Roich et al. 2021, section 3.3): at a latent part of the way
        (`pti_locality_reach`) from the pivot towards a random sample of W, the tuned generator
        draws what `G_ref` (the generator as it was when tuning began, noise maps included) draws,
        so the tuning stays local to the pivot and edits away from it behave as before tuning."""
        w_r = toward_random_w(latent, cfg.pti_locality_reach, G_ref)
        with torch.no_grad():
            ref, _ = G_ref.synthesis(w_r, noise_mode="const")
        img_r, _ = Gp.synthesis(w_r, noise_mode="const")
        return _l2_plus_l1(img_r - ref)

    def change_loss(latent: torch.Tensor, img: torch.Tensor, G_ref: Generator, ref_pivot: torch.Tensor
                    ) -> torch.Tensor:
        """The change term (`pti_change_weight`): at a latent `pti_change_reach` of the way from the
        pivot towards a random sample of W, (tuned image there - tuned image `img` at the pivot)
        against the same difference for `G_ref` (`ref_pivot`: its image at the pivot)."""
        w_r = toward_random_w(latent, cfg.pti_change_reach, G_ref)
        with torch.no_grad():
            ref_change = G_ref.synthesis(w_r, noise_mode="const")[0] - ref_pivot
        img_r, _ = Gp.synthesis(w_r, noise_mode="const")
        return _l2_plus_l1((img_r - img) - ref_change)

    def fit(phase: str, params: list[torch.Tensor], steps: int, peak_lr: float, latent: torch.Tensor) -> None:
        """Adam on `params` for `steps` with the projector's lr schedule, rendering `latent` (W+)
        against the target (phases 2 and 3: W+, pivotal tuning; PTI with its locality term when
        `pti_locality_weight` > 0 and its change term when `pti_change_weight` > 0)."""
        opt = torch.optim.Adam(params, lr=peak_lr, betas=(0.9, 0.999))
        local = phase == "pti" and cfg.pti_locality_weight > 0
        change = phase == "pti" and cfg.pti_change_weight > 0
        G_ref = copy.deepcopy(Gp).eval().requires_grad_(False) if local or change else None
        ref_pivot = None
        if change:
            with torch.no_grad():
                ref_pivot, _ = G_ref.synthesis(latent, noise_mode="const")
        report(progress, phase, 0, steps)
        for step in range(steps):
            check()
            for g in opt.param_groups:
                g["lr"] = _lr_schedule(step / steps, peak_lr)
            img, _ = Gp.synthesis(latent, noise_mode="const")
            weight = pix_w
            if phase == "pti" and cfg.pti_focus_weight > 0:
                focus = 1.0 + cfg.pti_focus_weight * error_map(img.detach(), target)
                weight = focus if weight is None else weight * focus
            loss = reconstruction_loss(img, target, cfg, weight)
            if local:
                loss = loss + cfg.pti_locality_weight * locality_loss(latent, G_ref)
            if change:
                loss = loss + cfg.pti_change_weight * change_loss(latent, img, G_ref, ref_pivot)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            emit(phase, step + 1, steps, float(loss.detach()), img.detach())

    # Phase 2: W+ (every vector free).
    if cfg.wplus_steps > 0:
        t0 = time.perf_counter()
        wp = ws.clone().requires_grad_(True)
        fit("project_wplus", [wp], cfg.wplus_steps, cfg.wplus_lr, wp)
        ws = wp.detach()
        seconds["project_wplus"] = time.perf_counter() - t0

    with torch.no_grad():
        img_plain, _ = Gp.synthesis(ws, noise_mode="const")
    before = to_uint8(img_plain)

    # Phase 3: pivotal tuning of the synthesis weights around the pivot `ws`.
    if cfg.pti_steps > 0:
        t0 = time.perf_counter()
        params = pti_parameters(Gp.synthesis, cfg.pti_min_res)
        for p in params:
            p.requires_grad_(True)
        try:
            fit("pti", params, cfg.pti_steps, cfg.pti_lr, ws)
        finally:
            Gp.requires_grad_(False)
        seconds["pti"] = time.perf_counter() - t0

    with torch.no_grad():
        img_final, _ = Gp.synthesis(ws, noise_mode="const")
    after = to_uint8(img_final)
    delta = weight_delta(G, Gp)
    result = ProjectionResult(
        config=cfg, ws=ws.detach().cpu().clone(), w=w_phase1.cpu(), weight_delta=delta, target=arr.copy(),
        image=after, image_before_pti=before, psnr=psnr(after, arr), ssim=ssim(after, arr),
        psnr_before_pti=psnr(before, arr), ssim_before_pti=ssim(before, arr), crop=crop, seconds=seconds,
        model_key=model_fingerprint(G),
    )
    if use_cache:
        _remember(key, result)
    return result


REFINE_FOCUS_WEIGHT = 10.0


def more_steps_config(config: ProjectionConfig) -> ProjectionConfig:
    """One "More steps" press after a projection made with `config`: half its steps (at least one
    where it had any), then `refine_config` (with pivotal tuning when `config` had it). No passes
    of its own (`refine_passes` 0)."""
    half = {k: (max(1, round(getattr(config, k) * 0.5)) if getattr(config, k) > 0 else 0)
            for k in ("w_steps", "wplus_steps", "pti_steps")}
    return refine_config(dataclasses.replace(config, refine_passes=0, **half), config.pti_steps > 0)


def refine_config(config: ProjectionConfig, pti: bool) -> ProjectionConfig:
    """The settings of one "More steps" press continuing a projection (`project(..., init=...)`;
    `config`: the steps to run, e.g. half the model's): with PTI only the weights are tuned further
    around the fixed pivot (moving the latent would undo the tuning), at half the PTI learning rate
    and with the focus weight at least `REFINE_FOCUS_WEIGHT`, so the press goes where the image is
    still furthest from the photo (a mouth the first tuning left out; 50 rendered toy faces: the 4
    that missed all fit after one press); without PTI, W+ is refined at a quarter of its learning
    rate. No passes of its own (`refine_passes` 0). (The W phase is skipped whenever a projection
    continues.)"""
    if pti:
        return dataclasses.replace(config, wplus_steps=0, w_steps=max(config.w_steps, 1), refine_passes=0,
                                   pti_lr=config.pti_lr * 0.5,
                                   pti_focus_weight=max(config.pti_focus_weight, REFINE_FOCUS_WEIGHT))
    return dataclasses.replace(config, wplus_lr=config.wplus_lr * 0.25, refine_passes=0)


def _project_with_passes(G: Generator, arr: np.ndarray, cfg: ProjectionConfig, crop: Optional[CropBox],
                         progress: Optional[ProgressCallback], cancel: Optional[CancelToken], preview_every: int,
                         init: Optional[ProjectionResult]) -> ProjectionResult:
    """`project` with `cfg.refine_passes` "More steps" passes after it: the projection without
    passes, then each pass continuing from the last result (`more_steps_config`; its phases are
    reported as "refine"). The result carries `cfg`, the first projection's W-phase latent, the
    passes' time as seconds["refine"] and, with pivotal tuning (the passes then move the weights
    only), the first projection's latent-alone image and scores."""
    first = project(G, arr, dataclasses.replace(cfg, refine_passes=0), crop=crop, progress=progress,
                    cancel=cancel, preview_every=preview_every, use_cache=False, init=init)
    press = more_steps_config(cfg)

    def renamed(p: Any) -> Any:
        return progress(dataclasses.replace(p, phase="refine")) if progress is not None else None

    res, spent = first, 0.0
    for _ in range(cfg.refine_passes):
        res = project(G, arr, press, crop=crop, progress=renamed if progress is not None else None,
                      cancel=cancel, preview_every=preview_every, use_cache=False, init=res)
        spent += sum(res.seconds.values())
    kept: dict[str, Any] = {}
    if cfg.pti_steps > 0:  # the passes tuned weights only: the latent alone is still the first one's
        kept = dict(image_before_pti=first.image_before_pti, psnr_before_pti=first.psnr_before_pti,
                    ssim_before_pti=first.ssim_before_pti)
    return dataclasses.replace(res, config=cfg, w=first.w, seconds={**first.seconds, "refine": spent}, **kept)


def pti_parameters(synthesis: torch.nn.Module, min_res: int = 0) -> list[torch.Tensor]:
    """The synthesis network's parameters that pivotal tuning changes: those of its blocks at
    resolution >= `min_res` (`synthesis.b{res}` for `res` in `synthesis.block_resolutions`; 0 = all
    of them). Raises UserError when `min_res` is not 0 or one of the block resolutions."""
    if not min_res:
        return list(synthesis.parameters())
    resolutions = list(synthesis.block_resolutions)
    if min_res not in resolutions:
        raise UserError(f"The projection setting pti_min_res must be 0 or one of the generator's block "
                        f"resolutions {resolutions}, got {min_res}")
    return [p for res in resolutions if res >= min_res for p in getattr(synthesis, f"b{res}").parameters()]


def _start_digest(init: Any) -> str:
    """SHA-1 of a start's W+ and weight delta (names, shapes, bytes): what a continued projection's
    cache entry depends on besides the image and settings (two "More steps" presses in a row start
    from the same latent but different deltas)."""
    h = hashlib.sha1()
    _hash_tensors(h, [("ws", init.ws)] + sorted(init.weight_delta.items()))
    return h.hexdigest()


def _l2_plus_l1(d: torch.Tensor) -> torch.Tensor:
    """Mean squared plus mean absolute value of the difference `d` (the PTI regularisers' distance)."""
    return d.square().mean() + d.abs().mean()


def _best_start(G: Generator, candidates: torch.Tensor, target: torch.Tensor, cfg: ProjectionConfig,
                batch: int = 16) -> torch.Tensor:
    """Index of the row of `candidates` (`K x w_dim`) whose partial image at `cfg.init_res` (the
    skip path summed up to that block) is closest (L1) to the average-pooled target."""
    syn = G.synthesis
    res = min(max(int(cfg.init_res), syn.block_resolutions[0]), syn.img_resolution)
    res = max(r for r in syn.block_resolutions if r <= res)
    small = F.adaptive_avg_pool2d(target, res)
    losses = []
    with torch.no_grad():
        for chunk in candidates.split(batch):
            ws = chunk[:, None].repeat(1, G.num_ws, 1)
            _, img, _ = syn.run_blocks(ws, None, None, 0, res, noise_mode="const")
            if img is None or img.shape[-1] != res:  # not a skip generator: render in full
                img, _ = syn(ws, noise_mode="const")
                img = F.adaptive_avg_pool2d(img, res)
            losses.append((img - small).abs().flatten(1).mean(1))
    return int(torch.cat(losses).argmin())


def _set_buffer(G: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace the registered buffer `name` (dotted) of `G` by `value`."""
    mod_name, _, attr = name.rpartition(".")
    mod = G.get_submodule(mod_name) if mod_name else G
    mod._buffers[attr] = value
