"""Helpers of `python -m stabledrag edit --backend diffusion` (`stabledrag.diffusion.engine`).

Reads the image (any mode and size), the `--drag x,y:x,y` pairs (pixels of that image) and an
optional mask image (white or painted = editable), runs `DiffusionEditor.edit` with a terminal progress bar,
writes the result at the input's size and, with `--report`, a JSON report. Problems with the
input raise `UserError`, which `stabledrag.cli.main` prints as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Optional

from PIL import Image

from .. import imageio
from .presets import diffusion_defaults
from ..errors import UserError

log = logging.getLogger(__name__)


def read_image(path: Optional[str], what: str = "image") -> Image.Image:
    """Read `path` with `stabledrag.imageio` (allow-listed formats, limits, EXIF orientation, RGB);
    UserError (`ImageInputError`) when missing or unusable."""
    if not path:
        raise UserError(f"No {what} given: pass --{what} PATH.")
    return imageio.read_image(path, what)


def build_config(args: argparse.Namespace) -> Any:
    """The `DiffusionEditConfig` for the CLI arguments: the method's preset, then the model's own
    recommended settings (`recommended.recommended_overrides` of `--model`, default model when
    absent), then seed, steps, paste-back and `--set` (the user's settings win)."""
    from ..overrides import parse_overrides
    from .editor import DiffusionEditConfig
    from .recommended import recommended_overrides

    cfg = DiffusionEditConfig(drag=diffusion_defaults(args.method), paste_back=bool(args.paste_back))
    overrides: dict[str, Any] = dict(recommended_overrides(args.model))
    if args.seed is not None:
        overrides["seed"] = args.seed
    max_steps = getattr(args, "max_steps", getattr(args, "drag_steps", None))
    if max_steps is not None:
        overrides["max_steps"] = max_steps
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
