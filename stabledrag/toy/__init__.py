"""The toy-faces world: procedural cartoon faces with known geometry, and a colour detector.

- `render`: `sample_params(rng) -> FaceParams`, `render(params, size) -> (image, FaceGeometry)`,
  `edit(params, left_eye=(dx, dy), ...)` for ground-truth targets.
- `detect`: `detect(image) -> Detection` (head, eyes, mouth and its corners, by colour).
- `dataset`: `ToyFaces(seed, size)[i] -> (image, geometry, caption)`, `.batch(indices)`.
- `gan_model`: `face_from_z(z) -> FaceParams` (the latent -> face mapping the bundled toy GAN
  learns, and `bench toy --source rendered` renders ground truth with), `render_batch` (its
  training targets), `toy_generator_config` (its architecture).
- `sd_model`: the bundled toy latent-diffusion model's configuration, builders and tokenizer.
- `fidelity`: reconstruction scores (PSNR, mean colour, detected parts) for `bench fidelity`.

Names are imported lazily so that importing one module does not import the others.

The training programs behind `assets/models/` are scripts, not library code:
`python -m scripts.train_gan` and `python -m scripts.train_sd` (from the repository root).
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
