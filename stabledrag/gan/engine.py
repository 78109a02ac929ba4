"""The StyleGAN2 engine as the CLI and `bench toy` see it (`stabledrag.engine.Engine`).

`edit`: generate `G(seed)` (truncation psi) or start from a projected latent file, drag with
`GanEditor` (DragGAN, Pan et al. 2023 / StableDrag-GAN, Cui et al. 2024) and return the image
(pasted back into the photo with `--paste-back --latent`).
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

import numpy as np

from ..engine import EditOutcome, Option, ToyRunner


class GanEngine:
    """`--backend gan`: drag points on a StyleGAN2 sample (by seed) or a projected photo."""

    name = "gan"
    help = "drag points on a StyleGAN2 image (a seed, or a photo projected with `project`)"
    default_cases = 40
    step_tracking = True
    options = (
        Option(("--w-space",), dict(action="store_true", default=False, help="gan: optimise W instead of W+")),
        Option(("--truncation",), dict(type=float, default=None, help="gan: truncation psi")),
        Option(("--latent",), dict(default=None, help="gan: start from this latent file (from `project`) "
                                                      "instead of a seed")),
    )

    def edit(self, args: argparse.Namespace, progress: Any) -> EditOutcome:
        """See `Engine.edit`. UserError for bad points, seed, truncation, mask or setting."""
        from ..errors import UserError
        from ..limits import check_drag_config, check_point_count
        from ..overrides import parse_overrides
        from ..points import parse_drags, validate
        from ..imageio import read_mask
        from .cli import _editor, _paste_into_photo, _seed_and_psi, _use_latent

        if args.paste_back and not args.latent:
            raise UserError("--paste-back with --backend gan pastes a projected photo back: use it with --latent.")
        points = parse_drags(args.drag)
        check_point_count(len(points))
        seed, psi = _seed_and_psi(args)
        overrides: dict[str, Any] = parse_overrides(args.set)
        latent = None
        if args.latent:
            from . import latent_file

            latent = latent_file.load(args.latent)
            if not args.model and latent.model:
                args.model = latent.model  # the model the photo was projected into
        editor = _editor(args)
        if latent is not None:
            _use_latent(editor, latent)
        else:
            editor.generate(seed, psi)
        validate(points, editor.image_size)
        mask = read_mask(args.mask, tuple(editor.image_size), require_some=True) if args.mask else None
        if args.max_steps is not None:
            overrides.setdefault("max_steps", int(args.max_steps))
        try:
            config = editor.default_config(args.method, **overrides)
        except (TypeError, ValueError) as e:
            raise UserError(f"Bad drag setting in --set: {e}") from None
        try:
            check_drag_config(config)
        except UserError as e:
            raise UserError(f"Bad drag setting in --set: {e}") from None
        if latent is not None and args.paste_back:  # fail before the drag, not after it
            if not args.image:
                raise UserError("--paste-back with --latent needs --image: the photo that was projected.")
        session = editor.session(points, config, mask=mask, w_plus=not args.w_space, progress=progress)
        result = session.run()
        out_img = editor.image()
        if latent is not None and args.paste_back:
            out_img = _paste_into_photo(args, latent, out_img)
        report = {
            "model": args.model or "toy (assets/models/toy_gan)",
            "seed": None if latent is not None else seed,
            "latent": args.latent,
            "pti": bool(latent is not None and latent.weight_delta),
            "truncation_psi": None if latent is not None else psi,
            "device": str(editor.device),
            "w_space": "W" if args.w_space else "W+",
            "feature_res": session.backend.feature_res,
            "image_size": list(editor.image_size),
            "mask": args.mask,
            **result.to_dict(),
        }
        return EditOutcome(image=out_img, status=result.status, steps=result.steps,
                           final_distances=result.distances.tolist(), report=report, error=result.error)

    def toy_runner(self, device: Optional[str], model: Optional[str], overrides: dict[str, Any],
                   step_tracking: bool = True) -> ToyRunner:
        """Generated samples (seed + i, psi 0.7); each case one drag session from the method's preset
        and `overrides`, with the tracking error measured at every step when `step_tracking`."""
        from ..bench.toy import edit_mask, tracking_error
        from ..points import from_pairs
        from .checkpoints import load_generator
        from .editor import GanEditor

        editor = GanEditor(load_generator(model, device=device))

        def source(i: int, seed: int) -> np.ndarray:
            return editor.generate(seed + i, truncation_psi=0.7)

        def run(src: np.ndarray, case: Any, method: str) -> tuple[np.ndarray, str, dict[str, Any]]:
            editor.reset()
            pts = from_pairs(case.pairs())
            sess = editor.session(pts, editor.default_config(method, **overrides),
                                  mask=edit_mask(case, src.shape[0]), preview_every=1 if step_tracking else 0)
            errors: list[Optional[float]] = []
            for rec in sess.frames(every=1):
                if step_tracking:  # the preview is the image of the state the handles were tracked on
                    errors.append(tracking_error(case, rec.handles, sess.last_preview))
            res = sess.run()
            return editor.image(), res.status, {"handles": res.handles.tolist(), "steps": res.steps,
                                                "pushed_steps": res.pushed_steps,
                                                "step_tracking_error_px": errors if step_tracking else None}

        return source, run, {"model": model or "bundled toy GAN", "truncation_psi": 0.7}
