"""`python -m stabledrag bench gpu`: everything a GPU should be checked for, in one run, as JSON.

On a CUDA device, in half precision (`stabledrag.device.choose`: bf16 where native, else fp16):
- `diffusion_phases`: SD 1.5-shaped random weights at 512 px (`speed_diffusion.diffusion_speed`):
  LoRA step (batch 4), inversion step, drag step cut / full / with mask, denoise step, VAE, peak
  memory after each phase;
- `diffusion_edit`: one whole edit with the default settings (80 LoRA steps, 50-step DDIM at
  strength 0.7, <= 80 drag steps) through `DiffusionEditor`, the same edit repeated (LoRA and
  inversion cached), and the same edit without the identity LoRA: `lora_cost` gives the time
  ratios with / without it for inversion, a drag step and denoising (the LoRA is fused into the
  weights after training, so they should be ~1); peak memory;
- `gan`: StyleGAN2 config-F 512 and 1024 drag steps for stabledrag / baseline / draggan
  (`speed_gan.measure`).
`--small` is a CPU dry run of the same script (tiny models, 64 px, a few steps) that checks the
script itself in seconds; its numbers mean nothing. Weights are random: only timings and memory
mean anything.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from typing import Any, Optional

import torch

from ..device import choose
from ..errors import UserError
from .measure import peak_mb, reset_peak, timed

log = logging.getLogger(__name__)


def _edit_phase_ratios(with_lora: dict[str, Any], without: dict[str, Any]) -> dict[str, Optional[float]]:
    """with / without LoRA seconds for inversion, one drag step and denoising."""
    def per_step(rep: dict[str, Any]) -> float:
        return rep["timings"]["drag"] / max(1, rep["drag"]["steps"])

    pairs = {"inversion": (with_lora["timings"]["inversion"], without["timings"]["inversion"]),
             "drag_step": (per_step(with_lora), per_step(without)),
             "denoise": (with_lora["timings"]["denoise"], without["timings"]["denoise"])}
    return {k: (round(a / b, 3) if b > 0 else None) for k, (a, b) in pairs.items()}


def diffusion_edit_check(small: bool, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """One whole edit, the same edit again (cached), and the edit without the identity LoRA."""
    from ..diffusion.editor import DiffusionEditor, edit_config_for
    from ..points import from_pairs
    from .speed_diffusion import _test_image, build_sd15_pipeline

    size = 64 if small else 512
    if small:
        from ..diffusion.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline(image_size=size, dtype=dtype, device=device)
    else:
        pipe = build_sd15_pipeline(device, dtype)
    cfg = edit_config_for("stabledrag")
    if small:
        cfg = cfg.with_overrides({"lora.steps": 1, "lora.batch_size": 1, "inversion.num_steps": 4,
                                  "max_steps": 2})
    image = _test_image(size)
    points = from_pairs([((0.4 * size, 0.5 * size), (0.5 * size, 0.5 * size))])
    out: dict[str, Any] = {"size": size, "config": cfg.to_dict()}
    with tempfile.TemporaryDirectory() as cache:
        editor = DiffusionEditor(pipeline=pipe, lora_cache_dir=cache)
        runs = {}
        for name, run_cfg in (("first", cfg), ("repeat", cfg), ("no_lora", cfg.with_overrides({"lora.steps": 0}))):
            reset_peak(device)
            wall_s, _, res = timed(lambda: editor.edit(image, points, config=run_cfg), device)
            runs[name] = {"wall_s": round(wall_s, 3),
                          "timings": {k: round(v, 4) for k, v in res.timings.items()},
                          "cached": res.cached, "drag": {"status": res.drag.status, "steps": res.drag.steps},
                          "peak_memory_mb": peak_mb(device)}
    out["runs"] = runs
    out["lora_cost"] = _edit_phase_ratios(runs["first"], runs["no_lora"])
    return out


def gpu_check(small: bool = False, device: Optional[str] = None, dtype: Optional[str] = None,
              steps: int = 3) -> dict[str, Any]:
    """Run the whole check (see the module docstring) and return a JSON-ready dict.

    small: CPU dry run with tiny models (device defaults to "cpu"). device / dtype: as
    `stabledrag.device.choose`. steps: timed repetitions per phase.
    Raises UserError when the full check is asked for without a CUDA device.
    """
    from ..gan.networks import GeneratorConfig
    from .speed_diffusion import diffusion_speed
    from .speed_gan import measure

    dev, dt = choose(device if device is not None else ("cpu" if small else None), dtype)
    if not small and dev.type != "cuda":
        raise UserError("bench gpu needs a CUDA device (it times SD 1.5 at 512 px in half precision); "
                        "run it with --small for a CPU dry run of the script")
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "gpu_check",
        "small": small,
        "device": str(dev),
        "dtype": str(dt).removeprefix("torch."),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "compute_capability": list(torch.cuda.get_device_capability(dev)) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "platform": platform.machine(),
    }
    result["diffusion_phases"] = diffusion_speed(size=64 if small else 512, steps=steps, device=str(dev),
                                                 lora_batch=1 if small else 4, tiny=small,
                                                 dtype=str(dt).removeprefix("torch."))
    result["diffusion_edit"] = diffusion_edit_check(small, dev, dt)
    if small:
        gan_cfg = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=64, channel_base=1024, channel_max=32,
                                  mapping_layers=2)
        result["gan"] = [measure(64, dev, steps=steps, config=gan_cfg)]
    else:
        result["gan"] = [measure(r, dev, steps=steps) for r in (512, 1024)]
    result["total_s"] = round(time.perf_counter() - t0, 1)
    if dev.type == "cuda":
        result["max_memory_allocated_mb"] = peak_mb(dev)  # since the last reset_peak (in the last GAN `measure`)
    return result
