"""The drag configuration: every constant of the drag loop, tracker and supervision.

One dataclass, `DragConfig`, with a preset per method:
- "stabledrag":    discriminative tracker + confident motion supervision (StableDrag), on *our tuned*
                   engine settings (each engine's presets: `stabledrag.gan.presets.gan_defaults`,
                   `stabledrag.diffusion.presets.diffusion_defaults`);
- "baseline":      nearest-neighbour tracker + plain supervision on the same tuned settings: isolates
                   what StableDrag's tracker and supervision change;
- "draggan":       DragGAN's published algorithm and defaults exactly (`gan.presets.draggan_defaults`);
- "dragdiffusion": DragDiffusion's published algorithm and defaults exactly
  (`diffusion.presets.dragdiffusion_defaults`).
The presets live with their engines: this module (part of the core) imports no engine.
Users may override any field. Distances and radii are in *feature* pixels of the backend's feature map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .dataclass_dict import DictSettings

METHODS = ("stabledrag", "baseline", "draggan", "dragdiffusion")
#: Methods that reproduce a reference implementation (nearest-neighbour tracking, plain supervision).
REFERENCE_METHODS = ("draggan", "dragdiffusion")
PATCH_SHAPES = ("square", "disk", "draggan")
POINT_SNAPS = ("none", "pixel", "cell")
TRACKERS = ("discriminative", "nearest")
SUPERVISIONS = ("confident", "plain")


def _number_like(v: Any) -> bool:
    """An int / float, or a string that reads as one (e.g. "nan" from `--set`: the limits check
    names what is wrong with it); not a bool, None or other text."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return isinstance(v, str)


@dataclass
class DragConfig(DictSettings):
    """Everything the drag loop needs besides the backend and the points.

    method: one of `METHODS`; sets `tracker` ("discriminative" for "stabledrag", else "nearest") and
      `supervision` ("confident" for "stabledrag", else "plain") unless they are given.
    tracker: "discriminative" (StableDrag) or "nearest" (DragGAN/DragDiffusion).
    supervision: "confident" (template patch below `tau`) or "plain".
    r_m: motion-supervision patch radius (feature px). r_p: tracking search radius (feature px).
    patch_shape: motion patch: "square" `(2 r_m + 1)^2` (DragDiffusion), "disk" (integer offsets with
      norm <= r_m, centred), or "draggan": DragGAN's own patch, the integer pixels (i, j) whose
      position on a `linspace(0, H, H) x linspace(0, W, W)` grid is at distance < r_m from the handle
      (`sampling.draggan_patch`; off-centre by up to about 1 px, 3-4 px at r_m = 1).
    lr: Adam learning rate on the backend's parameters. max_steps: drag iterations at most.
    stop_distance: stop when every handle is within this distance of its target (feature px).
    supervise_min_distance: a handle this close to its target gets no motion loss; None = the stop
      distance, and never more than it (`push_distance`): one rule, so a drag never idles with
      every handle unsupervised but unstopped (an old toy-SD setting, 2 px push / 1 px stop, ran
      every drag to max_steps). DragGAN pushes beyond 1 px and stops within 2 px.
    lambda_mask: weight of the backend's mask loss.
    nn_metric: "l1" or "l2" distance for nearest-neighbour matching.
    train_radius: discriminative tracker's training window radius (feature px); None = 3 * r_p.
    train_points: at most this many training positions per side of the window (strided beyond).
    sigma: least width of the Gaussian label peak (feature px); the tracker widens it per handle to
      the features' own resolution (up-sampled maps).
    ridge: ridge regulariser of the filter towards its template initialisation.
    hard_negative_weight: extra loss weight on look-alike positions away from the handle.
    fusion_weight: weight of the nearest-neighbour similarity fused with the filter response.
    fusion_ridge_gain: added to `fusion_weight` per handle, times the handle's ridge share (the
      part of its search window where its own filter already answers like the handle on the first
      map: an edge or a band), so handles on an outline trust their template more than the filter,
      which cannot tell places along the edge apart (`tracking.DiscriminativeTracker`). 0 = off.
    subpixel: refine each tracked handle to sub-pixel precision by a parabola through the score's
      peak (`tracking.subpixel_peak`); None = on for the discriminative tracker, off for nearest
      neighbour (DragGAN / DragDiffusion move handles in whole feature pixels).
    plateau_level: discriminative tracker: the handle is the centroid of the score's top plateau
      joined to the peak (positions within this fraction of the window's score range below the
      peak, weighted by their height above that floor; `tracking.plateau_centroid`) instead of the
      peak alone. A part being dragged smears towards its target, and the peak sits at its leading
      edge (the motion loss copies the handle's feature one step ahead); the plateau's centroid
      stays with the part. 0 = the peak. Only with `subpixel` (a whole-pixel tracker stays on
      the lattice), and only for blob-like handles (on an outline or the mouth's band the plateau
      runs along the ridge; `tracking.PLATEAU_MAX_RIDGE_SHARE`); the confidence is the peak's.
    context_weight: discriminative tracker: weight of the context term for handles inside a flat
      part (an eye's interior, where every 1 x 1 feature looks alike and the handle's own feature,
      copied ahead by the motion loss, runs ahead of the part): the features on a ring around each
      window position, as wide as the handle's own extent (at most half the training window + 1 px),
      are matched against the step-0 ring, which sees the part's outline. Scaled per handle by its
      flat share (the directions in which its look fills half the training window: 1 for an eye,
      ~0 on texture, where it is skipped).
      0 = off (the paper's 1 x 1 tracker).
    tau: confidence threshold below which confident supervision uses the template patch.
    template_weight: weight of the template-patch loss when it is used (scaled by the mix).
    template_blend: below tau, mix template and current patch by confidence (template share
      1 - conf / tau) instead of switching wholly to the template (the paper's rule: False).
    template_refresh: the template is the handle's patch at the last step it was tracked with
      confidence >= tau (initially the step-0 patch), not always the step-0 patch (paper: False).
    motion_reduction: per handle, "sum" over patch positions (DragDiffusion) or "mean" (DragGAN).
    point_snap: how the editors place the user's points on the feature grid before dragging:
      "none" (sub-pixel, ours), "pixel" (DragGAN: handles and targets rounded to whole feature
      pixels) or "cell" (DragDiffusion: `round(p * feature_size / image_size)`, its own scaling);
      see `points.snap_points`.
    """

    settings_name = "drag settings"  # `to_dict` / `from_dict` come from DictSettings

    method: str = "stabledrag"
    tracker: str = ""
    supervision: str = ""
    r_m: float = 1.0
    r_p: float = 3.0
    patch_shape: str = "square"
    lr: float = 0.01
    max_steps: int = 80
    stop_distance: float = 2.0
    supervise_min_distance: float | None = None
    lambda_mask: float = 0.1
    nn_metric: str = "l1"
    train_radius: float | None = None
    train_points: int = 25
    sigma: float = 1.0
    ridge: float = 0.1
    hard_negative_weight: float = 4.0
    fusion_weight: float = 0.5
    fusion_ridge_gain: float = 40.0
    subpixel: bool | None = None
    plateau_level: float = 0.2
    context_weight: float = 1.0
    tau: float = 0.6
    template_weight: float = 1.0
    template_blend: bool = True
    template_refresh: bool = True
    motion_reduction: str = "sum"
    point_snap: str = "none"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # numbers must be numbers (a `--set r_p=wide`, a bad settings file)
            if type(f.default) in (int, float) and not _number_like(getattr(self, f.name)):
                raise ValueError(f"{f.name} must be a number, got {getattr(self, f.name)!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not self.tracker:
            self.tracker = "discriminative" if self.method == "stabledrag" else "nearest"
        if not self.supervision:
            self.supervision = "confident" if self.method == "stabledrag" else "plain"
        if self.tracker not in TRACKERS:
            raise ValueError(f"tracker must be one of {TRACKERS}, got {self.tracker!r}")
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"supervision must be one of {SUPERVISIONS}, got {self.supervision!r}")
        if self.patch_shape not in PATCH_SHAPES:
            raise ValueError(f"patch_shape must be one of {PATCH_SHAPES}, got {self.patch_shape!r}")
        if self.point_snap not in POINT_SNAPS:
            raise ValueError(f"point_snap must be one of {POINT_SNAPS}, got {self.point_snap!r}")
        if self.motion_reduction not in ("sum", "mean"):
            raise ValueError(f"motion_reduction must be 'sum' or 'mean', got {self.motion_reduction!r}")
        if self.nn_metric not in ("l1", "l2"):
            raise ValueError(f"nn_metric must be 'l1' or 'l2', got {self.nn_metric!r}")
        for name in ("r_p", "lr", "sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.r_m < 0 or self.max_steps < 0 or self.stop_distance < 0 or self.lambda_mask < 0:
            raise ValueError("r_m, max_steps, stop_distance and lambda_mask must be >= 0")
        if not self.fusion_weight >= 0 or not self.fusion_ridge_gain >= 0:
            raise ValueError("fusion_weight and fusion_ridge_gain must be >= 0")
        if not 0 <= self.plateau_level < 1:
            raise ValueError(f"plateau_level must be in [0, 1), got {self.plateau_level}")
        if not self.context_weight >= 0:
            raise ValueError(f"context_weight must be >= 0, got {self.context_weight}")

    @property
    def push_distance(self) -> float:
        """Motion-loss threshold (feature px): `supervise_min_distance`, at most `stop_distance`."""
        if self.supervise_min_distance is None:
            return self.stop_distance
        return min(self.supervise_min_distance, self.stop_distance)

    @property
    def effective_subpixel(self) -> bool:
        """Whether the tracker refines handles to sub-pixel precision (see `subpixel`)."""
        if self.subpixel is None:
            return self.tracker == "discriminative"
        return bool(self.subpixel)

    @property
    def effective_train_radius(self) -> float:
        """Training-window radius of the discriminative tracker (feature px)."""
        return self.train_radius if self.train_radius is not None else 3.0 * self.r_p

    def replace(self, **changes: Any) -> "DragConfig":
        """A copy with `changes` applied; changing `method` re-derives tracker and supervision
        unless they are given too."""
        if "method" in changes:
            changes.setdefault("tracker", "")
            changes.setdefault("supervision", "")
        return dataclasses.replace(self, **changes)
