"""Procedural cartoon faces with exactly known part geometry.

A face is a yellow head (ellipse), two dark-blue eyes (discs with a white highlight) and a red
mouth (a curved band: smile, neutral, frown or open) on a smooth two-colour gradient background
whose colours stay far from every part colour, so parts can be found again by colour alone
(`stabledrag.toy.detect`).

Coordinates:
- `FaceParams` holds *normalised* values: positions and lengths are fractions of the image side,
  with positions in the cell convention (x_pixel = x_norm * size - 0.5), so the same parameters
  render at any size.
- `FaceGeometry` holds *pixels* `(x, y)` for one size, origin at the top-left pixel's centre
  (the project convention, see `stabledrag.points`).
- The head frame (u, v) is the image frame rotated by `head_angle` degrees; positive angles turn
  the face clockwise on screen. v points towards the chin, so eyes have v < 0 and the mouth v > 0.
  "Left" and "right" always mean the image's left and right (smaller / larger x).

Anti-aliasing is analytic: each part's coverage is `clip(0.5 - signed_distance, 0, 1)`, with the
signed distance in pixels (exact for discs, first-order for the ellipse and the mouth band).
Rendering is fully vectorised numpy (about 1-2 ms for a 128 x 128 face).

A grid of faces to look at: `python -m scripts.toy_faces --n 16 --out grid.png [--annotate]`.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

Colour = tuple[float, float, float]
Point = tuple[float, float]

# Nominal part colours (RGB 0..255). The detector classifies pixels by distance to these.
HEAD_COLOUR: Colour = (250.0, 200.0, 40.0)
EYE_COLOUR: Colour = (30.0, 40.0, 120.0)
MOUTH_COLOUR: Colour = (210.0, 30.0, 40.0)
HIGHLIGHT_COLOUR: Colour = (255.0, 255.0, 255.0)
PART_COLOURS: dict[str, Colour] = {
    "head": HEAD_COLOUR,
    "eye": EYE_COLOUR,
    "mouth": MOUTH_COLOUR,
    "highlight": HIGHLIGHT_COLOUR,
}

# Every background pixel stays at least this far (RGB Euclidean) from every nominal part colour.
MIN_BG_DISTANCE = 100.0
# Per-channel uniform jitter of the part colours; its norm (<= 8 * sqrt(3) ~ 14) keeps a part at
# least ~86 from any background colour, well outside the detector's default tolerance (70).
PART_JITTER = 8.0

# Named background families (centre colours); the name goes into the caption.
BACKGROUND_FAMILIES: dict[str, Colour] = {
    "green": (60.0, 170.0, 80.0),
    "teal": (50.0, 160.0, 150.0),
    "purple": (140.0, 70.0, 170.0),
    "pink": (240.0, 150.0, 200.0),
    "grey": (128.0, 128.0, 128.0),
    "light blue": (130.0, 190.0, 240.0),
    "brown": (115.0, 90.0, 60.0),
    "lime": (170.0, 230.0, 120.0),
    "lavender": (190.0, 170.0, 235.0),
}

EXPRESSIONS = ("smile", "neutral", "frown", "open")

# Shape ranges (fractions of the image side unless said otherwise).
_HEAD_A = (0.22, 0.32)          # horizontal semi-axis
_HEAD_ASPECT = (1.0, 1.25)      # b / a
_HEAD_B_MAX = 0.38
_HEAD_ANGLE = (-25.0, 25.0)     # degrees
_MARGIN = 0.03                  # head to image border
_EYE_R = (0.12, 0.17)           # x a
_EYE_SPACING = (0.6, 0.95)      # x a, centre to centre
_EYE_HEIGHT = (-0.45, -0.15)    # x b
_HIGHLIGHT_R = (0.28, 0.38)     # x eye radius
_MOUTH_Y = (0.3, 0.55)          # x b
_MOUTH_HALF_W = (0.3, 0.55)     # x a
_MOUTH_END = 0.018              # band thickness at the corners (~2.3 px at 128)
_INNER_MARGIN = 0.012           # parts to head border, eyes to mouth (~1.5 px at 128)
_RING = 0.016                   # least eye colour between highlight and eye edge (~2 px at 128)
# (curve, opening) ranges per expression; curve = depth of the mouth's middle below its corners
# and opening = the band's largest thickness, both in mouth half-widths.
_MOUTH_SHAPES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "smile": ((0.2, 0.5), (0.12, 0.3)),
    "neutral": ((-0.08, 0.08), (0.06, 0.18)),
    "frown": ((-0.45, -0.2), (0.12, 0.28)),
    "open": ((0.15, 0.4), (0.5, 0.85)),
}


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines one face, in normalised units (fractions of the image side).

    Positions use the cell convention (pixel x = x_norm * size - 0.5). The `*_offset` fields are
    explicit edits (normalised (dx, dy) in image axes) applied after the face is laid out; they
    are zero for sampled faces and set by `edit`.
    """

    head_center: Point
    head_axes: tuple[float, float]        # (a, b): semi-axes along the head's u and v
    head_angle: float                     # degrees, positive = clockwise on screen
    eye_spacing: float                    # distance between eye centres
    eye_height: float                     # v of the eye centres (negative: above the head centre)
    eye_radius: float
    gaze: Point                           # (gx, gy), |g| <= 1 (longer is clamped): highlight offset in the eye
    highlight_ratio: float                # highlight radius / eye radius
    mouth_y: float                        # v of the mouth corners' midpoint
    mouth_half_width: float
    mouth_curve: float                    # > 0 smile, < 0 frown (in mouth half-widths)
    mouth_open: float                     # largest band thickness (in mouth half-widths)
    head_colour: Colour = HEAD_COLOUR
    eye_colour: Colour = EYE_COLOUR
    mouth_colour: Colour = MOUTH_COLOUR
    highlight_colour: Colour = HIGHLIGHT_COLOUR
    bg_colours: tuple[Colour, Colour] = ((60.0, 170.0, 80.0), (90.0, 150.0, 100.0))
    bg_angle: float = 0.0                 # gradient direction, radians
    bg_name: str = "green"
    left_eye_offset: Point = (0.0, 0.0)
    right_eye_offset: Point = (0.0, 0.0)
    mouth_left_offset: Point = (0.0, 0.0)
    mouth_right_offset: Point = (0.0, 0.0)

    @property
    def expression(self) -> str:
        """'open', 'smile', 'frown' or 'neutral', read from the mouth's numbers (so edits count)."""
        if self.mouth_open >= 0.45:
            return "open"
        if self.mouth_curve >= 0.15:
            return "smile"
        if self.mouth_curve <= -0.15:
            return "frown"
        return "neutral"

    @property
    def gaze_direction(self) -> str:
        """'left', 'right', 'up', 'down' (image directions) or 'forward' from the highlight offset."""
        gx, gy = self.gaze
        if max(abs(gx), abs(gy)) < 0.4:
            return "forward"
        if abs(gx) >= abs(gy):
            return "left" if gx < 0 else "right"
        return "up" if gy < 0 else "down"


@dataclass(frozen=True)
class FaceGeometry:
    """Part geometry of a rendered face in pixels `(x, y)` (origin: top-left pixel centre).

    `mouth_center` is the midpoint of the two corners; `mouth_centroid` is the area centroid of the
    mouth as drawn (what a colour detector measures). Eye centroids equal eye centres: the
    highlight lies inside the disc.
    """

    size: int
    head_center: Point
    head_axes: tuple[float, float]
    head_angle: float
    left_eye: Point
    right_eye: Point
    left_eye_radius: float
    right_eye_radius: float
    left_highlight: Point
    right_highlight: Point
    highlight_radius: float
    mouth_center: Point
    mouth_left: Point
    mouth_right: Point
    mouth_centroid: Point = (math.nan, math.nan)
    mouth_area: float = 0.0

    def keypoints(self) -> dict[str, Point]:
        """Named points: head, left_eye, right_eye, mouth, mouth_left, mouth_right.

        `mouth` is the mouth's area centroid, the same quantity `Detection.keypoints()["mouth"]`
        measures, so the two dictionaries compare name by name.
        """
        return {
            "head": self.head_center,
            "left_eye": self.left_eye,
            "right_eye": self.right_eye,
            "mouth": self.mouth_centroid,
            "mouth_left": self.mouth_left,
            "mouth_right": self.mouth_right,
        }


# ----------------------------------------------------------------------------------------------
# Sampling


def _rot(angle_deg: float) -> np.ndarray:
    """2x2 matrix taking head-frame (u, v) to image (x, y) offsets."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s], [s, c]])


def _segment_min_distance(c0: np.ndarray, c1: np.ndarray) -> float:
    """Smallest distance from any colour on the segment c0 -> c1 to any nominal part colour."""
    parts = np.array(list(PART_COLOURS.values()))
    d = c1 - c0
    # Closest point of the segment to each part colour, by projection.
    t = np.clip(((parts - c0) @ d) / max(float(d @ d), 1e-9), 0.0, 1.0)
    closest = c0[None, :] + t[:, None] * d[None, :]
    return float(np.min(np.linalg.norm(closest - parts, axis=1)))


def sample_background(rng: np.random.Generator) -> tuple[tuple[Colour, Colour], float, str]:
    """Sample (two gradient colours, gradient angle in radians, family name).

    Both colours and every colour between them keep `MIN_BG_DISTANCE` from the part colours.
    """
    names = list(BACKGROUND_FAMILIES)
    for _ in range(1000):
        name = names[int(rng.integers(len(names)))]
        base = np.array(BACKGROUND_FAMILIES[name])
        c0 = np.clip(base + rng.uniform(-25, 25, 3), 0, 255)
        c1 = np.clip(c0 + rng.uniform(-60, 60, 3), 0, 255)
        if _segment_min_distance(c0, c1) >= MIN_BG_DISTANCE + 0.5:  # + rounding to uint8
            angle = float(rng.uniform(0, 2 * math.pi))
            return (tuple(map(float, c0)), tuple(map(float, c1))), angle, name
    raise RuntimeError("could not sample a background colour far from the part colours")


def _jitter(colour: Colour, rng: np.random.Generator) -> Colour:
    """`colour` with each channel moved by up to +-PART_JITTER (clipped to 0..255)."""
    c = np.clip(np.asarray(colour) + rng.uniform(-PART_JITTER, PART_JITTER, 3), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _inside_ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float, margin: float) -> bool:
    """Whether all points (u, v) lie inside the ellipse (a, b) shrunk by `margin`."""
    return bool(np.all((u / (a - margin)) ** 2 + (v / (b - margin)) ** 2 <= 1.0))


def _mouth_outline(half_w: float, y: float, curve: float, opening: float, n: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Points (u, v) on the top and bottom edges of an un-edited mouth, head frame."""
    s = np.linspace(-1, 1, n)
    vc = y + curve * half_w * (1 - s**2)
    thick = _MOUTH_END + (max(opening * half_w, _MOUTH_END) - _MOUTH_END) * np.sqrt(1 - s**2)
    u = np.concatenate([s * half_w, s * half_w])
    v = np.concatenate([vc - thick / 2, vc + thick / 2])
    return u, v


def sample_params(rng: np.random.Generator, expression: Optional[str] = None) -> FaceParams:
    """Sample a random face (normalised units) from `rng`.

    `expression` forces one of `EXPRESSIONS`; by default it is drawn uniformly.
    The head stays inside the image with a margin; eyes and mouth stay inside the head, the
    eyes apart and above the mouth (the detector relies on these).
    """
    if expression is not None and expression not in EXPRESSIONS:
        raise ValueError(f"expression must be one of {EXPRESSIONS}, got {expression!r}")
    for _ in range(1000):
        a = rng.uniform(*_HEAD_A)
        b = min(a * rng.uniform(*_HEAD_ASPECT), _HEAD_B_MAX)
        angle = rng.uniform(*_HEAD_ANGLE)
        t = math.radians(angle)
        ex = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
        ey = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
        cx = rng.uniform(ex + _MARGIN, 1 - ex - _MARGIN)
        cy = rng.uniform(ey + _MARGIN, 1 - ey - _MARGIN)

        r = a * rng.uniform(*_EYE_R)
        spacing = max(a * rng.uniform(*_EYE_SPACING), 2 * r + 0.04 * a)
        eye_h = b * rng.uniform(*_EYE_HEIGHT)
        # The eye's bounding box must fit inside the head (conservative).
        eu = np.array([spacing / 2 - r, spacing / 2 + r])
        ev = np.array([eye_h - r, eye_h + r])
        if not _inside_ellipse(*np.meshgrid(eu, ev), a, b, _INNER_MARGIN):
            continue

        expr = expression or EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
        curve_rng, open_rng = _MOUTH_SHAPES[expr]
        ok = False
        for _ in range(50):
            mouth_y = b * rng.uniform(*_MOUTH_Y)
            half_w = a * rng.uniform(*_MOUTH_HALF_W)
            curve = rng.uniform(*curve_rng)
            opening = rng.uniform(*open_rng)
            mu, mv = _mouth_outline(half_w, mouth_y, curve, opening)
            if mv.min() - (eye_h + r) < 2 * _INNER_MARGIN:
                continue
            if _inside_ellipse(np.abs(mu), mv, a, b, _INNER_MARGIN):
                ok = True
                break
        if not ok:
            continue

        g_r, g_t = math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)  # uniform in the unit disc
        gaze = (g_r * math.cos(g_t), g_r * math.sin(g_t))
        hl = rng.uniform(*_HIGHLIGHT_R)
        head_c, eye_c, mouth_c = (_jitter(c, rng) for c in (HEAD_COLOUR, EYE_COLOUR, MOUTH_COLOUR))
        hi_c = tuple(float(x) for x in rng.uniform(240, 255, 3))
        bg, bg_angle, bg_name = sample_background(rng)
        return FaceParams(
            head_center=(float(cx), float(cy)), head_axes=(float(a), float(b)), head_angle=float(angle),
            eye_spacing=float(spacing), eye_height=float(eye_h), eye_radius=float(r), gaze=gaze,
            highlight_ratio=float(hl), mouth_y=float(mouth_y), mouth_half_width=float(half_w),
            mouth_curve=float(curve), mouth_open=float(opening),
            head_colour=head_c, eye_colour=eye_c, mouth_colour=mouth_c, highlight_colour=hi_c,
            bg_colours=bg, bg_angle=bg_angle, bg_name=bg_name,
        )
    raise RuntimeError("could not sample a face satisfying the layout constraints")


def edit(
    params: FaceParams,
    *,
    size: int = 128,
    head: Point = (0.0, 0.0),
    left_eye: Point = (0.0, 0.0),
    right_eye: Point = (0.0, 0.0),
    mouth: Point = (0.0, 0.0),
    mouth_left: Point = (0.0, 0.0),
    mouth_right: Point = (0.0, 0.0),
) -> FaceParams:
    """A copy of `params` with parts moved by pixel offsets `(dx, dy)` at image side `size`.

    `head` moves the whole face (the parts follow); `mouth` moves both mouth corners; the others
    move one part. Moving a mouth corner re-shapes the mouth (it is drawn between its corners).
    Offsets accumulate over repeated edits. Nothing is checked: an edit may push a part out of
    the head, which a drag benchmark may want.
    """
    s = float(size)

    def add(old: Point, *deltas: Point) -> Point:
        return (old[0] + sum(d[0] for d in deltas) / s, old[1] + sum(d[1] for d in deltas) / s)

    return replace(
        params,
        head_center=add(params.head_center, head),
        left_eye_offset=add(params.left_eye_offset, left_eye),
        right_eye_offset=add(params.right_eye_offset, right_eye),
        mouth_left_offset=add(params.mouth_left_offset, mouth, mouth_left),
        mouth_right_offset=add(params.mouth_right_offset, mouth, mouth_right),
    )


# ----------------------------------------------------------------------------------------------
# Layout and rasterisation


def layout(params: FaceParams, size: int = 128) -> FaceGeometry:
    """Part geometry in pixels for an image of side `size` (mouth centroid/area not yet known)."""
    s = float(size)
    R = _rot(params.head_angle)
    centre = np.array(params.head_center) * s - 0.5

    def place(u: float, v: float, offset: Point) -> Point:
        p = centre + R @ np.array([u, v]) * s + np.array(offset) * s
        return (float(p[0]), float(p[1]))

    half = params.eye_spacing / 2
    left_eye = place(-half, params.eye_height, params.left_eye_offset)
    right_eye = place(half, params.eye_height, params.right_eye_offset)
    r = params.eye_radius * s
    hr = params.highlight_ratio * r
    # Keep a ring of eye colour (>= ~2 px at 128) around the highlight so the eye stays one blob
    # with a hole (the detector fills it); the gaze vector is clamped to the unit disc for that.
    reach = max(r - hr - _RING * s, 0.0)
    g = np.array(params.gaze, dtype=np.float64)
    g = g / max(1.0, float(np.hypot(*g))) * reach
    left_hl = (left_eye[0] + g[0], left_eye[1] + g[1])
    right_hl = (right_eye[0] + g[0], right_eye[1] + g[1])
    mouth_left = place(-params.mouth_half_width, params.mouth_y, params.mouth_left_offset)
    mouth_right = place(params.mouth_half_width, params.mouth_y, params.mouth_right_offset)
    mouth_center = ((mouth_left[0] + mouth_right[0]) / 2, (mouth_left[1] + mouth_right[1]) / 2)
    return FaceGeometry(
        size=int(size), head_center=(float(centre[0]), float(centre[1])),
        head_axes=(params.head_axes[0] * s, params.head_axes[1] * s), head_angle=params.head_angle,
        left_eye=left_eye, right_eye=right_eye, left_eye_radius=r, right_eye_radius=r,
        left_highlight=left_hl, right_highlight=right_hl, highlight_radius=hr,
        mouth_center=mouth_center, mouth_left=mouth_left, mouth_right=mouth_right,
    )


def _coverage(sdf: np.ndarray) -> np.ndarray:
    """Box-filtered pixel coverage from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _ellipse_coverage(xs: np.ndarray, ys: np.ndarray, centre: Point, axes: tuple[float, float],
                      angle: float) -> np.ndarray:
    t = math.radians(angle)
    dx, dy = xs - centre[0], ys - centre[1]
    u = math.cos(t) * dx + math.sin(t) * dy
    v = -math.sin(t) * dx + math.cos(t) * dy
    a, b = axes
    f = (u / a) ** 2 + (v / b) ** 2 - 1.0
    grad = 2.0 * np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    return _coverage(f / np.maximum(grad, 1e-6))  # first-order distance to the boundary


def _disc_coverage(xs: np.ndarray, ys: np.ndarray, centre: Point, radius: float) -> np.ndarray:
    return _coverage(np.hypot(xs - centre[0], ys - centre[1]) - radius)


def _mouth_coverage(xs: np.ndarray, ys: np.ndarray, left: Point, right: Point, curve: float,
                    opening: float, end_thickness: float) -> np.ndarray:
    """Coverage of a curved band from corner `left` to corner `right` (pixels).

    In the mouth frame (u along left->right, v perpendicular towards the chin) the band's middle
    line is v = curve * w * (1 - (u/w)^2) and its thickness grows from `end_thickness` at the
    corners to `opening * w` in the middle; the ends are cut flat at u = +-w, so the corners are
    exactly the mid-points of the two end cuts.
    """
    p_left, p_right = np.array(left), np.array(right)
    m = (p_left + p_right) / 2
    d = p_right - p_left
    w = max(float(np.linalg.norm(d)) / 2, 1e-3)
    eu = d / (2 * w)
    ev = np.array([-eu[1], eu[0]])
    dx, dy = xs - m[0], ys - m[1]
    u = eu[0] * dx + eu[1] * dy
    v = ev[0] * dx + ev[1] * dy
    sn = np.clip(u / w, -1.0, 1.0)
    vc = curve * w * (1 - sn**2)
    thick = end_thickness + (max(opening * w, end_thickness) - end_thickness) * np.sqrt(1 - sn**2)
    slope = -2.0 * curve * sn  # d(vc)/du; turns vertical distance into (approx.) normal distance
    sdf_band = (np.abs(v - vc) - thick / 2) / np.sqrt(1 + slope**2)
    return _coverage(np.maximum(sdf_band, np.abs(u) - w))


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (xs, ys), each `size x size` float32 (cached, read-only)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def _box(points: Sequence[Point], reach: float, size: int) -> tuple[slice, slice]:
    """(rows, cols) slices covering `points` grown by `reach` px, clipped to the image."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0 = int(max(math.floor(min(xs) - reach), 0))
    x1 = int(min(math.ceil(max(xs) + reach) + 1, size))
    y0 = int(max(math.floor(min(ys) - reach), 0))
    y1 = int(min(math.ceil(max(ys) + reach) + 1, size))
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))


def render_background(params: FaceParams, size: int = 128) -> np.ndarray:
    """The background alone: `size x size x 3` uint8 gradient from `params.bg_colours`."""
    return np.rint(_background(params, *_grid(size), size)).astype(np.uint8)


def _background(params: FaceParams, xs: np.ndarray, ys: np.ndarray, size: int) -> np.ndarray:
    c, s = math.cos(params.bg_angle), math.sin(params.bg_angle)
    half = (size - 1) / 2
    extent = max(half * (abs(c) + abs(s)), 1e-6)
    t = ((xs - half) * c + (ys - half) * s) / (2 * extent) + 0.5  # 0..1 across the image
    t = t * t * (3 - 2 * t)  # smoothstep: softer ends
    c0, c1 = (np.array(col, dtype=np.float32) for col in params.bg_colours)
    return c0 + t[..., None] * (c1 - c0)


def render(params: FaceParams, size: int = 128) -> tuple[np.ndarray, FaceGeometry]:
    """Render a face: returns (`size x size x 3` uint8 RGB image, `FaceGeometry` in pixels)."""
    geo = layout(params, size)
    xs, ys = _grid(size)
    img = _background(params, xs, ys, size)

    # Each part is drawn only inside its bounding box (parts are small; this keeps it ~1 ms).
    def paint(box: tuple[slice, slice], cov: np.ndarray, colour: Colour) -> None:
        sub = img[box]
        sub += cov[..., None] * (np.array(colour, dtype=np.float32) - sub)

    head_box = _box([geo.head_center], max(geo.head_axes) + 2, size)
    paint(head_box, _ellipse_coverage(xs[head_box], ys[head_box], geo.head_center, geo.head_axes,
                                      geo.head_angle), params.head_colour)
    for eye, r, hl in ((geo.left_eye, geo.left_eye_radius, geo.left_highlight),
                       (geo.right_eye, geo.right_eye_radius, geo.right_highlight)):
        box = _box([eye], r + 2, size)
        paint(box, _disc_coverage(xs[box], ys[box], eye, r), params.eye_colour)
        box = _box([hl], geo.highlight_radius + 2, size)
        paint(box, _disc_coverage(xs[box], ys[box], hl, geo.highlight_radius), params.highlight_colour)
    half_w = math.dist(geo.mouth_left, geo.mouth_right) / 2
    reach = half_w * (abs(params.mouth_curve) + params.mouth_open) + _MOUTH_END * size + 2
    mouth_box = _box([geo.mouth_left, geo.mouth_right], reach, size)
    mxs, mys = xs[mouth_box], ys[mouth_box]
    mouth = _mouth_coverage(mxs, mys, geo.mouth_left, geo.mouth_right, params.mouth_curve,
                            params.mouth_open, _MOUTH_END * size)
    paint(mouth_box, mouth, params.mouth_colour)

    area = float(mouth.sum())
    if area > 0:
        centroid = (float((mouth * mxs).sum() / area), float((mouth * mys).sum() / area))
    else:
        centroid = (math.nan, math.nan)
    geo = replace(geo, mouth_centroid=centroid, mouth_area=area)
    return np.rint(np.clip(img, 0, 255)).astype(np.uint8), geo
