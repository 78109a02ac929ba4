"""Example images for the StableDrag-Diff tab: toy faces and public-domain / CC0 photos.

`assets/examples/examples.json` lists them (file, name, prompt, source; an optional kind); this module reads
the list and the images. They are made by `python -m scripts.make_examples` (toy faces from
`stabledrag.toy` on a held-out seed, and two photos that ship with scikit-image, whose licences
are quoted in `assets/examples/LICENSES.md`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..paths import EXAMPLES_DIR

log = logging.getLogger(__name__)

#: The list of examples inside the examples folder (written by `scripts/make_examples.py`).
INDEX_NAME = "examples.json"


@dataclass(frozen=True)
class Example:
    """One example: `path` to the image, `name` shown in the page, `prompt` suggested for it,
    `kind`: "toy" (a toy face the bundled toy models draw) or "photo" (needs an SD 1.5-class model)."""

    name: str
    path: Path
    prompt: str
    kind: str = "photo"


#: What a photo needs, said where the selected model cannot draw one.
PHOTO_NOTE = ("Photos need Stable Diffusion 1.5 (or a similar model) — pick it in the Model menu where it is "
              "available; it downloads about 4 GB once, and an edit takes about a minute on a GPU but tens of "
              "minutes on a CPU. The bundled toy model draws only toy faces, so only those are offered with it.")


def examples_for_model(examples: list[Example], toy_model: bool) -> list[Example]:
    """The examples a model can draw: toy faces for the bundled toy model, photos for any other
    (an SD 1.5-class model); never an empty list while there are examples of the other kind."""
    want = "toy" if toy_model else "photo"
    chosen = [e for e in examples if e.kind == want]
    return chosen or list(examples)


def list_examples(directory: Path = EXAMPLES_DIR) -> list[Example]:
    """The examples listed in `directory/examples.json` whose files exist (empty if none)."""
    index = directory / INDEX_NAME
    if not index.is_file():
        return []
    try:
        items = json.loads(index.read_text())
    except (OSError, ValueError):
        log.warning("could not read %s", index)
        return []
    out = []
    for it in items:
        p = directory / str(it.get("file", ""))
        if p.is_file() and p.parent == directory:
            kind = str(it.get("kind") or ("toy" if p.name.startswith("toy_") else "photo"))
            out.append(Example(name=str(it.get("name", p.stem)), path=p, prompt=str(it.get("prompt", "")), kind=kind))
    return out


def load_example(example: Example) -> np.ndarray:
    """The example's pixels, `H x W x 3` uint8."""
    from ..imageio import read_image_array

    try:
        return read_image_array(example.path, f"example {example.name!r}")
    except UserError as e:
        raise UserError(f"The example {example.name!r} could not be read ({e}).") from None
