"""Speed of StableDrag-Diff at the real SD 1.5 architecture, with random weights.

`diffusion_speed()` builds the SD 1.5 UNet, VAE and CLIP text encoder at full width
(`stabledrag.diffusion.tiny.sd15_configs`, random weights; a tiny tokenizer) and times the real
code paths, per phase:

- `lora_step_s`: one identity-LoRA training step (`stabledrag.diffusion.lora.train_identity_lora`, rank 16,
  batch `lora_batch`: 4 as DragDiffusion on GPU, 1 on CPU to stay within minutes);
- `inversion_step_s`: one DDIM inversion step (UNet forward, no grad);
- `drag_step_cut_s` / `drag_step_full_s`: one drag iteration (features + tracking + motion loss +
  backward + Adam) with the UNet forward cut after the feature block, and with the whole UNet run
  (same loss: the cut changes only the work, not the result); `drag_step_mask_s`: with a mask
  (full forward + the one-step-denoised latent term, DragDiffusion's masked case);
- `tracker_fit_s` / `tracker_track_s`: the discriminative tracker's one-off fit and per-step track;
- `denoise_step_s`: one DDIM denoising step of the [source, dragged] batch with reference-latent
  control;
- `vae_encode_s` / `vae_decode_s`;
- `peak_memory_mb`: peak resident memory (CPU, whole process) or peak allocated CUDA memory,
  after each phase (`bench.measure`).

Each per-step time is the best of `steps` repetitions after an untimed first one (set-up,
warm-up); the three drag variants are stepped in turn so that load from other processes hits
them alike. Wall-clock times on a shared CPU still include waiting for other processes
(`phases_process_cpu_s` shows this process's own CPU seconds). Only the timings mean anything
(the weights are random). The result is a JSON-ready dict.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from ..diffusion.presets import diffusion_defaults
from ..device import choose
from ..drag import DragSession
from ..points import from_pairs
from ..progress import Progress
from .measure import peak_mb, reset_peak, sync, timed

log = logging.getLogger(__name__)


def _best_after_first(xs: list[float]) -> float:
    # The first repetition holds set-up work (adapter creation, first tracking-free drag step);
    # of the rest the fastest is the one least disturbed by other processes.
    xs = xs[1:] or xs
    return min(xs) if xs else float("nan")


class _StepClock:
    """A progress callback recording wall and process-CPU time between consecutive reports."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._last: Optional[tuple[float, float]] = None

    def __call__(self, p: Progress) -> None:
        sync(self.device)
        now = (time.perf_counter(), time.process_time())
        if self._last is not None and p.step > 0:
            self.wall.append(now[0] - self._last[0])
            self.cpu.append(now[1] - self._last[1])
        self._last = now

    def per_step(self) -> tuple[float, float]:
        """Best (wall, process-CPU) seconds per step, after the first step."""
        return _best_after_first(self.wall), _best_after_first(self.cpu)


def build_sd15_pipeline(device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A random-weight `StableDiffusionPipeline` with SD 1.5's full-width UNet, VAE and text encoder
    (tiny tokenizer), DDIM scheduler, on `device` in `dtype`."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..diffusion.tiny import build_tiny_tokenizer, sd15_configs

    cfgs = sd15_configs()
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfgs["unet"])
        vae = AutoencoderKL(**cfgs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**cfgs["text_encoder"]))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**cfgs["scheduler"]), safety_checker=None,
                                   feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    for module in (unet, vae, text_encoder):
        module.eval()
        module.requires_grad_(False)
    # (.to(dtype=float32) on a float32 model only makes diffusers warn.)
    pipe.to(device=device, dtype=None if dtype == torch.float32 else dtype)
    return pipe


def _test_image(size: int) -> Image.Image:
    yy, xx = np.mgrid[:size, :size]
    arr = np.stack([xx * 255 // size, yy * 255 // size, 128 + 0 * xx], -1).astype(np.uint8)
    arr[(xx - size // 2) ** 2 + (yy - size // 2) ** 2 < (size // 6) ** 2] = (250, 200, 40)
    return Image.fromarray(arr)


def _drag_steps(pipe: Any, scheduler: Any, z_t: torch.Tensor, t: int, emb: torch.Tensor, size: int,
                steps: int, device: torch.device, method: str = "stabledrag") -> dict[str, dict[str, float]]:
    """Seconds per drag iteration in three variants — "cut" (UNet stopped after the feature block),
    "full" (whole UNet, same loss) and "mask" (whole UNet + the masked one-step-latent term) —
    stepped in turn so that load from other processes hits all three alike. Each gets the
    best of `steps` timed iterations after an untimed first one (which has no tracking), plus
    the tracker's fit and mean per-step track time."""
    from ..diffusion.backend import DiffusionBackend

    c = size / 2
    points = from_pairs([((c, c), (c + size / 8, c)), ((c - size / 6, c - size / 6), (c - size / 6, c))])
    # stop_distance 0: never stop early, so every timed step does the full work.
    config = diffusion_defaults(method, max_steps=steps + 1, stop_distance=0.0)
    mask = np.zeros((size, size), bool)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = True
    variants = {"cut": dict(cut_forward=True), "full": dict(cut_forward=False), "mask": dict(mask=mask)}
    sessions, wall, cpu = {}, {}, {}
    for name, kw in variants.items():
        backend = DiffusionBackend(pipe, scheduler, z_t, t, emb, (size, size), "up_blocks.2", preview_decode=False,
                                   **kw)
        sessions[name] = DragSession(backend, points, config)
        wall[name], cpu[name] = [], []
    for _ in range(steps + 1):
        for name, session in sessions.items():
            dt, dc, rec = timed(session.step, device)
            if rec is not None:
                wall[name].append(dt)
                cpu[name].append(dc)
    out = {}
    for name, session in sessions.items():
        timings = session.result().timings
        out[name] = {"step_s": _best_after_first(wall[name]), "step_cpu_s": _best_after_first(cpu[name]),
                     "fit_s": timings["fit"], "track_s": timings["track"] / max(1, len(wall[name]) - 1)}
    return out


def diffusion_speed(size: Optional[int] = None, steps: int = 3, device: Optional[str] = None,
                    lora_batch: Optional[int] = None, tiny: bool = False,
                    dtype: Optional[str] = None) -> dict[str, Any]:
    """Time every StableDrag-Diff phase at SD 1.5's architecture (random weights).

    size: image side (default 512 on CUDA, 256 on CPU); steps: timed repetitions per phase (1-3 on
    a CPU keeps the whole run within a few minutes); device: "cpu", "cuda", ... (default: CUDA if
    available); lora_batch: LoRA batch (default 4 on CUDA, 1 on CPU); tiny: use the tiny test
    architecture instead of SD 1.5 (to check the benchmark itself quickly); dtype: weights dtype
    (None: `stabledrag.device.choose`'s default).
    Returns a JSON-ready dict of per-phase seconds, ratios and peak memory.
    """
    from ..diffusion.attention import reference_attention
    from ..diffusion.inversion import (InversionConfig, ddim_denoise, ddim_invert, decode_latent, encode_image,
                                       encode_prompt, make_schedulers)
    from ..diffusion.lora import IdentityLoraConfig, load_lora, save_lora, train_identity_lora

    dev, dtype = choose(device, dtype)
    size = int(size or (512 if dev.type == "cuda" else 256))
    if size % 64:
        raise ValueError(f"size must be a multiple of 64, got {size}")
    steps = max(1, int(steps))
    lora_batch = int(lora_batch or (4 if dev.type == "cuda" else 1))
    reset_peak(dev)
    t0 = time.perf_counter()
    if tiny:
        from ..diffusion.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline(image_size=size, dtype=dtype, device=dev)
    else:
        pipe = build_sd15_pipeline(dev, dtype)
    build_s = time.perf_counter() - t0
    image = _test_image(size)
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}
    memory: dict[str, Optional[float]] = {}

    # LoRA: `steps + 1` training steps; the first interval also holds the set-up.
    clock = _StepClock(dev)
    lora = train_identity_lora(pipe, image, "a photo", IdentityLoraConfig(steps=steps + 1, batch_size=lora_batch,
                                                                            resolution=size), progress=clock)
    phases["lora_step_s"], cpu["lora_step_s"] = clock.per_step()
    memory["after_lora"] = peak_mb(dev)
    # The identity LoRA stays on the UNet for every later phase, as in a real edit (peft layers
    # add work to each attention projection).
    with tempfile.TemporaryDirectory() as tmp:
        save_lora(lora, tmp)
        load_lora(pipe, tmp)

    # Inversion: run `steps + 1` of the 50 inverse steps.
    emb = encode_prompt(pipe, "a photo")
    phases["vae_encode_s"], cpu["vae_encode_s"], latent = timed(lambda: encode_image(pipe.vae, image), dev)
    inv_cfg = InversionConfig(num_steps=50, strength=(steps + 1) / 50)
    clock = _StepClock(dev)
    z_t, t = ddim_invert(pipe.unet, pipe.scheduler.config, latent, emb, inv_cfg, progress=clock)
    phases["inversion_step_s"], cpu["inversion_step_s"] = clock.per_step()
    memory["after_inversion"] = peak_mb(dev)

    # Drag steps at the timestep reached, three ways.
    scheduler, _ = make_schedulers(pipe.scheduler.config, inv_cfg)
    drag = _drag_steps(pipe, scheduler, z_t, t, emb, size, steps, dev)
    phases.update(drag_step_cut_s=drag["cut"]["step_s"], drag_step_full_s=drag["full"]["step_s"],
                  drag_step_mask_s=drag["mask"]["step_s"], tracker_fit_s=drag["cut"]["fit_s"],
                  tracker_track_s=drag["cut"]["track_s"])
    cpu.update(drag_step_cut_s=drag["cut"]["step_cpu_s"], drag_step_full_s=drag["full"]["step_cpu_s"],
               drag_step_mask_s=drag["mask"]["step_cpu_s"])
    memory["after_drag"] = peak_mb(dev)

    # Denoising [source, dragged] with source K/V in up_blocks.2-3.
    den_cfg = InversionConfig(num_steps=50, strength=(steps + 1) / 50)
    clock = _StepClock(dev)
    batch = torch.cat([z_t, z_t + 0.01 * torch.randn_like(z_t)])
    with reference_attention(pipe.unet, "up_blocks.2"):
        final = ddim_denoise(pipe.unet, pipe.scheduler.config, batch, emb, den_cfg, progress=clock)
    phases["denoise_step_s"], cpu["denoise_step_s"] = clock.per_step()
    with torch.no_grad():
        phases["vae_decode_s"], cpu["vae_decode_s"], _ = timed(lambda: decode_latent(pipe.vae, final[1:]), dev)
    memory["after_denoise"] = peak_mb(dev)

    phases = {k: round(v, 4) for k, v in phases.items()}
    cpu = {k: round(v, 4) for k, v in cpu.items()}
    result = {
        "benchmark": "speed_diffusion",
        "architecture": "tiny test model" if tiny else "SD 1.5 (UNet 860M, VAE 84M, CLIP-L text 123M), random weights",
        "device": str(dev),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "platform": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "size": size,
        "latent": size // 8,
        "feature_map": [pipe.unet.config.block_out_channels[1], size // 2, size // 2],
        "timed_steps": steps,
        "lora_batch": lora_batch,
        "build_s": round(build_s, 2),
        "phases_s": phases,
        "phases_process_cpu_s": cpu if dev.type == "cpu" else None,
        "ratios": {
            "cut_vs_full_drag_step": round(phases["drag_step_cut_s"] / phases["drag_step_full_s"], 3),
            "cut_vs_full_drag_step_cpu": round(cpu["drag_step_cut_s"] / cpu["drag_step_full_s"], 3)
            if dev.type == "cpu" else None,
            "tracker_track_pct_of_drag_step": round(100 * phases["tracker_track_s"] / phases["drag_step_cut_s"], 2),
            "tracker_fit_pct_of_drag_step": round(100 * phases["tracker_fit_s"] / phases["drag_step_cut_s"], 2),
        },
        "estimate_default_edit_s": round(
            80 * phases["lora_step_s"] * (4 / lora_batch) + 35 * phases["inversion_step_s"]
            + 80 * phases["drag_step_cut_s"] + 35 * phases["denoise_step_s"], 1),
        "peak_memory_mb": memory,
        "note": "wall-clock on this machine; on a shared CPU other processes inflate it "
                "(phases_process_cpu_s: this process's CPU seconds, all threads). "
                "estimate_default_edit_s = 80 LoRA steps (batch 4, scaled linearly) + 35 inversion + "
                "80 drag (cut) + 35 denoise steps.",
    }
    log.info("diffusion speed: %s", result)
    return result
