"""Save, load, swap and remove identity LoRAs in diffusers' LoRA format; read other LoRA files.

Files are what `StableDiffusionPipeline.save_lora_weights` writes
(`pytorch_lora_weights.safetensors`, keys `unet.<module>.lora.down/up.weight`), so any diffusers
tool can read them, and `pipe.load_lora_weights` loads them. `read_lora_state_dict` also reads
files written by DragDiffusion (a doubled `unet.unet.` prefix, and the older attention-processor
names `processor.to_q_lora.down`) and kohya-style trainers (`lora_unet_*.lora_down/lora_up/alpha`,
converted by diffusers).

The identity LoRA is fixed once trained, so `load_lora` *fuses* it into the UNet weights
(W <- W + scale * up @ down) and removes the LoRA layers: inversion, drag and denoising then run
the plain UNet at the cost of the base model. The base weights of the touched layers are kept, and
`unload_lora` copies them back (exactly, no subtraction). Exactly one identity LoRA is on a
pipeline at a time: loading another restores the base first, so adapters for different images
never stack.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

import torch

from ...errors import UserError

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


def read_lora_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file (`.safetensors`, or a torch file read with weights_only), with
    keys normalised for `pipe.load_lora_weights`:
    - `unet.unet.` (DragDiffusion's doubled prefix) -> `unet.`;
    - attention-processor names (`<attn>.processor.to_q_lora.down.weight`, DragDiffusion with old
      diffusers) -> `<attn>.to_q.lora.down.weight` (`to_out_lora` -> `to_out.0.lora`);
    - kohya keys (`lora_unet_...`, `lora_te_...`) are left for diffusers to convert.
    Raises UserError when the file cannot be read or holds no LoRA tensors."""
    path = os.fspath(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors/torch raise many types for unreadable files
        raise UserError(f"could not read the LoRA file {path}: {e}") from None
    if not isinstance(sd, dict) or not any("lora" in k.lower() for k in sd):
        raise UserError(f"{path} holds no LoRA weights (no lora_down/lora_up or lora.down/up tensors)")
    out = {}
    for key, value in sd.items():
        while key.startswith("unet.unet."):
            key = key[len("unet."):]
        for proj in ("to_q", "to_k", "to_v"):
            key = key.replace(f".processor.{proj}_lora.", f".{proj}.lora.")
        key = key.replace(".processor.to_out_lora.", ".to_out.0.lora.")
        out[key] = value
    return out


def _weights_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, WEIGHT_NAME)
    if not os.path.isfile(path):
        raise UserError(f"no LoRA weights at {path} (expected a folder with {WEIGHT_NAME} or the file itself)")
    return path


def load_lora(pipe: Any, path: str | os.PathLike, scale: float = 1.0, adapter_name: str = ADAPTER,
              fuse: bool = True) -> None:
    """Apply the LoRA at `path` (a folder from `save_lora`, or a LoRA file in any format
    `read_lora_state_dict` reads) to `pipe.unet` as the only identity LoRA, with weight `scale`.

    fuse: merge it into the UNet weights and drop the LoRA layers (the base weights of the touched
    layers are kept for `unload_lora`); False keeps a live peft adapter. Any identity LoRA already
    applied is removed first. Reloading the same file at the same scale is a no-op."""
    weights = os.path.abspath(_weights_path(path))
    stamp = (weights, os.stat(weights).st_mtime_ns, float(scale))
    if getattr(pipe, "stabledrag_lora", None) == stamp and _lora_applied(pipe):
        return
    unload_lora(pipe)
    pipe.load_lora_weights(read_lora_state_dict(weights), adapter_name=adapter_name)
    if fuse:
        fuse_unet_lora(pipe, adapter_name, scale)
    else:
        pipe.set_adapters([adapter_name], adapter_weights=[float(scale)])
    pipe.stabledrag_lora = stamp
    log.debug("loaded LoRA %s (scale %s, fused %s)", weights, scale, fuse)


def fuse_unet_lora(pipe: Any, adapter_name: str, scale: float = 1.0, keep_base: bool = True) -> None:
    """Merge the UNet adapter `adapter_name` into the weights (`W + scale * up @ down`) and remove
    the LoRA layers. keep_base: first copy the base weights of every touched layer to
    `pipe.stabledrag_lora_base` (same device and dtype) so `unload_lora` restores them exactly."""
    unet = pipe.unet
    if keep_base:
        pipe.stabledrag_lora_base = {name: m.get_base_layer().weight.detach().clone()
                                     for name, m in unet.named_modules()
                                     if hasattr(m, "get_base_layer") and hasattr(m, "lora_A")}
    pipe.fuse_lora(components=["unet"], lora_scale=float(scale), adapter_names=[adapter_name])
    unet.unload_lora()  # drops the (merged) LoRA layers, keeping the fused weights


def unload_lora(pipe: Any) -> None:
    """Remove the identity LoRA from `pipe.unet`: its live layers, or its fused weights (the base
    weights kept by `fuse_unet_lora` are copied back, bit for bit)."""
    unet = pipe.unet
    if _has_lora(unet) or getattr(unet, "peft_config", None):
        unet.unload_lora()
    base = getattr(pipe, "stabledrag_lora_base", None)
    if base:
        with torch.no_grad():
            for name, weight in base.items():
                unet.get_submodule(name).weight.copy_(weight)
    pipe.stabledrag_lora_base = None
    pipe.stabledrag_lora = None


def _lora_applied(pipe: Any) -> bool:
    return _has_lora(pipe.unet) or bool(getattr(pipe, "stabledrag_lora_base", None))


def active_lora(pipe: Any) -> Optional[str]:
    """Path of the identity LoRA file applied to `pipe` by `load_lora` (live or fused), or None."""
    stamp = getattr(pipe, "stabledrag_lora", None)
    return stamp[0] if stamp and _lora_applied(pipe) else None


def _has_lora(module: torch.nn.Module) -> bool:
    return any("lora_" in name for name, _ in module.named_parameters())
