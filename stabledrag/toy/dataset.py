"""A deterministic, endless-by-seed dataset of toy faces with captions.

Item `i` of `ToyFaces(seed)` is drawn from its own RNG seeded by `(seed, i)`, so it is the same
whatever was read before it, in any order, in any process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from .render import FaceGeometry, FaceParams, render, sample_params

if TYPE_CHECKING:
    import torch

_EXPRESSION_WORDS = {
    "smile": "smiling",
    "neutral": "with a neutral expression",
    "frown": "frowning",
    "open": "with an open mouth",
}


def caption(params: FaceParams) -> str:
    """A short text for the face, e.g. 'a cartoon face smiling, looking left, on a teal background'.

    Gaze words are image directions (the viewer's left).
    """
    gaze = "looking straight ahead" if params.gaze_direction == "forward" else f"looking {params.gaze_direction}"
    return f"a cartoon face {_EXPRESSION_WORDS[params.expression]}, {gaze}, on a {params.bg_name} background"


class ToyFaces:
    """Faces by index: `ds[i] -> (image H x W x 3 uint8, FaceGeometry in pixels, caption)`.

    `length` only sets `len(ds)` (for samplers); any non-negative index works.
    """

    def __init__(self, seed: int = 0, size: int = 128, length: int = 100_000) -> None:
        if size < 16:
            raise ValueError(f"size must be at least 16 px, got {size}")
        self.seed = int(seed)
        self.size = int(size)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        """The generator that item `index` is drawn from (depends only on seed and index)."""
        if index < 0:
            raise IndexError(f"index must be >= 0, got {index}")
        return np.random.default_rng([self.seed, int(index)])

    def params(self, index: int) -> FaceParams:
        """The face parameters of item `index` (edit them with `stabledrag.toy.render.edit`)."""
        return sample_params(self.rng(index))

    def __getitem__(self, index: int) -> tuple[np.ndarray, FaceGeometry, str]:
        p = self.params(index)
        image, geometry = render(p, self.size)
        return image, geometry, caption(p)

    def captions(self, indices: Sequence[int]) -> list[str]:
        """Captions of several items (cheap: no rendering)."""
        return [caption(self.params(i)) for i in indices]

    def batch(self, indices: Sequence[int], device: Optional["torch.device | str"] = None) -> "torch.Tensor":
        """Images of `indices` as a float32 tensor `N x 3 x H x W` in [-1, 1]."""
        import torch

        imgs = np.stack([self[i][0] for i in indices])  # N x H x W x 3 uint8
        t = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return t.to(device) if device is not None else t
