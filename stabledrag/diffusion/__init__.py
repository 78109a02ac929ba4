"""StableDrag-Diff: drag editing of real images with Stable Diffusion 1.x/2.x (diffusers format).

Modules (one idea each):
  loading    load a pipeline once per process, offline-first, with clear errors
  images     any PIL image -> RGB at a model-valid size
  inversion  VAE encode/decode, prompt encoding, DDIM inversion and denoising
  features   UNet block features via a forward hook (with the forward cut after the block)
  attention  reference-latent control: source self-attention K/V while denoising
  backend    `DiffusionBackend`, the engine behind the core drag loop
  lora       identity-LoRA training, weights and cache (peft; `python -m lora_tuning` wraps it)
  editor     `DiffusionEditor`: LoRA -> inversion -> drag -> denoise, cached per image
  cli        `python -m stabledrag edit --backend diffusion`
  tiny       tiny random-weight SD-shaped pipelines for tests

Names are imported lazily so that `import stabledrag.diffusion` does not pull in diffusers.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "DiffusionEditor": "editor",
    "DiffusionEditConfig": "editor",
    "DiffusionEditResult": "editor",
    "DiffusionBackend": "backend",
    "InversionConfig": "inversion",
    "FeatureExtractor": "features",
    "reference_attention": "attention",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
