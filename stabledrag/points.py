"""Handle/target point pairs: parsing, validation and coordinate scaling.

Conventions used across the project:
- A point is `(x, y)`: x is the column, y the row, in pixels, origin at the top-left pixel's
  centre (so the centre of a W-wide image is x = (W - 1) / 2).
- Point sets are float tensors of shape `N x 2` holding `(x, y)`.
- "Image" coordinates are pixels of the user's image; "feature" coordinates are pixels of the
  feature map a backend exposes. `scale_points` maps between any two grids by their sizes,
  treating pixels as cells (corner-aligned), so the image centre maps to the feature centre.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .errors import UserError

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_XY = rf"\(?\s*({_NUM})\s*,\s*({_NUM})\s*\)?"  # "x, y", optionally in parentheses
_PAIR_RE = re.compile(rf"^\s*{_XY}\s*(?::|->|→)\s*{_XY}\s*$")


@dataclass(frozen=True)
class DragPoints:
    """Handles and targets, `N x 2` float tensors of `(x, y)` in some pixel grid."""

    handles: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.handles.shape != self.targets.shape or self.handles.ndim != 2 or self.handles.shape[1] != 2:
            raise ValueError(
                f"handles and targets must both be N x 2, got {tuple(self.handles.shape)} and "
                f"{tuple(self.targets.shape)}"
            )

    def __len__(self) -> int:
        return int(self.handles.shape[0])

    def to_list(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Pairs as plain Python floats: `[((hx, hy), (tx, ty)), ...]`."""
        return [
            ((float(h[0]), float(h[1])), (float(t[0]), float(t[1])))
            for h, t in zip(self.handles.tolist(), self.targets.tolist())
        ]

    def to_string(self) -> str:
        """The `x,y:x,y` form used by the CLI, one pair per space."""
        return " ".join(f"{_fmt(h[0])},{_fmt(h[1])}:{_fmt(t[0])},{_fmt(t[1])}" for h, t in self.to_list())

    def scaled(self, src_size: tuple[int, int], dst_size: tuple[int, int]) -> "DragPoints":
        """The same points in a grid of `dst_size = (W, H)` instead of `src_size = (W, H)`."""
        return DragPoints(scale_points(self.handles, src_size, dst_size),
                          scale_points(self.targets, src_size, dst_size))


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def parse_pair(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Parse one `"x,y:x,y"` (also `"(x, y) -> (x, y)"`) string into `((hx, hy), (tx, ty))`.

    Raises UserError with an example of the expected form when the text does not parse.
    """
    m = _PAIR_RE.match(text)
    if not m:
        raise UserError(
            f"Could not read the drag {text!r}. Write it as handle and target pixels, "
            "x,y:x,y — for example 120,80:140,80 moves the point at column 120, row 80 twenty pixels right."
        )
    hx, hy, tx, ty = (float(g) for g in m.groups())
    return (hx, hy), (tx, ty)


def parse_drags(texts: Iterable[str]) -> DragPoints:
    """Parse several `x,y:x,y` strings (each may also hold several pairs separated by spaces
    or semicolons) into `DragPoints` (not yet validated against an image)."""
    pairs = []
    for text in texts:
        for part in re.split(r"[;\s]+(?=[-+\d.(])", text.strip()):
            if part.strip():
                pairs.append(parse_pair(part))
    if not pairs:
        raise UserError("No drag given. Add at least one handle/target pair, e.g. --drag 120,80:140,80.")
    return from_pairs(pairs)


def from_pairs(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> DragPoints:
    """Build `DragPoints` from `[((hx, hy), (tx, ty)), ...]`."""
    if len(pairs) == 0:
        raise UserError("No drag points: click a handle (red) and then its target (blue).")
    handles = torch.tensor([list(map(float, h)) for h, _ in pairs], dtype=torch.float32)
    targets = torch.tensor([list(map(float, t)) for _, t in pairs], dtype=torch.float32)
    return DragPoints(handles.reshape(-1, 2), targets.reshape(-1, 2))


def from_clicks(clicks: Sequence[Sequence[float]]) -> DragPoints:
    """Pair alternating clicks `[h1, t1, h2, t2, ...]` (each `(x, y)`) into `DragPoints`.

    Raises UserError when there are no clicks or the last handle has no target yet.
    """
    if len(clicks) == 0:
        raise UserError("No drag points: click a handle (red) on the image, then where it should go (blue).")
    if len(clicks) % 2 == 1:
        raise UserError(
            f"Handle {len(clicks) // 2 + 1} has no target yet: click where it should go, or undo the last point."
        )
    return from_pairs([(clicks[i], clicks[i + 1]) for i in range(0, len(clicks), 2)])


def validate(points: DragPoints, image_size: tuple[int, int], min_distance: float = 1.0) -> DragPoints:
    """Check points against an image of `image_size = (W, H)`; return them unchanged if fine.

    Rules: at least one pair; every coordinate finite; every point inside the image
    (0 <= x <= W - 1, 0 <= y <= H - 1); each target at least `min_distance` px from its handle.
    Raises UserError naming the first offending pair (1-based) otherwise.
    """
    w, h = image_size
    if len(points) == 0:
        raise UserError("No drag points: click a handle (red) and then its target (blue).")
    for i, ((hx, hy), (tx, ty)) in enumerate(points.to_list(), start=1):
        for name, (x, y) in (("handle", (hx, hy)), ("target", (tx, ty))):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise UserError(f"Pair {i}: the {name} ({x}, {y}) is not a number.")
            if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                raise UserError(
                    f"Pair {i}: the {name} ({_fmt(x)}, {_fmt(y)}) is outside the {w}x{h} image "
                    f"(x must be in 0..{w - 1}, y in 0..{h - 1})."
                )
        if math.hypot(tx - hx, ty - hy) < min_distance:
            raise UserError(
                f"Pair {i}: the target ({_fmt(tx)}, {_fmt(ty)}) is on its handle; click the target somewhere else."
            )
    return points


def scale_points(points: torch.Tensor, src_size: tuple[int, int], dst_size: tuple[int, int]) -> torch.Tensor:
    """Map `N x 2` `(x, y)` points from a grid of `src_size = (W, H)` to one of `dst_size = (W, H)`.

    Pixels are treated as unit cells: x_dst = (x_src + 0.5) * W_dst / W_src - 0.5, so the centre of
    the image maps to the centre of the feature map and scaling there and back is the identity.
    """
    sw, sh = src_size
    dw, dh = dst_size
    scale = points.new_tensor([dw / sw, dh / sh])
    return (points + 0.5) * scale - 0.5


def clamp_points(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clamp `N x 2` `(x, y)` points into a grid of `size = (W, H)`."""
    w, h = size
    return torch.stack([points[:, 0].clamp(0, w - 1), points[:, 1].clamp(0, h - 1)], dim=1)


def snap_points(points: DragPoints, rule: str, image_size: tuple[int, int],
                feature_size: tuple[int, int]) -> DragPoints:
    """Place image-px points on whole feature pixels as a reference method does.

    rule: "none" (unchanged), "pixel" (DragGAN: round the feature-px position, ours =
    `scale_points`) or "cell" (DragDiffusion: feature px `round(p * feature / image)`, its own
    scaling, which is not corner-aligned). image_size / feature_size: `(W, H)`.
    Returns image-px points whose `scale_points(., image_size, feature_size)` are those whole
    feature pixels (clamped into the map), so the drag loop sees exactly the reference's points.
    Rounding is half to even, like `torch.round` / Python's `round`. Raises ValueError for an
    unknown rule.
    """
    if rule == "none":
        return points
    if rule not in ("pixel", "cell"):
        raise ValueError(f"point snap rule must be 'none', 'pixel' or 'cell', got {rule!r}")

    def snap(pts: torch.Tensor) -> torch.Tensor:
        pts = pts.float()
        if rule == "pixel":
            feat = torch.round(scale_points(pts, image_size, feature_size))
        else:
            ratio = torch.tensor([feature_size[0] / image_size[0], feature_size[1] / image_size[1]])
            feat = torch.round(pts * ratio)
        feat = clamp_points(feat, feature_size)
        return scale_points(feat, feature_size, image_size)

    return DragPoints(snap(points.handles), snap(points.targets))
