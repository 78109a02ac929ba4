"""Example images for the StableDrag-Diff tab: toy faces and public-domain / CC0 photos.

`assets/examples/examples.json` lists them (file, name, prompt, source); `make_examples` writes
them all: toy faces from `stabledrag.toy` (held-out seed, so not training images) and two photos
that ship with scikit-image, whose licences are quoted from the scikit-image docstrings in
`assets/examples/LICENSES.md`. Run `python -m stabledrag.webapp.examples` to (re)make them.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from ..errors import UserError
from ..paths import EXAMPLES_DIR

log = logging.getLogger(__name__)


INDEX_NAME = "examples.json"
#: Seed of the toy faces used as examples; training uses other seeds, so these are held out.
TOY_EXAMPLE_SEED = 777_000
TOY_EXAMPLE_INDICES = (0, 1, 2)

# (function in skimage.data, file, name, prompt, licence line quoted from its docstring)
_PHOTOS = (
    ("chelsea", "photo_cat_chelsea.jpg", "Cat (photo)", "a photo of a cat",
     "Chelsea the cat. \"No copyright restrictions. CC0 by the photographer (Stefan van der Walt).\""),
    ("astronaut", "photo_astronaut.jpg", "Astronaut (photo)", "a photo of a woman, astronaut portrait",
     "Eileen Collins, NASA. \"No known copyright restrictions, released into the public domain.\" "
     "(NASA Great Images database, https://flic.kr/p/r9qvLn)"),
)


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


def make_examples(directory: Path = EXAMPLES_DIR, toy_size: int = 128) -> list[Example]:
    """Write the toy-face and photo examples, `examples.json` and `LICENSES.md` to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    try:
        from ..toy import ToyFaces

        ds = ToyFaces(TOY_EXAMPLE_SEED, size=toy_size)
        for k, i in enumerate(TOY_EXAMPLE_INDICES, start=1):
            img, _geo, caption = ds[i]
            name = f"toy_face_{k}.png"
            Image.fromarray(img).save(directory / name, optimize=True)
            items.append({"file": name, "name": f"Toy face {k}", "prompt": caption,
                          "source": f"stabledrag.toy ToyFaces(seed={TOY_EXAMPLE_SEED})[{i}], size {toy_size}"})
    except ImportError:  # the toy world is part of the project; without it only photos are made
        log.warning("stabledrag.toy is not available; writing the photos only")
    import skimage.data

    for func, name, title, prompt, _licence in _PHOTOS:
        arr = getattr(skimage.data, func)()
        Image.fromarray(arr).save(directory / name, quality=92, optimize=True)
        items.append({"file": name, "name": title, "prompt": prompt, "source": f"skimage.data.{func}()"})
    (directory / INDEX_NAME).write_text(json.dumps(items, indent=2) + "\n")
    (directory / "LICENSES.md").write_text(_licences_text(items))
    return list_examples(directory)


def _licences_text(items: list[dict]) -> str:
    lines = ["# Example images: sources and licences", "",
             "| file | source | licence |", "|---|---|---|"]
    licences = {name: lic for _f, name, _t, _p, lic in _PHOTOS}
    for it in items:
        lic = licences.get(it["file"], "Made by this project's procedural renderer (same licence as the code).")
        lines.append(f"| `{it['file']}` | {it['source']} | {lic} |")
    lines += ["", "The photos ship with scikit-image (BSD-3-Clause code); the licence text above is quoted "
              "from each `skimage.data` function's docstring (scikit-image 0.26).", ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m stabledrag.webapp.examples [--out DIR]`: write the example images."""
    p = argparse.ArgumentParser(prog="python -m stabledrag.webapp.examples", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(EXAMPLES_DIR))
    args = p.parse_args(argv)
    for ex in make_examples(Path(args.out)):
        print(ex.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
