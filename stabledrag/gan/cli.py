"""`python -m stabledrag generate --backend gan` and the helpers of the GAN engine's `edit`
(`stabledrag.gan.engine`).

Commands receive the argparse Namespace built by `stabledrag.cli.build_parser` and return an exit
code; problems a person can fix raise `UserError` (printed as one line by `stabledrag.cli`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)

DEFAULT_TRUNCATION = 0.7  # DragGAN's psi; pass --truncation 1 for the official generate.py image


def _save_png(img: np.ndarray, out: str) -> Path:
    from PIL import Image

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(img).save(path)
    except (ValueError, OSError) as e:
        raise UserError(f"Could not write the image to {path}: {e}") from e
    return path


def _editor(args: argparse.Namespace, recommended: Optional[dict[str, Any]] = None):
    """A `GanEditor` on `args.model` (None = the bundled toy GAN) on `args.device`, whose
    `default_config` applies `recommended` (the model's own settings) under the caller's."""
    from .checkpoints import load_generator
    from .editor import GanEditor

    G = load_generator(getattr(args, "model", None), getattr(args, "device", None))
    return GanEditor(G, recommended=recommended)


def _seed_and_psi(args: argparse.Namespace) -> tuple[int, float]:
    """The checked `--seed` (default 0) and `--truncation` (default 0.7): UserError for NaN, inf,
    negative or too large values, before any model is loaded."""
    from ..limits import check_seed, finite_number

    seed = check_seed(0 if args.seed is None else args.seed, "--seed")
    psi = DEFAULT_TRUNCATION if args.truncation is None else args.truncation
    return seed, float(finite_number(psi, "--truncation", low=0, high=1))


def _use_latent(editor: Any, latent: Any) -> None:
    """Start the editor from a latent file: its weight delta (PTI) and W+ (`GanEditor.set_projection`);
    UserError when the file was projected into another model than the one loaded."""
    from .projection import model_fingerprint

    if latent.model_key and latent.model_key != model_fingerprint(editor.base_G):
        raise UserError("The latent file was projected with another model; pass that model with --model.")
    editor.set_projection(latent)


def _paste_into_photo(args: argparse.Namespace, latent: Any, img: np.ndarray) -> np.ndarray:
    """The edit pasted back into `--image` (the photo that was projected) at the latent's crop box."""
    from .project_cli import read_photo
    from .projection import paste_back

    if not args.image:
        raise UserError("--paste-back with --latent needs --image: the photo that was projected.")
    if latent.crop is None:
        raise UserError("The latent file has no crop box (it was not made by `project`); drop --paste-back.")
    return paste_back(read_photo(args.image), img, latent.crop)


def generate_command(args: argparse.Namespace) -> int:
    """Render `G(seed)` with truncation `args.truncation` (default 0.7) to `args.out` (PNG)."""
    seed, psi = _seed_and_psi(args)
    editor = _editor(args)
    img = editor.generate(seed, psi)
    path = _save_png(img, args.out)
    print(f"wrote {path} ({img.shape[1]}x{img.shape[0]}, seed {seed}, truncation {psi})")
    return 0
