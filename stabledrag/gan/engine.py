"""The StyleGAN2 engine as the CLI, `bench toy` and the web app see it (`stabledrag.engine`:
`Engine`, `AppEngine`, `PhotoProjector`).

`edit`: generate `G(seed)` (truncation psi) or start from a projected latent file, drag with
`GanEditor` (DragGAN, Pan et al. 2023 / StableDrag-GAN, Cui et al. 2024) and return the image
(pasted back into the photo with `--paste-back --latent`); settings: the method's preset, then the
model's own recommended ones (`stabledrag_settings.json` in its folder), then the user's. For the
web app: the GAN menu (official `.pkl`, native `.safetensors` files and folders), loading a
generator, its editor (with a projected photo's tuned weights), the model's recommended settings
and drag config, and photo projection (`stabledrag.gan.projection`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..engine import EditOutcome, ModelChoice, Option, Projection, ToyRunner
from ..paths import TOY_GAN_DIR

TOY_GAN_LABEL = "Toy faces (bundled)"


def drag_toy_case(editor: Any, case: Any, config: Any, step_tracking: bool = True
                  ) -> tuple[np.ndarray, str, dict[str, Any]]:
    """One `bench toy` case (`bench.toy.ToyCase`) dragged by `editor` (a `GanEditor`, reset to its
    start image first) with `config` (`DragConfig`), inside the case's editable capsule.

    Returns (the edited image `H x W x 3` uint8, the drag's status, the outcome for
    `bench.toy.score`: final tracker handles in image px, steps, pushed steps and, with
    `step_tracking`, the tracking error at every step (tracker vs detector on the previewed image
    of the state the handles were tracked on; costs a preview per step)."""
    from ..bench.toy import edit_mask, tracking_error
    from ..points import from_pairs

    editor.reset()
    sess = editor.session(from_pairs(case.pairs()), config, mask=edit_mask(case, editor.image_size[1]),
                          preview_every=1 if step_tracking else 0)
    errors: list[Optional[float]] = []
    for rec in sess.frames(every=1):
        if step_tracking:
            errors.append(tracking_error(case, rec.handles, sess.last_preview))
    res = sess.run()
    return editor.image(), res.status, {"handles": res.handles.tolist(), "steps": res.steps,
                                        "pushed_steps": res.pushed_steps,
                                        "step_tracking_error_px": errors if step_tracking else None}


class GanEngine:
    """`--backend gan`: drag points on a StyleGAN2 sample (by seed) or a projected photo."""

    no_model_message = ("No GAN model is available: the bundled toy-faces model (assets/models/toy_gan/) has not "
                        "been built yet and no checkpoint was found in the models folder. Start the app with "
                        "--gan-model PATH (an official StyleGAN2 .pkl or a .safetensors model), or put one in "
                        "./models.")

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
        """See `Engine.edit`: the drag config is the method's preset (`gan_defaults`), then the
        model's own recommended settings (`presets.recommended_overrides` of `--model`, or of the
        model a `--latent` file names; the bundled toy GAN when none; for a `--latent` file from
        `project` its settings for photos, `edit_photo`, over them), then `--max-steps` and `--set`
        (the user's win). UserError for bad points, seed, truncation, mask, setting or a malformed
        settings file."""
        from ..errors import UserError
        from ..limits import check_point_count, checked_config
        from ..overrides import parse_overrides
        from ..points import parse_drags, validate
        from ..imageio import read_mask
        from .cli import _editor, _paste_into_photo, _seed_and_psi, _use_latent
        from .presets import recommended_overrides

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
        # the model's own settings (its folder's stabledrag_settings.json) under the user's --set / --max-steps
        # a file from `project` (not a bare .npy W+ array) is a projected photo: the model's `edit_photo` too
        recommended = recommended_overrides(args.model, photo=latent is not None and bool(latent.model_key))
        editor = _editor(args, recommended)
        if latent is not None:
            _use_latent(editor, latent)
        else:
            editor.generate(seed, psi)
        validate(points, editor.image_size)
        mask = read_mask(args.mask, tuple(editor.image_size), require_some=True) if args.mask else None
        if args.max_steps is not None:
            overrides.setdefault("max_steps", int(args.max_steps))
        config = checked_config(lambda: editor.default_config(args.method, **overrides), "--set")
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
            "model_settings": recommended,
            **result.to_dict(),
        }
        return EditOutcome(image=out_img, status=result.status, steps=result.steps,
                           final_distances=result.distances.tolist(), report=report, error=result.error)

    def toy_runner(self, device: Optional[str], model: Optional[str], overrides: dict[str, Any],
                   step_tracking: bool = True) -> ToyRunner:
        """Generated samples (seed + i, psi 0.7); each case one drag session from the method's preset,
        the model's own recommended settings (`presets.recommended_overrides`), then `overrides`,
        with the tracking error measured at every step when `step_tracking`."""
        from ..limits import checked_config
        from .checkpoints import load_generator
        from .editor import GanEditor
        from .presets import recommended_overrides

        recommended = recommended_overrides(model)
        editor = GanEditor(load_generator(model, device=device), recommended=recommended)

        def source(i: int, seed: int) -> np.ndarray:
            return editor.generate(seed + i, truncation_psi=0.7)

        def run(src: np.ndarray, case: Any, method: str) -> tuple[np.ndarray, str, dict[str, Any]]:
            cfg = checked_config(lambda: editor.default_config(method, **overrides), "--set")
            return drag_toy_case(editor, case, cfg, step_tracking)

        return source, run, {"model": model or "bundled toy GAN", "truncation_psi": 0.7,
                             "model_settings": recommended}

    # -- the web app (`AppEngine`) --------------------------------------------------------------
    def claim(self, path: Path) -> int:
        """2 for a native GAN folder or `.safetensors` file (by its config), 1 for a `.pkl`, else 0."""
        from .checkpoints import is_native_dir, is_native_file

        if path.is_dir():
            return 2 if is_native_dir(path) else 0
        if path.suffix == ".safetensors":
            return 2 if is_native_file(path) else 0
        return 1 if path.suffix == ".pkl" else 0

    def model_choices(self, named: Optional[str], found: Sequence[Path], on_gpu: bool) -> list[ModelChoice]:
        """`named` (`--gan-model`, `~` expanded), the bundled toy model (if built), then the
        models-folder entries."""
        out = []
        if named:
            path = Path(named).expanduser()
            out.append(ModelChoice(f"{path.name} (--gan-model)", str(path.resolve())))
        if (TOY_GAN_DIR / "model.safetensors").is_file():
            out.append(ModelChoice(TOY_GAN_LABEL, str(TOY_GAN_DIR), toy=True))
        out += [ModelChoice(f"{p.name} (models folder)", str(p.resolve())) for p in found]
        return out

    def load(self, spec: str, device: Any, dtype: Any = None, cache_dir: Optional[str] = None) -> Any:
        """The `Generator` (`checkpoints.load_generator`, cached per file and device; float32)."""
        from .checkpoints import load_generator

        return load_generator(spec, device)

    def warm_up(self, model: Any) -> None:
        """Nothing: `load` loads the generator at once."""

    def editor(self, model: Any, weight_delta: Optional[dict[str, np.ndarray]] = None) -> Any:
        """A `GanEditor` on the generator `model`, with a projected photo's PTI `weight_delta`."""
        from .editor import GanEditor

        ed = GanEditor(model)
        if weight_delta:
            import torch

            ed.set_weight_delta({k: torch.from_numpy(v) for k, v in weight_delta.items()})
        return ed

    def recommended(self, spec: Optional[str], photo: bool = False) -> dict[str, Any]:
        """`presets.recommended_overrides(spec, photo)`: a model folder's `stabledrag_settings.json`
        `edit` entry (with `photo`, its `edit_photo` entry over it: for a projected photo)
        (`DragConfig` fields; `{}` without one or for a single-file model). UserError for a
        malformed file."""
        from .presets import recommended_overrides

        return recommended_overrides(spec, photo=photo)

    def edit_config(self, method: str, overrides: dict[str, Any],
                    image_size: Optional[tuple[int, int]] = None) -> Any:
        """`gan_defaults(method, image height, **overrides)` (radii scale with the height)."""
        from .presets import gan_defaults

        return gan_defaults(method, image_size[1] if image_size else 512, **overrides)

    # -- photos (`PhotoProjector`) -------------------------------------------------------------
    def align_photo(self, model: Any, photo: np.ndarray, crop: Optional[list[int]] = None
                    ) -> tuple[np.ndarray, list[int]]:
        """`projection.align_image` to the generator's resolution (or `crop` again). UserError for a
        class-conditional generator."""
        from ..errors import UserError
        from .projection import CropBox, align_image

        if crop is not None:
            box = CropBox.from_list(crop)
            aligned, _ = align_image(photo, box.resolution, (box.left, box.top, box.right, box.bottom))
            return aligned, box.to_list()
        if model.c_dim > 0:
            raise UserError("This generator is class-conditional; photos can be projected into unconditional "
                            "models only.")
        aligned, box = align_image(photo, model.img_resolution)
        return aligned, box.to_list()

    def projection_config(self, spec: Optional[str] = None, pti: bool = True, steps_scale: float = 1.0) -> Any:
        """`projection.projection_config(spec)` (defaults < the model's recommended `project`
        settings, e.g. the toy GAN's Z start) with the phase steps times `steps_scale`; `pti=False`
        skips pivotal tuning. UserError naming the model's settings file when it is malformed."""
        from .projection import projection_config

        cfg = projection_config(spec)
        scaled = {k: max(0, int(round(getattr(cfg, k) * steps_scale)))
                  for k in ("w_steps", "wplus_steps", "pti_steps")}
        if scaled["w_steps"] + scaled["wplus_steps"] == 0:  # a 1-step phase scaled to 0: keep one step
            scaled["w_steps" if cfg.w_steps else "wplus_steps"] = 1
        if not pti:
            scaled["pti_steps"] = 0
        return dataclasses.replace(cfg, **scaled)

    def refine_config(self, config: Any, pti: bool) -> Any:
        """`projection.refine_config`: with PTI, the weights only, at half the PTI step and with the
        focus weight on where the image is still off; without it W+ at a quarter of the step size."""
        from .projection import refine_config

        return refine_config(config, pti)

    def project(self, model: Any, image: np.ndarray, config: Any, crop: list[int], *,
                start: Optional[Projection] = None, progress: Any = None, cancel: Any = None,
                preview_every: int = 0) -> Projection:
        """`projection.project` (W/Z, W+, pivotal tuning), from `start` when given. A start that had
        pivotal tuning, continued with it ("More steps"), keeps its latent-alone scores (the latent
        does not move then; the continued run would report the start's tuned image as "before")."""
        import torch

        from .projection import CropBox, project

        init = None
        if start is not None:
            init = types.SimpleNamespace(ws=torch.from_numpy(start.latent), w=torch.from_numpy(start.latent[:, 0]),
                                         weight_delta={k: torch.from_numpy(v) for k, v in start.weight_delta.items()})
        res = project(model, image, config, crop=CropBox.from_list(crop), progress=progress, cancel=cancel,
                      preview_every=preview_every, init=init)
        metrics = res.metrics()
        if start is not None and start.metrics.get("pti") and config.pti_steps > 0 and config.wplus_steps == 0:
            metrics.update({k: start.metrics[k] for k in ("psnr_before_pti", "ssim_before_pti") if k in start.metrics})
        return Projection(latent=res.ws.numpy(), image=res.image,
                          weight_delta={k: v.numpy() for k, v in res.weight_delta.items()}, metrics=metrics)

    def paste_back(self, photo: np.ndarray, image: np.ndarray, crop: list[int]) -> np.ndarray:
        """`projection.paste_back`."""
        from .projection import CropBox, paste_back

        return paste_back(photo, image, CropBox.from_list(crop))
