"""The Stable Diffusion engine as the CLI, `bench toy` and the web app see it
(`stabledrag.engine`: `Engine`, `AppEngine`).

`edit`: read the user's image (any mode and size) and optional mask, run `DiffusionEditor.edit`
(identity LoRA, DDIM inversion, drag, denoise; StableDrag-Diff, Cui et al. 2024) and return the
image at the input's size. For the web app: the Diff menu (diffusers folders, single-file
checkpoints, SD 1.5 by hub id), one lazily loading `DiffusionEditor` per model, the model's
recommended settings (`recommended.py`) and the edit config. Heavy imports (diffusers) happen
inside the methods.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..engine import EditOutcome, ModelChoice, Option, ToyRunner
from ..paths import SD15_HUB_ID, TOY_SD_DIR

TOY_SD_LABEL = "Toy faces SD (bundled)"
SD15_LABEL = "Stable Diffusion 1.5 (Hugging Face hub)"


class DiffusionEngine:
    """`--backend diffusion`: drag points on your image with a Stable Diffusion model."""

    name = "diffusion"
    no_model_message = ("No diffusion model is available: start the app with --diffusion-model (a diffusers folder, "
                        "a single-file checkpoint or a hub id), or put one in ./models.")
    help = "drag points on an image with a Stable Diffusion model (hub id, diffusers folder or single file)"
    default_cases = 24
    step_tracking = False
    options = (
        Option(("--prompt",), dict(default=None, help="diffusion: text describing the image")),
        Option(("--lora-steps",), dict(type=int, default=None, help="diffusion: identity-LoRA steps")),
        Option(("--config-dir",), dict(default=None, help="diffusion single-file checkpoints: a local diffusers "
                                                          "folder with the configs")),
        Option(("--lora",), dict(action="append", default=None, metavar="FILE[:SCALE]",
                                 help="diffusion: your own LoRA (diffusers, DragDiffusion or kohya format), fused "
                                      "into the model under the identity LoRA; repeatable; SCALE defaults to 1")),
        Option(("--dtype",), dict(default=None, choices=["auto", "fp32", "fp16", "bf16"],
                                  help="diffusion weights: auto = bf16 on GPUs with native bf16 (compute capability "
                                       ">= 8), fp16 on older GPUs, fp32 on the CPU; the env variable "
                                       "STABLEDRAG_DTYPE sets the default")),
    )

    def edit(self, args: argparse.Namespace, progress: Any) -> EditOutcome:
        """See `Engine.edit`. UserError (before the model is loaded) for a bad seed, prompt, image,
        points, mask or setting."""
        from ..limits import check_drag_config, check_point_count, check_prompt, check_seed
        from ..points import parse_drags, validate
        from ..progress import Cancelled
        from ..imageio import read_mask
        from .cli import build_config, parse_lora_args, read_image
        from .editor import DiffusionEditor
        from ..errors import UserError

        if args.seed is not None:
            check_seed(args.seed, "--seed")
        prompt = check_prompt(args.prompt or "")
        image = read_image(args.image)
        points = validate(parse_drags(args.drag), image.size)
        check_point_count(len(points))
        mask = read_mask(args.mask, image.size, require_some=True) if args.mask else None
        config = build_config(args)
        try:
            check_drag_config(config)
        except UserError as e:
            raise UserError(f"Bad setting: {e}") from None
        editor = DiffusionEditor(model=args.model, device=args.device, dtype=args.dtype,
                                 config_dir=args.config_dir, loras=parse_lora_args(args.lora or []))
        try:
            result = editor.edit(image, points, mask=mask, prompt=prompt, config=config, progress=progress)
        except Cancelled:
            raise KeyboardInterrupt from None
        drag = result.report["drag"]
        return EditOutcome(image=np.asarray(result.image.convert("RGB")), status=result.drag.status,
                           steps=result.drag.steps, final_distances=list(drag["final_distances"]),
                           report=result.report, error=result.drag.error)

    def toy_runner(self, device: Optional[str], model: Optional[str], overrides: dict[str, Any],
                   step_tracking: bool = False) -> ToyRunner:
        """Fresh toy faces (a dataset seed the bundled model never saw) with their captions as prompts;
        each case is one `DiffusionEditor.edit` from the method's preset, the model's own recommended
        settings, then `overrides`."""
        from PIL import Image

        from ..points import from_pairs
        from ..toy.dataset import ToyFaces
        from .editor import DiffusionEditor

        from ..bench.toy import edit_mask
        from ..limits import checked_config

        editor = DiffusionEditor(model=model, device=device)
        faces = ToyFaces(seed=987_654)  # a dataset seed the bundled model never saw
        prompt = {"text": ""}  # the caption of the current source image

        def source(i: int, seed: int) -> np.ndarray:
            img, _, prompt["text"] = faces[seed + i]
            return img

        def run(src: np.ndarray, case: Any, method: str) -> tuple[np.ndarray, str, dict[str, Any]]:
            cfg = checked_config(lambda: editor.default_config(method, overrides), "--set")
            pts = from_pairs(case.pairs())
            res = editor.edit(Image.fromarray(src), pts, mask=edit_mask(case, src.shape[0]),
                              prompt=prompt["text"], config=cfg)
            return np.asarray(res.image.convert("RGB")), res.drag.status, {
                "handles": res.drag.handles.tolist(), "steps": res.drag.steps,
                "pushed_steps": res.drag.pushed_steps, "step_tracking_error_px": None}

        return source, run, {"model": model or "bundled toy SD", "dataset_seed": 987_654,
                             "model_settings": editor.recommended_overrides()}

    # -- the web app (`AppEngine`) --------------------------------------------------------------
    def claim(self, path: Path) -> int:
        """2 for a diffusers folder (`model_index.json`), 1 for a `.safetensors` / `.ckpt` file, else 0."""
        if path.is_dir():
            return 2 if (path / "model_index.json").is_file() else 0
        return 1 if path.suffix in (".safetensors", ".ckpt") else 0

    def model_choices(self, named: Optional[str], found: Sequence[Path], on_gpu: bool) -> list[ModelChoice]:
        """`named` (`--diffusion-model`), SD 1.5 when `on_gpu` (the useful default there), the
        bundled toy SD (if built), the models-folder entries, SD 1.5 (the app drops the repeat)."""
        out = []
        sd15 = ModelChoice(SD15_LABEL, SD15_HUB_ID)
        if named:
            path = Path(named).expanduser()
            label = f"{path.name if path.exists() else named} (--diffusion-model)"
            out.append(ModelChoice(label, str(path.resolve()) if path.exists() else named))
        if on_gpu:
            out.append(sd15)
        if (TOY_SD_DIR / "model_index.json").is_file():
            out.append(ModelChoice(TOY_SD_LABEL, str(TOY_SD_DIR), toy=True))
        out += [ModelChoice(f"{p.name} (models folder)", str(p.resolve())) for p in found]
        out.append(sd15)
        return out

    def load(self, spec: str, device: Any, dtype: Any = None, cache_dir: Optional[str] = None) -> Any:
        """A `DiffusionEditor` for `spec`: it loads its pipeline on first use and keeps its LoRA /
        inversion caches (identity LoRAs under `cache_dir`) across edits."""
        from .editor import DiffusionEditor

        return DiffusionEditor(model=spec, device=str(device), dtype=dtype, lora_cache_dir=cache_dir)

    def warm_up(self, model: Any) -> None:
        """Load the editor's pipeline now."""
        _ = model.pipe

    def editor(self, model: Any, weight_delta: Optional[dict[str, np.ndarray]] = None) -> Any:
        """The `DiffusionEditor` itself (`load` made it). UserError for a weight delta (no such tuning)."""
        if weight_delta:
            from ..errors import UserError

            raise UserError("Tuned weights belong to a projected GAN photo; the diffusion engine has none.")
        return model

    def recommended(self, spec: Optional[str], photo: bool = False) -> dict[str, Any]:
        """`recommended.recommended_overrides(spec)`: the folder's `stabledrag_settings.json` `edit`
        entry (`{}` without one; `photo` is ignored: this engine does not project photos).
        UserError for a malformed file."""
        from .recommended import recommended_overrides

        return recommended_overrides(spec)

    def edit_config(self, method: str, overrides: dict[str, Any],
                    image_size: Optional[tuple[int, int]] = None) -> Any:
        """`editor.edit_config_for(method).with_overrides(overrides)` (a `DiffusionEditConfig`;
        `image_size` is not needed: the drag works at the model's size)."""
        from .editor import edit_config_for

        return edit_config_for(method).with_overrides(overrides)
