"""`python -m scripts.make_examples [--out DIR]`: (re)make the example images of the web app.

Writes toy faces from `stabledrag.toy` (a held-out seed, so not training images) and two photos
that ship with scikit-image, with `examples.json` (file, name, prompt, source; read by
`stabledrag.webapp.examples.list_examples`) and `LICENSES.md` (each photo's licence quoted from
its scikit-image docstring) to `--out` (default `assets/examples`), and prints each image's path.
(It was `python -m stabledrag.webapp.examples`.)
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

from stabledrag.paths import EXAMPLES_DIR
from stabledrag.webapp.examples import INDEX_NAME, Example, list_examples

log = logging.getLogger(__name__)

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


def make_examples(directory: Path = EXAMPLES_DIR, toy_size: int = 128) -> list[Example]:
    """Write the toy-face and photo examples, `examples.json` and `LICENSES.md` to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    try:
        from stabledrag.toy import ToyFaces

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
    """Write the example images to `--out`; print their paths. Exit code 0."""
    p = argparse.ArgumentParser(prog="python -m scripts.make_examples", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(EXAMPLES_DIR))
    args = p.parse_args(argv)
    for ex in make_examples(Path(args.out)):
        print(ex.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
