"""Speed of StableDrag-GAN at the official 512 / 1024 architectures, with random weights.

`gan_speed()` builds generators shaped like the official FFHQ/AFHQ models (channel_base 32768,
channel_max 512, 8 mapping layers, conv_clamp 256) and times, per resolution and device:

- `forward_image_s`: a full generator forward (no grad), i.e. one rendered image;
- `forward_features_s`: the drag forward alone (synthesis up to the drag block + resize, no grad);
- `session_start_s`: starting a drag (step-0 features + tracker fit);
- `drag_step_s`: one drag iteration (forward with features + tracking + motion loss +
  backward + Adam), mean over the timed steps after the first (which has no tracking);
- `preview_s`: finishing the image from the drag block for a live preview;
- `peak_memory_mb`: peak resident memory (CPU) or peak allocated CUDA memory during the run.

Wall-clock times on a shared CPU include waiting for other processes; `drag_step_process_cpu_s`
(this process's CPU seconds per step, all threads) shows how much of it was real work.

Weights are random, so only the timings mean anything. The result is a JSON-ready dict.
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Any, Optional, Sequence

import torch

from ..gan.presets import gan_defaults
from ..gan.editor import draggan_feature_res
from ..drag import DragSession
from ..gan.backend import GanBackend
from ..gan.networks import Generator, GeneratorConfig
from ..points import from_pairs
from .measure import peak_mb, reset_peak, timed

log = logging.getLogger(__name__)


def official_config(resolution: int) -> GeneratorConfig:
    """The architecture of the official 512/1024 StyleGAN2 generators (config-F widths)."""
    return GeneratorConfig(z_dim=512, w_dim=512, img_resolution=resolution, mapping_layers=8,
                           channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)


def measure(resolution: int, device: torch.device, steps: int = 3,
            methods: Sequence[str] = ("stabledrag", "baseline", "draggan"), seed: int = 0,
            config: Optional[GeneratorConfig] = None) -> dict[str, Any]:
    """Timings for one resolution on one device (see the module docstring); `config` replaces the
    official architecture (e.g. a small one for a dry run). "draggan" drags on DragGAN's block."""
    torch.manual_seed(seed)
    reset_peak(device)
    G = Generator(config or official_config(resolution)).to(device)
    res: dict[str, Any] = {
        "resolution": resolution,
        "device": str(device),
        "num_ws": G.num_ws,
        "parameters_M": round(sum(p.numel() for p in G.parameters()) / 1e6, 2),
        "feature_res": G.config.drag_feature_res,
        "feature_channels": G.config.channels(G.config.drag_feature_res),
    }
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, device=device), None, truncation_psi=0.7)
        G.synthesis(ws)  # warm-up
        res["forward_image_s"], _, _ = timed(lambda: G.synthesis(ws), device, steps)
    backend = GanBackend(G, ws)
    with torch.no_grad():
        res["forward_features_s"], _, out = timed(lambda: backend.features(backend.initial_state()), device, steps)
        res["preview_s"], _, _ = timed(lambda: backend.preview(None, out), device, steps)
    out = None  # free the features (not `del`: the lambdas above close over these names)

    c = resolution / 2
    points = from_pairs([((c, c), (min(c + max(0.05 * resolution, 3.0), resolution - 1.0), c))])
    res["methods"] = {}
    for method in methods:
        config = gan_defaults(method, resolution, max_steps=steps + 1)

        def start_session() -> DragSession:
            feature_res = draggan_feature_res(G) if method == "draggan" else None
            return DragSession(GanBackend(G, ws, feature_res=feature_res), points, config)

        start, _, session = timed(start_session, device)
        times, cpu_times = [], []
        for _ in range(steps + 1):
            dt, dc, rec = timed(session.step, device)
            if rec is None:
                break
            times.append(dt)
            cpu_times.append(dc)
        kept = times[1:] or times  # the first step has no tracking
        kept_cpu = cpu_times[1:] or cpu_times
        res["methods"][method] = {
            "session_start_s": round(start, 4),
            "drag_step_s": round(sum(kept) / max(1, len(kept)), 4),
            # CPU seconds of this process per step (all threads): on a shared machine, divide by
            # the thread count for what an idle machine would take.
            "drag_step_process_cpu_s": round(sum(kept_cpu) / max(1, len(kept_cpu)), 4),
            "first_step_s": round(times[0], 4) if times else None,
            "timed_steps": len(kept),
            "phase_totals_s": {k: round(v, 4) for k, v in session.result().timings.items()},
        }
        del session
    for key in ("forward_image_s", "forward_features_s", "preview_s"):
        res[key] = round(res[key], 4)
    res["peak_memory_mb"] = peak_mb(device)
    G = backend = None  # free the model before emptying the CUDA cache
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def gan_speed(resolutions: Sequence[int] = (512, 1024), steps: int = 3, device: Optional[str] = None,
              methods: Sequence[str] = ("stabledrag", "baseline", "draggan")) -> dict[str, Any]:
    """Time the GAN drag at each resolution on CPU and, when available, CUDA (or only `device`).

    steps: timed repetitions per phase (1-3 keep a CPU run to a few minutes). Returns a
    JSON-ready dict `{"environment": {...}, "results": [per resolution and device]}`.
    """
    if device:
        devices = [torch.device(device)]
    else:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    env = {
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "steps": steps,
        "architecture": ("StyleGAN2 config-F widths (channel_base 32768, channel_max 512, 8 mapping layers), "
                         "random weights"),
    }
    results = []
    for dev in devices:
        for r in resolutions:
            log.info("timing %d px on %s", r, dev)
            results.append(measure(int(r), dev, steps=steps, methods=methods))
    return {"environment": env, "results": results}
