"""Drawing drag points: numbered handle (red) and target (blue) markers joined by arrows, and the
paths handles took (trajectories). The one drawing implementation of the project: the web app's
point canvas (`stabledrag.webapp.drawing`, which adds the zoom window, enlargement and mask dimming
around it) and the benchmarks' example sheets both draw through `draw_drag`.

Coordinates: `draw_drag` works in *canvas* pixels (PIL's convention: (0, 0) is the top-left corner
of the top-left pixel). `draw_points` takes *image* points `(x, y)` with the centre of pixel (0, 0)
at (0, 0) (the project's point convention, `stabledrag.points`) and draws them at pixel centres.
Pillow only; no engine, no Gradio.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HANDLE_RGB = (230, 40, 40)
TARGET_RGB = (40, 90, 235)
OUTLINE_RGB = (255, 255, 255)
SELECTED_RGB = (255, 210, 0)
ARROW_RGB = (250, 250, 250)

XY = tuple[float, float]


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at `size` px (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def marker_radius(canvas_w: int, canvas_h: int) -> float:
    """Radius in canvas pixels of a point marker on a canvas of that size (6 to 14 px)."""
    return float(min(14, max(6, round(min(canvas_w, canvas_h) / 45))))


def _arrow(draw: ImageDraw.ImageDraw, a: XY, b: XY, width: int, head: float) -> None:
    """A white arrow from `a` to the rim of the marker at `b` (nothing when they coincide)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length < 1e-6:
        return
    ux, uy = dx / length, dy / length
    tip = (b[0] - ux * head * 0.9, b[1] - uy * head * 0.9)  # stop at the target marker's rim
    base = (tip[0] - ux * head, tip[1] - uy * head)
    left = (base[0] - uy * head * 0.55, base[1] + ux * head * 0.55)
    right = (base[0] + uy * head * 0.55, base[1] - ux * head * 0.55)
    for colour, extra in ((OUTLINE_RGB, 2), (ARROW_RGB, 0)):
        draw.line([a, base], fill=colour, width=width + extra)
    draw.polygon([tip, left, right], fill=ARROW_RGB, outline=(40, 40, 40))


def _marker(draw: ImageDraw.ImageDraw, c: XY, r: float, colour: tuple[int, int, int],
            label: Optional[str], text_font: Optional[ImageFont.ImageFont]) -> None:
    draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colour, outline=OUTLINE_RGB, width=max(1, int(r / 5)))
    if label is not None:
        draw.text(c, label, fill=OUTLINE_RGB, font=text_font, anchor="mm")


def draw_drag(draw: ImageDraw.ImageDraw, pairs: Sequence[tuple[XY, Optional[XY]]], radius: float,
              trails: Optional[Sequence[Sequence[XY]]] = None, numbers: bool = True,
              selected: Optional[XY] = None) -> None:
    """Draw drag pairs onto `draw` in place, all positions in canvas pixels.

    pairs: `[(handle, target or None), ...]`; pair n is labelled n + 1. A handle without a target
      (still waiting for its click) is drawn alone.
    radius: marker radius (px); arrow width, head and label size follow from it.
    trails: per pair, the handle's past positions (a polyline each), drawn as thin red lines under
      everything else; pairs without a trail may be missing from the end.
    numbers: write the pair's number inside its markers.
    selected: a position to ring in yellow (the marker picked for moving), drawn last.
    Order: trails, then arrows, then target and handle markers (so no arrow covers a marker).
    """
    r = float(radius)
    text_font = font(max(8, int(round(r * 1.3)))) if numbers else None
    for path in trails or ():
        if len(path) > 1:
            draw.line([tuple(p) for p in path], fill=HANDLE_RGB, width=max(1, int(r / 4)))
    for h, t in pairs:
        if t is not None:
            _arrow(draw, h, t, width=max(2, int(r / 3)), head=r * 0.9)
    for n, (h, t) in enumerate(pairs):
        label = str(n + 1) if numbers else None
        if t is not None:
            _marker(draw, t, r, TARGET_RGB, label, text_font)
        _marker(draw, h, r, HANDLE_RGB, label, text_font)
    if selected is not None:
        cx, cy = selected
        ring = r + max(2, r / 3)
        draw.ellipse([cx - ring, cy - ring, cx + ring, cy + ring], outline=SELECTED_RGB, width=max(2, int(r / 3)))


def draw_points(image: np.ndarray | Image.Image, handles: Sequence[Sequence[float]],
                targets: Sequence[Sequence[float]] = (), radius: float | None = None,
                numbers: bool = True) -> Image.Image:
    """An RGB copy of `image` (PIL or `H x W [x C]` uint8) with handle i (red) and target i (blue)
    joined by an arrow, drawn by `draw_drag` at the points' pixel centres.

    handles, targets: image points `(x, y)` px; `targets` may be shorter than `handles` (handles
      still waiting for their targets).
    radius: marker radius in px (default ~1/60 of the image's longer side, at least 2 px).
    numbers: label the markers (only on images of 96 px or more, where a label fits).
    """
    img = (Image.fromarray(np.asarray(image)) if not isinstance(image, Image.Image) else image).convert("RGB").copy()
    r = radius if radius is not None else max(2.0, max(img.size) / 60)
    pairs = [(_centre(h), _centre(targets[i]) if i < len(targets) else None) for i, h in enumerate(handles)]
    draw_drag(ImageDraw.Draw(img), pairs, r, numbers=numbers and max(img.size) >= 96)
    return img


def _centre(p: Sequence[float]) -> XY:
    """Image point (centre of pixel (0, 0) = (0, 0)) -> PIL position on the unscaled image."""
    return float(p[0]) + 0.5, float(p[1]) + 0.5


def grid(rows: Sequence[Sequence[np.ndarray | Image.Image]], pad: int = 4,
         labels: Sequence[str] | None = None, background: tuple[int, int, int] = (24, 24, 24)) -> Image.Image:
    """Tile images into a sheet: `rows[r][c]` (PIL images or `H x W x 3` uint8 arrays), all cells
    resized to the first cell's size, `pad` px of `background` around each. `labels` (one per
    column) are written above the first row. The one grid of the project (`tile` lays out a flat list)."""
    first = rows[0][0]
    cw, ch = (first.size if isinstance(first, Image.Image) else (first.shape[1], first.shape[0]))
    top = 14 if labels else 0
    ncols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (ncols * (cw + pad) + pad, top + len(rows) * (ch + pad) + pad), background)
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(labels or []):
        draw.text((pad + c * (cw + pad), 2), text, fill=(230, 230, 230))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            im = cell if isinstance(cell, Image.Image) else Image.fromarray(np.asarray(cell))
            sheet.paste(im.convert("RGB").resize((cw, ch)), (pad + c * (cw + pad), top + pad + r * (ch + pad)))
    return sheet


def tile(images: Sequence[np.ndarray | Image.Image], columns: Optional[int] = None, pad: int = 2,
         background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A flat list of equally sized images laid out row by row, `columns` a row (default
    `ceil(sqrt(n))`), as one `H x W x 3` uint8 array (`grid` without labels; white padding: the
    training programs' sample sheets). Raises ValueError for an empty list."""
    if len(images) == 0:
        raise ValueError("no images to tile")
    cols = columns or int(math.ceil(math.sqrt(len(images))))
    rows = [list(images[i:i + cols]) for i in range(0, len(images), cols)]
    return np.asarray(grid(rows, pad=pad, background=background))
