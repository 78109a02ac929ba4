"""`python -m stabledrag project --backend gan`: project a photo into a GAN, write a latent file.

    python -m stabledrag project --backend gan --image photo.png --out latent.npz [--model M]
        [--pti-steps 0] [--set w_steps=200] [--box L,T,R,B] [--preview rec.png] [--report r.json]

Then `python -m stabledrag edit --backend gan --latent latent.npz --drag X,Y:X,Y --out out.png`
(add `--image photo.png --paste-back` to put the edit back into the full photo).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError
from ..progress import TerminalProgress


def _box(text: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    if not text:
        return None
    try:
        vals = tuple(int(float(v)) for v in text.split(","))
    except ValueError:
        raise UserError(f"--box needs L,T,R,B in pixels, got {text!r}") from None
    if len(vals) != 4 or vals[2] <= vals[0] or vals[3] <= vals[1]:
        raise UserError(f"--box needs L,T,R,B with R > L and B > T, got {text!r}")
    return vals  # type: ignore[return-value]


def read_photo(path: str) -> Any:
    """Read `path` as an RGB PIL image with `stabledrag.imageio` (format allow-list, limits, EXIF
    orientation); UserError (`ImageInputError`) when it is missing or not a usable image."""
    from ..imageio import read_image

    return read_image(path, "photo")


def projection_config(args: argparse.Namespace) -> Any:
    """`ProjectionConfig` for `args.model`: the defaults, the model's recommended `project` settings
    (`projection.projection_config`), then `--set KEY=VALUE` and the step options (UserError when
    invalid, naming the model's settings file or the option)."""
    from ..overrides import parse_overrides
    from .projection import projection_config as config_for

    values: dict[str, Any] = parse_overrides(args.set)
    for name in ("w_steps", "wplus_steps", "pti_steps"):
        if getattr(args, name, None) is not None:
            values[name] = int(getattr(args, name))
    return config_for(args.model, "projection setting (--set / --*-steps)", **values)


def project_command(args: argparse.Namespace) -> int:
    """Align `args.image`, project it into `args.model` (default: the bundled toy GAN), write the
    latent file `args.out` (`latent_file` format), and optionally the reconstruction PNG
    (`--preview`) and a JSON report (`--report`). Prints one summary line. Returns 0."""
    from PIL import Image

    from . import latent_file
    from .checkpoints import load_generator
    from .projection import align_image, project

    if args.backend != "gan":
        raise UserError("Projection is for the GAN backend (the diffusion engine edits photos directly).")
    cfg = projection_config(args)
    photo = read_photo(args.image)
    G = load_generator(args.model, args.device)
    aligned, crop = align_image(photo, G.img_resolution, _box(args.box))
    progress = TerminalProgress(disable=bool(args.quiet))
    t0 = time.perf_counter()
    try:
        result = project(G, aligned, cfg, crop=crop, progress=progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    path = latent_file.save(args.out, latent_file.from_result(result, args.model))
    if args.preview:
        Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result.image).save(args.preview)
    summary = {"backend": "gan", "model": args.model or "toy (assets/models/toy_gan)", "image": args.image,
               "latent": str(path), "device": str(G.device), "total_seconds": round(seconds, 2), **result.metrics()}
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(summary, indent=2) + "\n")
    pti = f"; with PTI {result.psnr:.2f} dB / SSIM {result.ssim:.3f}" if result.weight_delta else ""
    print(f"wrote {path}: PSNR {result.psnr_before_pti:.2f} dB / SSIM {result.ssim_before_pti:.3f} (W+){pti}; "
          f"{seconds:.1f} s")
    return 0


def add_project_parser(sub: Any) -> None:
    """Register the `project` sub-command on `sub` (argparse sub-parsers)."""
    p = sub.add_parser("project", help="project a photo into a GAN (inversion, optional PTI) -> latent .npz")
    p.add_argument("--backend", choices=["gan"], default="gan")
    p.add_argument("--model", default=None, help=".pkl or native checkpoint (default: the bundled toy model)")
    p.add_argument("--image", required=True, help="the photo (any size: a centred square is cropped)")
    p.add_argument("--box", default=None, metavar="L,T,R,B", help="crop this box (made square) instead")
    p.add_argument("--out", required=True, help="latent file to write (.npz)")
    p.add_argument("--w-steps", type=int, default=None, help="phase 1 steps (W or Z)")
    p.add_argument("--wplus-steps", type=int, default=None, help="W+ steps")
    p.add_argument("--pti-steps", type=int, default=None, help="pivotal tuning steps (0 = no PTI)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any ProjectionConfig field, e.g. --set pti_lr=0.001")
    p.add_argument("--preview", default=None, help="also write the reconstruction (PNG)")
    p.add_argument("--report", default=None, help="write a JSON report (PSNR/SSIM with and without PTI, timings)")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
