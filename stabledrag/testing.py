"""Tiny random-weight models of both engines saved to disk, for the tests (the app's, the CLI's)
and for trying the page without the bundled models (`python -m scripts.screenshots --tiny`).
Nothing is downloaded. (It lived in `stabledrag.webapp`; the web app imports no engine.)"""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_gan(directory: str | Path, resolution: int = 32, seed: int = 0) -> str:
    """A random StyleGAN2 generator (`resolution` px, tiny widths) in the native format, with
    non-zero noise strengths and w_avg so seeds give distinct images. Returns the folder path."""
    from .gan import Generator, GeneratorConfig, save_native

    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=resolution, channel_base=512, channel_max=32,
                          mapping_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(cfg)
        with torch.no_grad():
            G.mapping.w_avg.normal_()
    path = Path(directory) / "tiny_gan"
    save_native(G, path)
    return str(path)


def save_tiny_sd(directory: str | Path, image_size: int = 64, seed: int = 0) -> str:
    """A tiny random Stable-Diffusion-shaped pipeline as a diffusers folder. Returns its path."""
    from .diffusion.tiny import save_tiny_pipeline

    return save_tiny_pipeline(Path(directory) / "tiny_sd", seed=seed, image_size=image_size)
