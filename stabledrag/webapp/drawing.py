"""What the person sees on the point canvas: the image, enlarged when small, with numbered
handle (red) and target (blue) markers joined by arrows, and the area outside the editable
region dimmed. Also the drag animation (GIF) from preview frames.

Coordinates: points are `(x, y)` pixels of the *image* (x = column, y = row; the centre of pixel
(0, 0) is (0, 0)). The canvas shows the image enlarged by an integer `scale` (nearest neighbour),
so image pixel x covers canvas columns `[x * scale, (x + 1) * scale)` and a click at canvas column
c is image pixel `c // scale`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HANDLE_RGB = (230, 40, 40)
TARGET_RGB = (40, 90, 235)
OUTLINE_RGB = (255, 255, 255)
#: Small images are enlarged until their long side reaches this (integer factors only).
CANVAS_MIN_SIDE = 512
MAX_SCALE = 8
#: Brightness kept outside the editable region on the canvas.
DIM_OUTSIDE = 0.45

Point = Sequence[float]


def display_scale(width: int, height: int, min_side: int = CANVAS_MIN_SIDE, max_scale: int = MAX_SCALE) -> int:
    """Integer enlargement for an image of `width x height` so its long side reaches `min_side`
    (1 for images already that large; at most `max_scale`)."""
    long_side = max(int(width), int(height), 1)
    return int(max(1, min(max_scale, math.ceil(min_side / long_side))))


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """`H x W x C` uint8 -> `(H*scale) x (W*scale) x C` by pixel repetition (no blur)."""
    if scale == 1:
        return image
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def canvas_to_image(index: Sequence[float], scale: int, size: tuple[int, int]) -> tuple[int, int]:
    """Canvas click `(column, row)` -> image pixel `(x, y)` for an image of `size = (W, H)` shown
    enlarged by `scale`. Not clamped: a result outside `0..W-1 x 0..H-1` means the click missed."""
    del size  # kept in the signature so callers state which image the click belongs to
    return int(math.floor(float(index[0]) / scale)), int(math.floor(float(index[1]) / scale))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _to_canvas(p: Point, scale: int) -> tuple[float, float]:
    return (float(p[0]) + 0.5) * scale, (float(p[1]) + 0.5) * scale


def _arrow(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], width: int, head: float) -> None:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length < 1e-6:
        return
    ux, uy = dx / length, dy / length
    tip = (b[0] - ux * head * 0.9, b[1] - uy * head * 0.9)  # stop at the target marker's rim
    base = (tip[0] - ux * head, tip[1] - uy * head)
    left = (base[0] - uy * head * 0.55, base[1] + ux * head * 0.55)
    right = (base[0] + uy * head * 0.55, base[1] - ux * head * 0.55)
    for colour, extra in ((OUTLINE_RGB, 2), ((250, 250, 250), 0)):
        draw.line([a, base], fill=colour, width=width + extra)
    draw.polygon([tip, left, right], fill=(250, 250, 250), outline=(40, 40, 40))


def _marker(draw: ImageDraw.ImageDraw, c: tuple[float, float], r: float, colour: tuple[int, int, int],
            label: str, font: ImageFont.ImageFont) -> None:
    draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colour, outline=OUTLINE_RGB, width=max(1, int(r / 5)))
    draw.text(c, label, fill=OUTLINE_RGB, font=font, anchor="mm")


def marker_radius(canvas_w: int, canvas_h: int) -> float:
    """Radius in canvas pixels of a point marker on a canvas of that size."""
    return float(min(14, max(6, round(min(canvas_w, canvas_h) / 45))))


def draw_points(image: np.ndarray, clicks: Sequence[Point], scale: int = 1, mask: Optional[np.ndarray] = None,
                handles: Optional[Sequence[Point]] = None,
                trail: Optional[Sequence[Sequence[Point]]] = None) -> np.ndarray:
    """The canvas: `image` (`H x W x 3` uint8) enlarged by `scale` with markers.

    clicks: `[h1, t1, h2, t2, ...]` image px; a trailing handle without target is drawn alone.
    mask: `H x W` bool editable region (True = may change); outside it is dimmed. None: no dimming.
    handles: current handle positions (image px) during/after a drag; drawn instead of the
      clicked handles, joined to their targets.
    trail: past handle positions per step (`S x N x 2`), drawn as thin red lines.
    Returns `(H*scale) x (W*scale) x 3` uint8.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3].astype(np.uint8)
    if mask is not None and mask.shape == img.shape[:2] and mask.any() and not mask.all():
        img = np.where(mask[..., None], img, (img * DIM_OUTSIDE).astype(np.uint8))
    canvas = Image.fromarray(enlarge(img, scale))
    draw = ImageDraw.Draw(canvas)
    r = marker_radius(canvas.width, canvas.height)
    font = _font(max(8, int(round(r * 1.3))))
    pairs = [(clicks[i], clicks[i + 1] if i + 1 < len(clicks) else None) for i in range(0, len(clicks), 2)]
    current = list(handles) if handles is not None else None
    if trail is not None and len(trail) > 1:
        for n in range(len(pairs)):
            path = [_to_canvas(step[n], scale) for step in trail if n < len(step)]
            if len(path) > 1:
                draw.line(path, fill=HANDLE_RGB, width=max(1, int(r / 4)))
    for n, (h, t) in enumerate(pairs):
        if current is not None and n < len(current):
            h = current[n]
        hc = _to_canvas(h, scale)
        if t is not None:
            _arrow(draw, hc, _to_canvas(t, scale), width=max(2, int(r / 3)), head=r * 0.9)
    for n, (h, t) in enumerate(pairs):
        if current is not None and n < len(current):
            h = current[n]
        if t is not None:
            _marker(draw, _to_canvas(t, scale), r, TARGET_RGB, str(n + 1), font)
        _marker(draw, _to_canvas(h, scale), r, HANDLE_RGB, str(n + 1), font)
    return np.asarray(canvas)


def fit_long_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """`image` scaled down (Lanczos) so its long side is at most `max_side`; unchanged if smaller."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def save_animation(frames: Sequence[np.ndarray], path: str | Path, frame_ms: int = 120,
                   hold_last_ms: int = 1200) -> Path:
    """Write `frames` (`H x W x 3` uint8, all one size) as a looping GIF; the last frame is held.
    Returns the path. Raises ValueError for no frames."""
    if not frames:
        raise ValueError("no frames to animate")
    path = Path(path)
    ims = [Image.fromarray(np.asarray(f)[..., :3]) for f in frames]
    size = ims[0].size
    ims = [im if im.size == size else im.resize(size, Image.Resampling.LANCZOS) for im in ims]
    durations = [frame_ms] * (len(ims) - 1) + [hold_last_ms]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=durations, loop=0, disposal=1)
    return path


def thin_frames(frames: list, max_frames: int) -> list:
    """Keep at most `max_frames` of `frames`, evenly spread, always keeping the first and last."""
    if len(frames) <= max_frames or max_frames < 2:
        return list(frames)
    idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
    return [frames[i] for i in sorted(set(idx.tolist()))]


def side_by_side(images: Sequence[np.ndarray], captions: Sequence[str], side: int = 448, gap: int = 8) -> np.ndarray:
    """The `images` (`H x W x 3` uint8) scaled to a long side of `side` px, in a row with a white
    `gap`, each above a caption bar (below, so a viewer's own label never covers it).
    Returns `H' x W' x 3` uint8."""
    panels = []
    for img in images:
        arr = np.asarray(img)[..., :3].astype(np.uint8)
        f = side / max(arr.shape[:2])
        size = (max(1, round(arr.shape[1] * f)), max(1, round(arr.shape[0] * f)))
        panels.append(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
    bar = 30
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    height = max(p.height for p in panels) + bar
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = _font(18)
    x = 0
    for panel, caption in zip(panels, captions):
        draw.text((x + panel.width / 2, panel.height + bar / 2), caption, fill=(20, 20, 20), font=font, anchor="mm")
        out.paste(panel, (x, 0))
        x += panel.width + gap
    return np.asarray(out)
