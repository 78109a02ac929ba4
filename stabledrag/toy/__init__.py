"""The toy-faces world: procedural cartoon faces with known geometry, and a colour detector.

- `render`: `sample_params(rng) -> FaceParams`, `render(params, size) -> (image, FaceGeometry)`,
  `edit(params, left_eye=(dx, dy), ...)` for ground-truth targets.
- `detect`: `detect(image) -> Detection` (head, eyes, mouth and its corners, by colour).
- `dataset`: `ToyFaces(seed, size)[i] -> (image, geometry, caption)`, `.batch(indices)`.

Names are imported lazily so that `python -m stabledrag.toy.render` runs its module cleanly.

The two training programs stay in this package for now, though they are command-line programs
rather than library code (issue 15 asks for scripts outside the importable package):
- `train_sd` (`python -m stabledrag.toy.train_sd`) is the recipe behind `assets/models/toy_sd`; a
  training run uses that module path, the README cites it, and its tests import its functions
  (`TrainConfig`, `train_vae`, `export`, ...). Moving it means moving those with it.
- `train_gan` (`python -m stabledrag.toy.train_gan`) also holds library code: `face_from_z`, the
  latent -> face mapping that `bench toy-projected` uses to render ground-truth faces.
The next step is to split each into its model/recipe part (here) and a thin `scripts/` command.
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
