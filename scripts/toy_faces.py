"""`python -m scripts.toy_faces --out grid.png [--seed 0] [--n 16] [--size 128] [--annotate]`: a grid of
toy-faces dataset images (`stabledrag.toy.dataset.ToyFaces`), optionally with the detector's parts
(black) and the renderer's ground truth (white) marked."""

from __future__ import annotations

import argparse
import logging
import math
from typing import Optional, Sequence

import numpy as np

from stabledrag.visualize import tile

logger = logging.getLogger(__name__)


def draw_marks(image: np.ndarray, points: Sequence[tuple[float, float]],
               colour: tuple[int, int, int] = (0, 0, 0), arm: int = 2) -> np.ndarray:
    """A copy of `image` with a small '+' at each `(x, y)` point (rounded to pixels)."""
    out = image.copy()
    h, w = out.shape[:2]
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        xi, yi = int(round(x)), int(round(y))
        for k in range(-arm, arm + 1):
            if 0 <= yi < h and 0 <= xi + k < w:
                out[yi, xi + k] = colour
            if 0 <= yi + k < h and 0 <= xi < w:
                out[yi + k, xi] = colour
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m scripts.toy_faces`: write a grid of dataset faces to a PNG."""
    from PIL import Image

    from stabledrag.toy.dataset import ToyFaces

    p = argparse.ArgumentParser(prog="python -m scripts.toy_faces", description="Write a grid of toy faces.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--annotate", action="store_true",
                   help="mark detected parts (black) and the renderer's ground truth (white)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    ds = ToyFaces(args.seed, size=args.size)
    tiles = []
    for i in range(args.n):
        img, geo, caption = ds[i]
        if args.annotate:
            from stabledrag.toy.detect import detect

            det = detect(img)
            img = draw_marks(img, list(geo.keypoints().values()), (255, 255, 255), arm=1)
            img = draw_marks(img, [p for p in det.keypoints().values() if p is not None], (0, 0, 0), arm=1)
        tiles.append(img)
        logger.info("%d: %s", i, caption)
    Image.fromarray(tile(tiles)).save(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
