"""What the person sees on the point canvas: the image, enlarged when small, with numbered
handle (red) and target (blue) markers joined by arrows, and the area outside the editable
region dimmed. Also the drag animation (GIF) from preview frames.

Coordinates: points are `(x, y)` pixels of the *image* (x = column, y = row; the centre of pixel
(0, 0) is (0, 0)). The canvas shows the image enlarged by an integer `scale` (nearest neighbour),
so image pixel x covers canvas columns `[x * scale, (x + 1) * scale)` and a click at canvas column
c is image pixel `c // scale`. With zoom the canvas shows only a `Window` of the image (a
rectangle of whole image pixels starting at `(x0, y0)`) enlarged `scale * zoom` times, so a click at
canvas column c is image pixel `x0 + c // (scale * zoom)` (see `Window.to_image`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

# The markers, arrows and trails are drawn by the project's one drawing module; its colours and
# marker size are re-exported here for the app and its tests.
from ..visualize import HANDLE_RGB, OUTLINE_RGB, SELECTED_RGB, TARGET_RGB, draw_drag, marker_radius
from ..visualize import font as _font

__all__ = ["CANVAS_MIN_SIDE", "DIM_OUTSIDE", "HANDLE_RGB", "MAX_SCALE", "OUTLINE_RGB", "SELECTED_RGB", "TARGET_RGB",
           "Window", "canvas_to_image", "display_scale", "draw_points", "enlarge", "fit_long_side",
           "marker_radius", "save_animation", "side_by_side", "thin_frames", "zoom_window"]

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
    whole, enlarged by `scale` (`Window.to_image` for a zoomed canvas). Not clamped: a result
    outside `0..W-1 x 0..H-1` means the click missed."""
    return Window(0, 0, int(size[0]), int(size[1]), scale).to_image(index)


@dataclass(frozen=True)
class Window:
    """The part of an image the point canvas shows: image columns `x0 .. x0 + w - 1` and rows
    `y0 .. y0 + h - 1` (whole pixels), each drawn as `scale x scale` canvas pixels."""

    x0: int
    y0: int
    w: int
    h: int
    scale: int

    def to_image(self, index: Sequence[float]) -> tuple[int, int]:
        """Canvas click `(column, row)` -> image pixel `(x, y)` (exact: the pixel drawn there).
        Not clamped: a result outside the image means the click missed."""
        return (self.x0 + int(math.floor(float(index[0]) / self.scale)),
                self.y0 + int(math.floor(float(index[1]) / self.scale)))

    def to_canvas(self, p: Point) -> tuple[float, float]:
        """Image point `(x, y)` (the centre of pixel (0, 0) is (0, 0)) -> canvas position."""
        return (float(p[0]) - self.x0 + 0.5) * self.scale, (float(p[1]) - self.y0 + 0.5) * self.scale

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The window's part of `image` (`H x W [x C]`)."""
        return image[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w]


def zoom_window(size: tuple[int, int], scale: int, zoom: float = 1, centre: Sequence[float] = (0.5, 0.5)) -> Window:
    """The canvas window of an image of `size = (W, H)` shown enlarged by `scale`, zoomed in
    `zoom` times (an integer >= 1; 1 = the whole image) around `centre` (fractions 0..1 of W and H;
    the window is shifted to stay inside the image). The window holds `ceil(W / zoom) x ceil(H / zoom)`
    image pixels drawn at `scale * zoom`, so the canvas keeps about its unzoomed size."""
    w, h = int(size[0]), int(size[1])
    z = max(1, int(zoom))
    if z == 1:
        return Window(0, 0, w, h, scale)
    cw, ch = math.ceil(w / z), math.ceil(h / z)
    cx = min(max(float(centre[0]), 0.0), 1.0) * w
    cy = min(max(float(centre[1]), 0.0), 1.0) * h
    x0 = min(max(int(round(cx - cw / 2)), 0), w - cw)
    y0 = min(max(int(round(cy - ch / 2)), 0), h - ch)
    return Window(x0, y0, cw, ch, scale * z)


def draw_points(image: np.ndarray, clicks: Sequence[Point], scale: int = 1, mask: Optional[np.ndarray] = None,
                handles: Optional[Sequence[Point]] = None,
                trail: Optional[Sequence[Sequence[Point]]] = None, window: Optional[Window] = None,
                selected: Optional[int] = None) -> np.ndarray:
    """The canvas: `image` (`H x W x 3` uint8) enlarged by `scale` with markers.

    clicks: `[h1, t1, h2, t2, ...]` image px; a trailing handle without target is drawn alone.
    mask: `H x W` bool editable region (True = may change); outside it is dimmed. None: no dimming.
    handles: current handle positions (image px) during/after a drag; drawn instead of the
      clicked handles, joined to their targets.
    trail: past handle positions per step (`S x N x 2`), drawn as thin red lines.
    window: show only this part of the image at `window.scale` (zoom; `scale` is then unused).
    selected: index into `clicks` of the marker picked for moving, drawn with a yellow ring.
    Returns `(H*scale) x (W*scale) x 3` uint8 (`(h*s) x (w*s) x 3` for a window).
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3].astype(np.uint8)
    if mask is not None and mask.shape == img.shape[:2] and mask.any() and not mask.all():
        img = np.where(mask[..., None], img, (img * DIM_OUTSIDE).astype(np.uint8))
    window = window if window is not None else Window(0, 0, img.shape[1], img.shape[0], scale)
    scale = window.scale
    canvas = Image.fromarray(enlarge(np.ascontiguousarray(window.crop(img)), scale))
    r = marker_radius(canvas.width, canvas.height)
    pairs = [(clicks[i], clicks[i + 1] if i + 1 < len(clicks) else None) for i in range(0, len(clicks), 2)]
    current = list(handles) if handles is not None else None
    if current is not None:  # during/after a drag: the handles where they are now, joined to their targets
        pairs = [(current[n] if n < len(current) else h, t) for n, (h, t) in enumerate(pairs)]
    paths = None
    if trail is not None and len(trail) > 1:
        paths = [[window.to_canvas(step[n]) for step in trail if n < len(step)] for n in range(len(pairs))]
    ring = None
    if selected is not None and 0 <= selected < len(clicks):
        p = clicks[selected]
        if selected % 2 == 0 and current is not None and selected // 2 < len(current):
            p = current[selected // 2]
        ring = window.to_canvas(p)
    draw_drag(ImageDraw.Draw(canvas), [(window.to_canvas(h), None if t is None else window.to_canvas(t))
                                       for h, t in pairs], r, trails=paths, selected=ring)
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
    x = 0
    for panel, caption in zip(panels, captions):
        size = 18
        font = _font(size)
        while size > 9 and hasattr(font, "getlength") and font.getlength(caption) > panel.width - 8:
            size -= 1  # a long caption gets a smaller font rather than running into the next panel
            font = _font(size)
        draw.text((x + panel.width / 2, panel.height + bar / 2), caption, fill=(20, 20, 20), font=font, anchor="mm")
        out.paste(panel, (x, 0))
        x += panel.width + gap
    return np.asarray(out)
