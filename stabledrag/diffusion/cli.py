"""`python -m stabledrag edit --backend diffusion ...`: one StableDrag-Diff edit from the terminal.

Reads the image (any mode and size), the `--drag x,y:x,y` pairs (pixels of that image) and an
optional mask image (white or painted = editable), runs `DiffusionEditor.edit` with a terminal progress bar,
writes the result at the input's size and, with `--report`, a JSON report. Problems with the
input raise `UserError`, which `stabledrag.cli.main` prints as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any, Optional

import numpy as np
from PIL import Image

from .. import imageio

from ..config import diffusion_defaults
from ..errors import UserError
from ..points import parse_drags, validate
from ..progress import Cancelled, TerminalProgress

log = logging.getLogger(__name__)


def read_image(path: Optional[str], what: str = "image") -> Image.Image:
    """Read `path` with `stabledrag.imageio` (allow-listed formats, limits, EXIF orientation, RGB);
    UserError (`ImageInputError`) when missing or unusable."""
    if not path:
        raise UserError(f"No {what} given: pass --{what} PATH.")
    return imageio.read_image(path, what)


def read_mask(path: Optional[str], size: tuple[int, int]) -> Optional[np.ndarray]:
    """The editable mask (`stabledrag.imageio.read_mask`: opaque paint of an RGBA painting, else
    pixels brighter than half) as an `H x W` bool array at `size = (W, H)` (resized, nearest)."""
    if not path:
        return None
    return imageio.read_mask(path, size, require_some=True)


def build_config(args: argparse.Namespace) -> Any:
    """The `DiffusionEditConfig` for the CLI arguments: the method's preset, then the model's own
    recommended settings (`recommended.recommended_overrides` of `--model`, default model when
    absent), then seed, steps, paste-back and `--set` (the user's settings win)."""
    from ..cli import parse_overrides
    from .editor import DiffusionEditConfig
    from .recommended import recommended_overrides

    cfg = DiffusionEditConfig(drag=diffusion_defaults(args.method), paste_back=bool(args.paste_back))
    overrides: dict[str, Any] = dict(recommended_overrides(args.model))
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.drag_steps is not None:
        overrides["max_steps"] = args.drag_steps
    if args.lora_steps is not None:
        overrides["lora.steps"] = args.lora_steps
    overrides.update(parse_overrides(args.set or []))
    return cfg.with_overrides(overrides)


def parse_lora_args(items: list[str]) -> list[tuple[str, float]]:
    """`["style.safetensors:0.7", "b.safetensors"]` -> `[("style.safetensors", 0.7), ("b.safetensors", 1.0)]`;
    UserError for a scale that is not a number."""
    out = []
    for item in items or []:
        path, sep, scale = item.rpartition(":")
        if not sep or not path or os.path.sep in scale or scale.lower().endswith((".safetensors", ".bin", ".pt")):
            path, scale = item, "1"
        try:
            out.append((path, float(scale)))
        except ValueError:
            raise UserError(f"--lora {item!r}: write FILE or FILE:SCALE with a number as SCALE") from None
    return out


def edit_command(args: argparse.Namespace) -> int:
    """Run the `edit --backend diffusion` sub-command; returns the exit code (0 on success)."""
    from .editor import DiffusionEditor

    from ..limits import check_drag_config, check_point_count, check_prompt, check_seed

    if args.seed is not None:
        check_seed(args.seed, "--seed")
    prompt = check_prompt(args.prompt)
    image = read_image(args.image)
    points = validate(parse_drags(args.drag), image.size)
    check_point_count(len(points))
    mask = read_mask(args.mask, image.size)
    config = build_config(args)
    try:
        check_drag_config(config)
    except UserError as e:
        raise UserError(f"Bad setting: {e}") from None
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise UserError(f"The output folder {out_dir!r} does not exist.")

    editor = DiffusionEditor(model=args.model, device=args.device, dtype=getattr(args, "dtype", None),
                             config_dir=args.config_dir,
                             loras=parse_lora_args(getattr(args, "lora", [])))
    bar = TerminalProgress(disable=bool(args.quiet))
    try:
        result = editor.edit(image, points, mask=mask, prompt=prompt, config=config, progress=bar)
    except Cancelled:
        raise KeyboardInterrupt from None
    finally:
        bar.close()
    try:
        result.image.save(args.out)
    except (OSError, ValueError) as e:
        raise UserError(f"Could not write {args.out!r}: {e}") from None
    if args.report:
        with open(args.report, "w") as f:
            json.dump(result.report, f, indent=2)
            f.write("\n")
    if not args.quiet:
        dist = ", ".join(f"{d:.1f}" for d in result.report["drag"]["final_distances"])
        print(f"{result.drag.status} after {result.drag.steps} steps; handle-target distances (px): {dist}; "
              f"wrote {args.out}")
    return 0
