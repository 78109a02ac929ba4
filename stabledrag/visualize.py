"""Drawing drag points on images (numbered red handles, blue targets, arrows between them).

Used by the benchmarks' example sheets and the web app. Points are `(x, y)` image pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

HANDLE_RGB = (230, 40, 40)
TARGET_RGB = (40, 90, 240)


def draw_points(image: np.ndarray | Image.Image, handles: Sequence[Sequence[float]],
                targets: Sequence[Sequence[float]] = (), radius: float | None = None,
                numbers: bool = True) -> Image.Image:
    """Return an RGB copy of `image` with handle i (red) and target i (blue) joined by a white arrow.

    `targets` may be one shorter than `handles` (a handle still waiting for its target).
    `radius` defaults to ~1/60 of the image's longer side (at least 2 px).
    """
    img = (Image.fromarray(np.asarray(image)) if not isinstance(image, Image.Image) else image).convert("RGB").copy()
    r = radius if radius is not None else max(2.0, max(img.size) / 60)
    draw = ImageDraw.Draw(img)
    width = max(1, int(round(r / 2)))
    for i, h in enumerate(handles):
        if i < len(targets):
            t = targets[i]
            draw.line([tuple(h), tuple(t)], fill=(255, 255, 255), width=width)
            ang = math.atan2(t[1] - h[1], t[0] - h[0])
            head = [(t[0] - 2.2 * r * math.cos(ang + s), t[1] - 2.2 * r * math.sin(ang + s)) for s in (0.5, -0.5)]
            draw.polygon([tuple(t), *head], fill=(255, 255, 255))
            _dot(draw, t, r, TARGET_RGB)
        _dot(draw, h, r, HANDLE_RGB)
        if numbers and max(img.size) >= 96:
            draw.text((h[0] + r + 1, h[1] - 2 * r - 1), str(i + 1), fill=(255, 255, 255))
    return img


def _dot(draw: ImageDraw.ImageDraw, p: Sequence[float], r: float, fill: tuple[int, int, int]) -> None:
    draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=fill, outline=(255, 255, 255))


def grid(rows: Sequence[Sequence[np.ndarray | Image.Image]], pad: int = 4,
         labels: Sequence[str] | None = None) -> Image.Image:
    """Tile images into a sheet: `rows[r][c]`, all cells resized to the first cell's size.
    `labels` (one per column) are written above the first row."""
    first = rows[0][0]
    cw, ch = (first.size if isinstance(first, Image.Image) else (first.shape[1], first.shape[0]))
    top = 14 if labels else 0
    ncols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (ncols * (cw + pad) + pad, top + len(rows) * (ch + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(labels or []):
        draw.text((pad + c * (cw + pad), 2), text, fill=(230, 230, 230))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            im = cell if isinstance(cell, Image.Image) else Image.fromarray(np.asarray(cell))
            sheet.paste(im.convert("RGB").resize((cw, ch)), (pad + c * (cw + pad), top + pad + r * (ch + pad)))
    return sheet
