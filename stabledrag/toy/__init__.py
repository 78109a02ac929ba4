"""The toy-faces world: procedural cartoon faces with known geometry, and a colour detector.

- `render`: `sample_params(rng) -> FaceParams`, `render(params, size) -> (image, FaceGeometry)`,
  `edit(params, left_eye=(dx, dy), ...)` for ground-truth targets.
- `detect`: `detect(image) -> Detection` (head, eyes, mouth and its corners, by colour).
- `dataset`: `ToyFaces(seed, size)[i] -> (image, geometry, caption)`, `.batch(indices)`.

Names are imported lazily so that `python -m stabledrag.toy.render` runs its module cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detection": "detect", "DetectorConfig": "detect", "detect": "detect",
    "ToyFaces": "dataset", "caption": "dataset",
    "FaceGeometry": "render", "FaceParams": "render", "edit": "render", "render": "render",
    "sample_params": "render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
