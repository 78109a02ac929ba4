"""Command-line options of the web app: `python app.py [--host H] [--port P] [--share] ...`.

Every model path is injectable here so tests (and users) can point the app at any local model;
the dropdowns then offer only these and the files discovered in `--models-dir`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from typing import Optional, Sequence


@dataclass
class AppOptions:
    """Settings of one app process.

    host / port: where to listen (defaults from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as on Spaces).
    share: ask Gradio for a public share link (ignored on Spaces; offline it falls back to local).
    diffusion_model: diffusers folder, single-file checkpoint or hub id offered first in the Diff tab
      (None: the bundled toy model if present, and SD 1.5).
    gan_model: StyleGAN2 `.pkl` or native checkpoint offered first in the GAN tab (None: bundled toy).
    models_dir: folder scanned for more checkpoints (`*.pkl`, `*.safetensors`, model folders).
    device: "cpu", "cuda", "cuda:1", ... (None: CUDA if available).
    dtype: diffusion weights "fp32", "fp16" or "bf16" (None: `stabledrag.device.default_dtype`,
      i.e. STABLEDRAG_DTYPE, else bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 on CPU).
    max_queue: requests waiting in the queue at most (further ones are told to retry).
    max_image_side: uploads with a longer side are scaled down to it (with a notice).
    lora_cache_dir: where identity LoRAs are cached (None: `stabledrag.diffusion.lora.default_cache_dir()`).
    preload: load the first model of each menu at start-up (always on ZeroGPU, which wants models
      placed on the GPU before requests arrive).
    cache_ttl: seconds that temporary files (Gradio's cache of uploads, frames and downloads, and
      the app's own download files) are kept; older ones are deleted.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    diffusion_model: Optional[str] = None
    gan_model: Optional[str] = None
    models_dir: str = "models"
    device: Optional[str] = None
    dtype: Optional[str] = None
    max_queue: int = 16
    max_image_side: int = 1024
    lora_cache_dir: Optional[str] = None
    preload: bool = False
    cache_ttl: int = 1800


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python app.py`."""
    env_port = os.environ.get("GRADIO_SERVER_PORT")
    p = argparse.ArgumentParser(prog="python app.py", description="StableDrag Studio web app")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(env_port) if env_port else 7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also create a public Gradio share link")
    p.add_argument("--diffusion-model", default=None, metavar="M",
                   help="Stable Diffusion 1.x/2.x: diffusers folder, .safetensors/.ckpt file or hub id "
                        "(default: the bundled toy model if present, else SD 1.5 from the hub)")
    p.add_argument("--gan-model", default=None, metavar="CKPT",
                   help="StyleGAN2 checkpoint: official .pkl or native .safetensors/folder "
                        "(default: the bundled toy-faces model)")
    p.add_argument("--models-dir", default="models",
                   help="folder searched for more checkpoints offered in the model menus (default ./models)")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=["auto", "fp32", "fp16", "bf16"],
                   help="diffusion weights (default auto: STABLEDRAG_DTYPE, else bf16 on GPUs with native bf16, "
                        "fp16 on older GPUs, fp32 on the CPU)")
    p.add_argument("--max-queue", type=int, default=16, help="requests allowed to wait in the queue")
    p.add_argument("--max-image-side", type=int, default=1024,
                   help="uploads with a longer side are scaled down to this many pixels")
    p.add_argument("--lora-cache-dir", default=None, help="where identity LoRAs are cached")
    p.add_argument("--cache-ttl", type=int, default=1800,
                   help="seconds temporary files (uploads, frames, downloads) are kept (default 1800)")
    p.add_argument("--preload", action="store_true", help="load the default models at start-up, not on first use")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> AppOptions:
    """Parse `argv` (None: sys.argv) into `AppOptions`."""
    ns = build_parser().parse_args(argv)
    names = {f.name for f in fields(AppOptions)}
    return AppOptions(**{k: v for k, v in vars(ns).items() if k in names})
