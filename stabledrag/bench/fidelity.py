"""`python -m stabledrag bench fidelity`: how faithful and how quick a diffusion model is on toy faces.

Three measurements on fresh toy faces (dataset seed `FACES_SEED`, never used in training), with
the model's own recommended settings (`stabledrag_settings.json`, see
`stabledrag.diffusion.recommended`) under the caller's overrides:

- `vae`: encode -> decode of `vae_faces` faces (the VAE's posterior mean);
- `round_trip`: `DiffusionEditor.reconstruct` of `round_trip_faces` faces: identity LoRA, DDIM
  inversion and the edit's denoising without a drag, i.e. what an edit gives back where nothing
  is dragged;
- `timing`: for `timing_images` faces, a first edit (an eye dragged 6 px: LoRA, inversion, drag,
  denoise) and a second drag on the same image (the other eye: LoRA and inversion come from the
  cache), wall seconds and process CPU seconds (all threads) per edit and per phase.

Each image pair is scored by `stabledrag.toy.fidelity.compare` (PSNR, mean-colour error,
detected parts within 1.5 / 2 px, no part grown or lost).
"""

from __future__ import annotations

import platform
import time
from typing import Any, Optional

import numpy as np
import torch

FACES_SEED = 424_242


def fidelity_bench(model: Optional[str] = None, device: Optional[str] = None, vae_faces: int = 200,
                   round_trip_faces: int = 10, timing_images: int = 3,
                   overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Run the three measurements (module docstring) and return a JSON-ready dict.
    `model`: a diffusers folder or hub id (None: the default model, the bundled toy SD);
    `overrides`: `DiffusionEditConfig.with_overrides` settings over the model's own.
    Raises UserError / ModelUnavailableError from the editor (bad settings, missing model)."""
    from PIL import Image

    from ..diffusion.editor import DiffusionEditor
    from ..diffusion.inversion import decode_latent, encode_image, tensor_to_uint8
    from ..points import from_pairs
    from ..toy.dataset import ToyFaces
    from ..toy.detect import detect
    from ..toy.fidelity import compare, summarise_fidelity

    editor = DiffusionEditor(model=model, device=device)
    cfg = editor.default_config("stabledrag", overrides)
    pipe = editor.pipe
    faces = ToyFaces(FACES_SEED, size=int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor))
    t_all = time.perf_counter()

    vae_scores = []
    for i in range(vae_faces):
        img = faces[i][0]
        with torch.no_grad():
            rec = tensor_to_uint8(decode_latent(pipe.vae, encode_image(pipe.vae, Image.fromarray(img))))
        vae_scores.append(compare(img, rec))

    rt_scores, rt_times = [], []
    for i in range(round_trip_faces):
        img, _, prompt = faces[vae_faces + i]
        out, timings = editor.reconstruct(Image.fromarray(img), prompt, cfg)
        rt_scores.append(compare(img, np.asarray(out)))
        rt_times.append(timings)

    timing = []
    for i in range(timing_images):
        img, _, prompt = faces[vae_faces + round_trip_faces + i]
        det = detect(img)
        if not det.complete:
            continue
        row: dict[str, Any] = {"image": vae_faces + round_trip_faces + i}
        for name, eye in (("first_edit", det.left_eye), ("second_drag", det.right_eye)):
            pts = from_pairs([(eye, (eye[0] + 6.0, eye[1]))])
            c0, w0 = time.process_time(), time.perf_counter()
            res = editor.edit(Image.fromarray(img), pts, prompt=prompt, config=cfg)
            row[name] = {"seconds": round(time.perf_counter() - w0, 3),
                         "cpu_seconds": round(time.process_time() - c0, 3),
                         "phases": {k: round(v, 3) for k, v in res.timings.items()}, "cached": res.cached,
                         "drag_steps": res.drag.steps, "status": res.drag.status}
        timing.append(row)

    def mean_of(key: str) -> Optional[float]:
        vals = [r[key]["seconds"] for r in timing]
        return round(float(np.mean(vals)), 3) if vals else None

    def mean_cpu(key: str) -> Optional[float]:
        vals = [r[key]["cpu_seconds"] for r in timing]
        return round(float(np.mean(vals)), 3) if vals else None

    return {
        "benchmark": "fidelity", "model": model or "default (bundled toy SD)", "faces_seed": FACES_SEED,
        "settings": cfg.to_dict(), "model_settings": editor.recommended_overrides(),
        "vae": summarise_fidelity(vae_scores),
        "round_trip": {**summarise_fidelity(rt_scores),
                       "seconds": {k: round(float(np.mean([t[k] for t in rt_times])), 3) for k in rt_times[0]}
                       if rt_times else {}},
        "timing": {"first_edit_seconds": mean_of("first_edit"), "first_edit_cpu_seconds": mean_cpu("first_edit"),
                   "second_drag_seconds": mean_of("second_drag"), "second_drag_cpu_seconds": mean_cpu("second_drag"),
                   "torch_threads": torch.get_num_threads(), "edits": timing},
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": str(pipe.device)},
        "seconds": round(time.perf_counter() - t_all, 1),
    }
