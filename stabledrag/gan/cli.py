"""`python -m stabledrag generate|edit --backend gan`: the GAN engine's command-line functions.

Both receive the argparse Namespace built by `stabledrag.cli.build_parser` and return an exit
code; problems a person can fix raise `UserError` (printed as one line by `stabledrag.cli`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import UserError
from ..points import parse_drags, validate
from ..progress import TerminalProgress

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


def load_mask(path: Optional[str], size: tuple[int, int]) -> Optional[np.ndarray]:
    """Read an editable-region image (`stabledrag.imageio.read_mask`: white / painted = editable) as
    an `H x W` bool array at `size = (W, H)` (nearest-neighbour resize). None -> None. UserError
    when unreadable or when it marks nothing."""
    if not path:
        return None
    from ..imageio import read_mask

    return read_mask(path, tuple(size), require_some=True)


def _editor(args: argparse.Namespace):
    from .checkpoints import load_generator
    from .editor import GanEditor

    G = load_generator(getattr(args, "model", None), getattr(args, "device", None))
    return GanEditor(G)


def _seed_and_psi(args: argparse.Namespace) -> tuple[int, float]:
    """The checked `--seed` (default 0) and `--truncation` (default 0.7): UserError for NaN, inf,
    negative or too large values, before any model is loaded."""
    from ..limits import check_seed, finite_number

    seed = check_seed(0 if args.seed is None else args.seed, "--seed")
    psi = DEFAULT_TRUNCATION if args.truncation is None else args.truncation
    return seed, float(finite_number(psi, "--truncation", low=0, high=1))


def _use_latent(editor: Any, latent: Any) -> None:
    """Start the editor from a latent file: its weight delta (PTI) and W+; UserError when the file
    was projected into another model than the one loaded."""
    from .projection import model_fingerprint

    if latent.model_key and latent.model_key != model_fingerprint(editor.base_G):
        raise UserError("The latent file was projected with another model; pass that model with --model.")
    editor.set_weight_delta(latent.weight_delta)
    editor.set_latent(latent.ws, as_reference=True)


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


def edit_command(args: argparse.Namespace) -> int:
    """Generate `args.seed`, drag `args.drag` ("x,y:x,y" image px) with `args.method`, write the
    result to `args.out` and, with `args.report`, a JSON report (config, timings, trajectories,
    final distances). Exit code 0 when the drag ran (reached or out of steps), 1 if it diverged."""
    from ..cli import parse_overrides

    from ..limits import check_drag_config, check_point_count

    points = parse_drags(args.drag)
    check_point_count(len(points))
    seed, psi = _seed_and_psi(args)
    overrides: dict[str, Any] = parse_overrides(args.set)
    latent = None
    if getattr(args, "latent", None):
        from . import latent_file

        latent = latent_file.load(args.latent)
        if not getattr(args, "model", None) and latent.model:
            args.model = latent.model  # the model the photo was projected into
    editor = _editor(args)
    if latent is not None:
        _use_latent(editor, latent)
    else:
        editor.generate(seed, psi)
    validate(points, editor.image_size)
    mask = load_mask(args.mask, editor.image_size)
    if args.steps is not None:
        overrides.setdefault("max_steps", int(args.steps))
    try:
        config = editor.default_config(args.method, **overrides)
    except (TypeError, ValueError) as e:
        raise UserError(f"Bad drag setting in --set: {e}") from None
    try:
        check_drag_config(config)
    except UserError as e:
        raise UserError(f"Bad drag setting in --set: {e}") from None

    progress = TerminalProgress(disable=bool(args.quiet))
    try:
        session = editor.session(points, config, mask=mask, w_plus=not args.w_space, progress=progress)
        result = session.run()
    finally:
        progress.close()
    out_img = editor.image()
    if latent is not None and getattr(args, "paste_back", False):
        out_img = _paste_into_photo(args, latent, out_img)
    path = _save_png(out_img, args.out)

    summary = {
        "backend": "gan",
        "model": args.model or "toy (assets/models/toy_gan)",
        "seed": None if latent is not None else seed,
        "latent": getattr(args, "latent", None),
        "pti": bool(latent is not None and latent.weight_delta),
        "truncation_psi": None if latent is not None else psi,
        "device": str(editor.device),
        "w_space": "W" if args.w_space else "W+",
        "feature_res": session.backend.feature_res,
        "image_size": list(editor.image_size),
        "mask": args.mask,
        "output": str(path),
        **result.to_dict(),
    }
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    dists = ", ".join(f"{d:.1f}" for d in result.distances.tolist())
    print(f"wrote {path}: {result.status} after {result.steps} steps; distances to targets (px): {dists}")
    if result.error:
        print(result.error, file=sys.stderr)
    return 1 if result.status == "diverged" else 0
