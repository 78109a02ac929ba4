"""Save, load, swap and remove identity LoRAs in diffusers' LoRA format.

Files are what `StableDiffusionPipeline.save_lora_weights` writes
(`pytorch_lora_weights.safetensors`, keys `unet.<module>.lora.down/up.weight`), so any diffusers
tool can read them, and `pipe.load_lora_weights` loads them. Exactly one identity adapter is on
a pipeline at a time: loading another removes the previous LoRA layers first, so adapters for
different images never stack.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

import torch

log = logging.getLogger(__name__)

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
CONFIG_NAME = "identity_lora.json"
ADAPTER = "identity"
TRAIN_ADAPTER = "identity_train"


def save_lora(state_dict: dict[str, torch.Tensor], directory: str | os.PathLike,
              metadata: Optional[dict[str, Any]] = None) -> str:
    """Write `state_dict` (from `train_identity_lora`: UNet LoRA weights, diffusers naming, no
    "unet." prefix) to `directory/pytorch_lora_weights.safetensors` via
    `StableDiffusionPipeline.save_lora_weights`, plus `identity_lora.json` with `metadata`
    (settings, prompt, model) for people and caches. Returns the weights file path."""
    from diffusers import StableDiffusionPipeline

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=state_dict, weight_name=WEIGHT_NAME,
                                              safe_serialization=True)
    if metadata is not None:
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True, default=str)
    return os.path.join(directory, WEIGHT_NAME)


def _weights_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, WEIGHT_NAME)
    if not os.path.isfile(path):
        from stabledrag.errors import UserError

        raise UserError(f"no LoRA weights at {path} (expected a folder with {WEIGHT_NAME} or the file itself)")
    return path


def load_lora(pipe: Any, path: str | os.PathLike, scale: float = 1.0, adapter_name: str = ADAPTER) -> None:
    """Apply the LoRA at `path` (a folder from `save_lora` or the .safetensors file) to
    `pipe.unet` as the only adapter, with weight `scale`. Any LoRA already on the UNet is removed
    first. Reloading the same file at the same scale is a no-op."""
    weights = os.path.abspath(_weights_path(path))
    stamp = (weights, os.stat(weights).st_mtime_ns, float(scale))
    if getattr(pipe, "stabledrag_lora", None) == stamp and _has_lora(pipe.unet):
        return
    unload_lora(pipe)
    pipe.load_lora_weights(os.path.dirname(weights), weight_name=os.path.basename(weights),
                           adapter_name=adapter_name)
    pipe.set_adapters([adapter_name], adapter_weights=[float(scale)])
    pipe.stabledrag_lora = stamp
    log.debug("loaded LoRA %s (scale %s)", weights, scale)


def unload_lora(pipe: Any) -> None:
    """Remove every LoRA layer from `pipe.unet`, restoring the base weights exactly."""
    unet = pipe.unet
    if _has_lora(unet) or getattr(unet, "peft_config", None):
        unet.unload_lora()
    pipe.stabledrag_lora = None


def active_lora(pipe: Any) -> Optional[str]:
    """Path of the identity LoRA file applied to `pipe` by `load_lora`, or None."""
    stamp = getattr(pipe, "stabledrag_lora", None)
    return stamp[0] if stamp and _has_lora(pipe.unet) else None


def _has_lora(module: torch.nn.Module) -> bool:
    return any("lora_" in name for name, _ in module.named_parameters())
