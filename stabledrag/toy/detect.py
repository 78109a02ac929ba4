"""Find the toy face's parts in any RGB image by colour.

Used to score drags: where did the eye / mouth corner / head end up? Works on the renderer's
images and on blurred or noisy generated ones, as long as the part colours are roughly right.

Steps:
1. head: pixels within `tolerance` of a part colour (yellow head, dark-blue eye, red mouth,
   white highlight) are "part" pixels; the head is the part region around the largest yellow
   blob with its holes filled (the eyes and mouth sit inside it);
2. inside the head (shrunk by a couple of pixels, away from the mix with the background) every
   pixel is *unmixed* into shares of the four part colours: barycentric coordinates in the
   tetrahedron (yellow, blue, red, white). Anti-aliasing and blur mix neighbouring colours
   linearly, so the shares are soft coverages of each part;
3. eyes: blobs where blue + white share >= `share_threshold`, highlights filled in, the two
   largest above a size floor, ordered left to right; mouth: the largest blob of red share
   >= `share_threshold` / 2 that reaches `share_threshold` somewhere (hysteresis);
4. centres are share-weighted centroids (sub-pixel; blur keeps the centroid); the mouth corners
   are the two ends of the mouth along its long axis (see `_mouth_corners`).

Points are `(x, y)` pixels, origin at the top-left pixel's centre.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from scipy import ndimage

from .render import EYE_COLOUR, HEAD_COLOUR, HIGHLIGHT_COLOUR, MOUTH_COLOUR

logger = logging.getLogger(__name__)

Point = tuple[float, float]
Box = tuple[slice, slice]

# Class indices of `classify`'s map.
NONE, HEAD, EYE, MOUTH, HIGHLIGHT = 0, 1, 2, 3, 4
_CLASS_COLOURS = np.array([HEAD_COLOUR, EYE_COLOUR, MOUTH_COLOUR, HIGHLIGHT_COLOUR], dtype=np.float32)
# Columns: blue, red, white minus yellow; its inverse unmixes (colour - yellow) into shares.
_UNMIX = np.linalg.inv(np.stack([_CLASS_COLOURS[1] - _CLASS_COLOURS[0], _CLASS_COLOURS[2] - _CLASS_COLOURS[0],
                                 _CLASS_COLOURS[3] - _CLASS_COLOURS[0]], axis=1)).astype(np.float32)
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class DetectorConfig:
    """Tolerances of the colour detector. Areas are fractions of the image area; pixel lengths
    are for a 128 px image and scale with the image side."""

    tolerance: float = 70.0               # max RGB distance of a pixel to a part colour (head region)
    share_threshold: float = 0.4          # least colour share of a pixel in an eye / mouth blob
    min_head_fraction: float = 0.02       # 328 px at 128 x 128 (rendered heads: >= ~2400 px)
    min_eye_fraction: float = 0.001       # 16 px at 128 x 128 (rendered eyes: >= ~36 px)
    max_eye_to_head: float = 0.2          # an eye larger than this share of the head is not an eye
    min_eye_blue: float = 0.35            # least mean blue share of an eye blob (white alone is no eye)
    min_mouth_fraction: float = 0.0012    # 20 px at 128 x 128 (rendered mouths: >= ~40 px)
    faint_mouth_threshold: float = 0.2    # red share tried when no mouth reaches `share_threshold`
    head_inset: float = 2.0               # px: eyes/mouth are searched this far inside the head edge
    soft_margin: float = 2.0              # px around a blob whose partial shares count for its centre
    corner_band: float = 4.0              # px: end pixels used to place a mouth corner across the axis
    corner_reference: float = 2.5         # px: inside a mouth end, where its thickness is measured
    min_mouth_elongation: float = 1.5     # below this axis ratio the mouth axis is taken from the eyes


@dataclass
class Detection:
    """What the detector found; `None` for a part it did not find.

    `complete` is True when the head, two eyes and the mouth were all found with plausible sizes;
    otherwise `reasons` says what is missing. Areas are in pixels. `eye_count` / `mouth_count`:
    how many blobs qualified as an eye / a mouth (an edit that grows a third eye has eye_count 3:
    `complete` alone would not notice, since the two largest are kept).
    """

    head: Optional[Point] = None
    head_area: float = 0.0
    left_eye: Optional[Point] = None
    right_eye: Optional[Point] = None
    left_eye_area: float = 0.0
    right_eye_area: float = 0.0
    mouth: Optional[Point] = None
    mouth_area: float = 0.0
    mouth_left: Optional[Point] = None
    mouth_right: Optional[Point] = None
    complete: bool = False
    reasons: list[str] = field(default_factory=list)
    eye_count: int = 0
    mouth_count: int = 0

    @property
    def parts_ok(self) -> bool:
        """Complete, and no part grown or lost: exactly two eyes and one mouth."""
        return self.complete and self.eye_count == 2 and self.mouth_count == 1

    def keypoints(self) -> dict[str, Optional[Point]]:
        """Same names as `FaceGeometry.keypoints` (here `mouth` is the mouth's centroid)."""
        return {
            "head": self.head,
            "left_eye": self.left_eye,
            "right_eye": self.right_eye,
            "mouth": self.mouth,
            "mouth_left": self.mouth_left,
            "mouth_right": self.mouth_right,
        }


# ----------------------------------------------------------------------------------------------
# Colours


def to_rgb255(image: Any) -> np.ndarray:
    """Any RGB image as an `H x W x 3` float32 array in 0..255.

    Accepts a PIL image, a numpy array `H x W x 3` (uint8 0..255, or float in 0..1 / -1..1), or a
    torch tensor `3 x H x W` / `1 x 3 x H x W` / `H x W x 3` (float in -1..1 or 0..1, or uint8).
    Float ranges are guessed: any value below 0 means -1..1, a maximum <= 1 means 0..1, else 0..255.
    """
    if hasattr(image, "detach"):  # a torch tensor, without importing torch here
        t = image.detach().cpu()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of shape {tuple(t.shape)}")
            t = t[0]
        arr = t.numpy() if str(t.dtype).endswith("uint8") else t.float().numpy()
        if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
            arr = np.transpose(arr, (1, 2, 0))
    else:
        arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB image H x W x 3, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    if arr.min() < 0:
        return (np.clip(arr, -1, 1) + 1) * 127.5
    if arr.max() <= 1.0:
        return arr * 255.0
    return np.clip(arr, 0, 255)


def _sq_distance(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Squared RGB distance `H x W` of every pixel to one colour (channel by channel: a numpy
    reduce over a length-3 axis is several times slower)."""
    return (rgb[..., 0] - colour[0]) ** 2 + (rgb[..., 1] - colour[1]) ** 2 + (rgb[..., 2] - colour[2]) ** 2


def classify(image: Any, tolerance: float = 70.0) -> np.ndarray:
    """Per-pixel part class (`H x W` uint8: NONE, HEAD, EYE, MOUTH, HIGHLIGHT) by nearest colour,
    NONE when the nearest part colour is further than `tolerance`."""
    rgb = to_rgb255(image)
    d2 = np.stack([_sq_distance(rgb, c) for c in _CLASS_COLOURS])
    nearest = np.argmin(d2, axis=0)
    ok = d2.min(axis=0) <= tolerance**2
    return np.where(ok, nearest + 1, NONE).astype(np.uint8)


def unmix(image: Any) -> np.ndarray:
    """Shares of the part colours in every pixel: `H x W x 4` float32 (head, eye, mouth, highlight).

    Barycentric coordinates of the colour in the tetrahedron of the four part colours; they sum
    to 1 and, for a pixel that mixes part colours (anti-aliasing, blur), equal the mixing weights.
    Meaningless (and possibly outside 0..1) where the background takes part in the mix.
    """
    rgb = to_rgb255(image)
    shares = (rgb - _CLASS_COLOURS[0]) @ _UNMIX.T  # H x W x 3: eye, mouth, highlight
    return np.concatenate([1.0 - shares.sum(-1, keepdims=True), shares], axis=-1)


# ----------------------------------------------------------------------------------------------
# Blobs


def _centroid(mask: np.ndarray) -> Point:
    ys, xs = np.nonzero(mask)
    return (float(xs.mean()), float(ys.mean()))


def _blobs(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray, Box]]]:
    """8-connected components of `mask` with holes filled.

    Returns the label image and, per component, (label, filled mask inside its box, box slices);
    boxes are grown by one pixel so holes touching the box edge are still recognised as holes.
    """
    labels, _ = ndimage.label(mask, structure=_EIGHT)
    out = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        out.append((k, ndimage.binary_fill_holes(labels[sl] == k), sl))
    return labels, out


def _hysteresis(share: np.ndarray, high: float, low: float, where: np.ndarray) -> np.ndarray:
    """Pixels of `where` with `share >= low` in 8-connected regions that reach `share >= high`."""
    low_mask = (share >= low) & where
    labels, n = ndimage.label(low_mask, structure=_EIGHT)
    if n == 0:
        return low_mask
    peaks = ndimage.maximum(share, labels, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], np.asarray(peaks) >= high])
    return keep[labels]


def _soft_pixels(label: int, comp: np.ndarray, sl: Box, labels: np.ndarray, share: np.ndarray,
                 margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels `(x, y)` (N x 2 float) of a blob grown by `margin` px, with their share (0..1) as
    weights, so partly covered edge pixels take part; pixels of other blobs are left out."""
    h, w = labels.shape
    y0, x0 = max(sl[0].start - margin, 0), max(sl[1].start - margin, 0)
    y1, x1 = min(sl[0].stop + margin, h), min(sl[1].stop + margin, w)
    big = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    big[sl[0].start - y0: sl[0].stop - y0, sl[1].start - x0: sl[1].stop - x0] = comp
    grown = ndimage.binary_dilation(big, structure=_EIGHT, iterations=margin) if margin > 0 else big
    sub_labels = labels[y0:y1, x0:x1]
    grown &= (sub_labels == 0) | (sub_labels == label) | big
    ys, xs = np.nonzero(grown)
    wts = np.clip(share[ys + y0, xs + x0], 0.0, 1.0).astype(np.float64)
    keep = wts > 0.1
    return np.stack([xs[keep] + x0, ys[keep] + y0], axis=1).astype(np.float64), wts[keep]


def _weighted_centroid(pts: np.ndarray, wts: np.ndarray) -> Point:
    s = max(float(wts.sum()), 1e-9)
    return (float(pts[:, 0] @ wts / s), float(pts[:, 1] @ wts / s))


def _extrapolate(depth: np.ndarray, across: np.ndarray, weight: np.ndarray, max_slope: float = 1.0) -> float:
    """Mid-line offset at the very end (depth 0) of a band: weighted linear fit across(depth).

    The mouth's mid-line bends towards its corners, so a plain mean of the end pixels would sit
    on the bent part; the fit follows the bend. Falls back to the mean when the pixels span too
    little depth to fit a slope.
    """
    wsum = float(weight.sum())
    if wsum <= 1e-9:
        return 0.0
    md = float((depth * weight).sum() / wsum)
    ma = float((across * weight).sum() / wsum)
    var = float((weight * (depth - md) ** 2).sum() / wsum)
    if var < 0.1:
        return ma
    slope = float((weight * (depth - md) * (across - ma)).sum() / wsum) / var
    # A mouth's mid-line meets its end at under ~45 degrees; steeper fits come from noise.
    slope = float(np.clip(slope, -max_slope, max_slope))
    return ma - slope * md


def _mouth_corners(pts: np.ndarray, alpha: np.ndarray, core: np.ndarray, eye_axis: Optional[np.ndarray],
                   band: float, reference: float, min_elongation: float, threshold: float) -> tuple[Point, Point]:
    """Ends of the mouth along its long axis: (left, right) in image x order.

    `pts` (N x 2) and `alpha` (N) are the mouth's soft pixels and red shares; `core` (M x 2) its
    thresholded pixels, whose covariance gives the long axis. Along the axis an end is the
    further of two estimates: the sharp one, the largest `q + alpha - 0.5` over pixels with
    alpha >= `threshold` (q: a pixel's projection; a box-filtered edge lies `alpha - 0.5` px beyond
    the pixel centre, so this is sub-pixel and not pulled inwards by pixel centres), and a
    mass-based one that survives blur (see the comment inside). Across the axis it is the
    mouth's mid-line extrapolated to that end from the pixels within `band` px of it.
    """
    c = core.mean(axis=0)
    q = core - c
    evals, evecs = np.linalg.eigh(q.T @ q / max(len(q), 1))
    axis = evecs[:, 1]
    elongation = math.sqrt(max(evals[1], 0.0) / max(evals[0], 1e-9))
    # A round open mouth has no clear long axis; the eye line is parallel to the mouth's.
    if elongation < min_elongation and eye_axis is not None:
        axis = eye_axis
    if axis[0] < 0:
        axis = -axis
    normal = np.array([-axis[1], axis[0]])
    along = (pts - c) @ axis
    across = (pts - c) @ normal
    solid = alpha >= threshold
    if not solid.any():  # cannot happen for a hysteresis blob; keeps np.max below safe anyway
        solid = alpha > 0
    ends = []
    for sign in (-1.0, 1.0):
        s_along = sign * along
        edge_sharp = float(np.max((s_along + alpha - 0.5)[solid]))
        # Blur fades a thin end below the threshold, so also measure the end by mass: red mass
        # beyond a cut `reference` px inside the thresholded end, divided by the band's
        # thickness at the cut (mass per unit length), is how far the band goes beyond the cut.
        cut = float(np.max(s_along[solid])) - reference
        thickness = float(alpha[(s_along > cut - 0.5) & (s_along <= cut + 0.5)].sum())
        edge_mass = cut + float(alpha[s_along > cut].sum()) / max(thickness, 1e-6)
        edge = max(edge_sharp, edge_mass)
        near = s_along >= edge - band - 0.5
        off = _extrapolate(edge - s_along[near], across[near], alpha[near])
        ends.append(c + sign * edge * axis + off * normal)
    lo, hi = ends
    left, right = (lo, hi) if lo[0] <= hi[0] else (hi, lo)
    return (float(left[0]), float(left[1])), (float(right[0]), float(right[1]))


# ----------------------------------------------------------------------------------------------
# Detection


def _find_head(cls: np.ndarray, cfg: DetectorConfig) -> Optional[np.ndarray]:
    """Filled head mask (`H x W` bool), or None when no yellow region is large enough."""
    yellow = cls == HEAD
    if not yellow.any():
        return None
    ylab, n = ndimage.label(yellow, structure=_EIGHT)
    sizes = ndimage.sum_labels(yellow, ylab, index=np.arange(1, n + 1))
    if float(sizes.max()) < cfg.min_head_fraction * cls.size:
        return None
    biggest = ylab == (int(np.argmax(sizes)) + 1)
    # The part region around the yellow blob: eyes or a mouth on the head's edge still belong.
    parts, _ = ndimage.label(cls != NONE, structure=_EIGHT)
    head_label = int(np.bincount(parts[biggest]).argmax())
    return ndimage.binary_fill_holes(parts == head_label)


def head_region(image: Any, config: Optional[DetectorConfig] = None) -> Optional[np.ndarray]:
    """The filled head region (`H x W` bool: head plus the eyes and mouth inside it) of an RGB image
    (any form `to_rgb255` accepts), or None when no yellow region is large enough."""
    cfg = config or DetectorConfig()
    return _find_head(classify(to_rgb255(image), cfg.tolerance), cfg)


def detect(image: Any, config: Optional[DetectorConfig] = None) -> Detection:
    """Find head, eyes and mouth in an RGB image (any form `to_rgb255` accepts).

    Returns a `Detection` with pixel `(x, y)` points: head centroid (filled head region), eye
    centroids (left then right in the image), mouth centroid and mouth corners.
    """
    cfg = config or DetectorConfig()
    rgb = to_rgb255(image)
    cls = classify(rgb, cfg.tolerance)
    h, w = cls.shape
    area_px = float(h * w)
    scale = min(h, w) / 128.0
    margin = max(1, int(round(cfg.soft_margin * scale)))
    det = Detection()

    head_mask = _find_head(cls, cfg)
    if head_mask is not None:
        det.head = _centroid(head_mask)
        det.head_area = float(head_mask.sum())
        inset = int(round(cfg.head_inset * scale))
        search = ndimage.binary_erosion(head_mask, structure=_EIGHT, iterations=inset) if inset > 0 else head_mask
    else:
        det.reasons.append("no head (no yellow region large enough)")
        # Without a head the shares mean nothing outside the parts: search the part-coloured pixels.
        search = cls != NONE

    shares = unmix(rgb)
    eye_share = shares[..., 1] + shares[..., 3]  # the highlight belongs to the eye
    red_share = shares[..., 2]

    # Eyes.
    eye_labels, blobs = _blobs((eye_share >= cfg.share_threshold) & search)
    eyes = []
    for label, comp, sl in blobs:
        a = float(comp.sum())
        if a < cfg.min_eye_fraction * area_px:
            continue
        if head_mask is not None and a > cfg.max_eye_to_head * det.head_area:
            continue
        if float(shares[sl][..., 1][comp].mean()) < cfg.min_eye_blue:
            continue
        pts, wts = _soft_pixels(label, comp, sl, eye_labels, eye_share, margin)
        eyes.append((a, _weighted_centroid(pts, wts)))
    eyes.sort(key=lambda e: -e[0])
    det.eye_count = len(eyes)
    if len(eyes) >= 2:
        (a1, p1), (a2, p2) = sorted(eyes[:2], key=lambda e: e[1][0])
        det.left_eye, det.left_eye_area, det.right_eye, det.right_eye_area = p1, a1, p2, a2
        if len(eyes) > 2:
            logger.debug("%d eye-like blobs; kept the two largest", len(eyes))
    else:
        det.reasons.append(f"found {len(eyes)} eye(s), need 2")
        if eyes:
            # One eye: still report it, on the side of the head it sits on.
            a1, p1 = eyes[0]
            if det.head is not None and p1[0] > det.head[0]:
                det.right_eye, det.right_eye_area = p1, a1
            else:
                det.left_eye, det.left_eye_area = p1, a1

    # Mouth.
    # Hysteresis: a mouth blob must reach `share_threshold` somewhere but extends down to half of
    # it, so a thin mouth that colour shifts or noise break into pieces stays one blob. A thin
    # mouth blurred hard has no pixel with that much red any more: then retry with a lower bar.
    for threshold in (cfg.share_threshold, cfg.faint_mouth_threshold):
        mouth_labels, blobs = _blobs(_hysteresis(red_share, threshold, threshold / 2, search))
        mouths = [(float(comp.sum()), label, comp, sl) for label, comp, sl in blobs
                  if comp.sum() >= cfg.min_mouth_fraction * area_px]
        if mouths:
            break
    det.mouth_count = len(mouths)
    if mouths:
        a, label, comp, sl = max(mouths, key=lambda m: m[0])
        pts, alpha = _soft_pixels(label, comp, sl, mouth_labels, red_share, margin)
        ys, xs = np.nonzero(comp)
        core = np.stack([xs + sl[1].start, ys + sl[0].start], axis=1).astype(np.float64)
        eye_axis = None
        if det.left_eye is not None and det.right_eye is not None:
            v = np.subtract(det.right_eye, det.left_eye)
            eye_axis = v / max(float(np.linalg.norm(v)), 1e-9)
        det.mouth, det.mouth_area = _weighted_centroid(pts, alpha), a
        det.mouth_left, det.mouth_right = _mouth_corners(
            pts, alpha, core, eye_axis, cfg.corner_band * scale, cfg.corner_reference * scale,
            cfg.min_mouth_elongation, threshold)
    else:
        det.reasons.append("no mouth (no red region large enough inside the head)")

    det.complete = not det.reasons
    return det
