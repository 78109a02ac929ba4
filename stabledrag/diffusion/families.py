"""Which model family a checkpoint file holds, read from its tensor names and shapes only.

A single-file checkpoint (original "LDM" layout, or a diffusers-layout UNet file) carries no config,
and diffusers' own guess maps every SD 2.x file to the 768 px v-prediction model. Here the family
is read from the keys and shapes (no tensor is loaded; `.safetensors` headers only):

- LoRA file: `lora_down` / `lora_up` / `lora_A` / `lora_B` tensors and no full UNet;
- SDXL: `conditioner.*` text encoders, or the UNet's `label_emb` (`add_embedding` in diffusers
  layout), or a cross-attention width of 2048 / 1280;
- inpainting: the UNet's first convolution takes 9 channels (4 latent + 4 masked-image + 1 mask);
- SD 1.x: cross-attention width 768 (CLIP ViT-L text encoder, `cond_stage_model.transformer`);
- SD 2.x: width 1024 (OpenCLIP ViT-H, `cond_stage_model.model`). 2.x-base (512 px, epsilon) and
  2.x-v (768 px, v-prediction) have identical tensors: the prediction type is known only when the
  file says so (a `v_pred` marker tensor), else a config folder must tell (`--config-dir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

#: Families the editor runs.
SUPPORTED = ("sd1", "sd2")

_UNET_IN = ("model.diffusion_model.input_blocks.0.0.weight", "conv_in.weight")
_LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", ".lora.")


@dataclass(frozen=True)
class CheckpointFamily:
    """What a checkpoint holds.

    family: "sd1", "sd2", "sdxl", "inpainting", "lora" or "unknown".
    prediction_type: "epsilon", "v_prediction", or None when the weights cannot tell.
    context_dim: the UNet's cross-attention (text) width, or None. in_channels: UNet input channels.
    """

    family: str
    prediction_type: Optional[str] = None
    context_dim: Optional[int] = None
    in_channels: Optional[int] = None

    @property
    def label(self) -> str:
        """Human-readable name ("Stable Diffusion 2.x", ...)."""
        return {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "SDXL",
                "inpainting": "an inpainting model", "lora": "a LoRA file"}.get(self.family, "an unknown model")


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor names -> shapes of a checkpoint file, without loading `.safetensors` tensors.

    `.ckpt` / `.pt` / `.bin` files are read with `torch.load(weights_only=True, mmap=True)` (no code
    runs); a nested `state_dict` is unwrapped. Raises OSError / ValueError for unreadable files.
    """
    path = os.fspath(path)
    if path.lower().endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # old (non-zip) format cannot be memory-mapped
        data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ValueError("the file does not hold a dictionary of tensors")
    return {k: tuple(getattr(v, "shape", ())) for k, v in data.items()}


def detect_family(shapes: Mapping[str, Sequence[int]]) -> CheckpointFamily:
    """The family of a checkpoint from its tensor names and shapes (see the module docstring)."""
    keys = list(shapes)
    in_key = next((k for k in _UNET_IN if k in shapes), None)
    has_unet = in_key is not None
    if not has_unet and any(m in k for k in keys for m in _LORA_MARKERS):
        return CheckpointFamily("lora")
    in_ch = int(shapes[in_key][1]) if in_key is not None and len(shapes[in_key]) > 1 else None
    ctx = None
    for k in keys:
        if k.endswith("attn2.to_k.weight") and len(shapes[k]) == 2:
            ctx = int(shapes[k][1])
            break
    pred = "v_prediction" if "v_pred" in shapes else None
    sdxl = (any(k.startswith("conditioner.") for k in keys)
            or any(k.startswith(("model.diffusion_model.label_emb.", "add_embedding.")) for k in keys)
            or ctx in (2048, 1280))
    if sdxl:
        return CheckpointFamily("sdxl", pred, ctx, in_ch)
    if in_ch is not None and in_ch != 4:
        return CheckpointFamily("inpainting", pred, ctx, in_ch)
    if ctx is None:  # a file without a UNet (e.g. a VAE), or a layout we do not know
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            ctx = 1024
        elif any(k.startswith("cond_stage_model.transformer.") for k in keys):
            ctx = 768
    if ctx == 768:
        return CheckpointFamily("sd1", pred or "epsilon", ctx, in_ch)
    if ctx == 1024:
        return CheckpointFamily("sd2", pred, ctx, in_ch)
    return CheckpointFamily("unknown", pred, ctx, in_ch)


def refusal(found: CheckpointFamily, name: str, config_dir: Optional[str] = None,
            config_context_dim: Optional[int] = None, config_in_channels: Optional[int] = None) -> Optional[str]:
    """One line saying why `name` cannot be edited as given, or None when loading may go ahead.

    config_dir / config_context_dim / config_in_channels: the `--config-dir` folder and its UNet's
    cross_attention_dim and in_channels, when one was given (checked against the weights).
    """
    if found.family == "lora":
        return (f"{name} is a LoRA file, not a model: pass it with --lora {name} (or --lora {name}:SCALE) "
                "and give the base model with --model.")
    if found.family == "sdxl":
        return f"{name} holds an SDXL model; only Stable Diffusion 1.x/2.x is supported."
    if found.family == "inpainting":
        return (f"{name} holds an inpainting model (its UNet takes {found.in_channels} input channels); "
                "use a standard text-to-image Stable Diffusion 1.x/2.x checkpoint.")
    if config_dir is not None:
        if config_context_dim is not None and found.context_dim is not None \
                and int(config_context_dim) != found.context_dim:
            return (f"{name} is {found.label} (text width {found.context_dim}) but --config-dir {config_dir} "
                    f"describes a model with text width {config_context_dim}; use the configs of the same family.")
        return None
    if found.family == "sd2" and found.prediction_type is None:
        return (f"{name} is {found.label}, whose 512 px base (noise prediction) and 768 px v-prediction "
                "versions have the same weights layout: pass --config-dir with a diffusers folder of the "
                "same model (e.g. stable-diffusion-2-1-base or stable-diffusion-2-1) so it is not run "
                "with the wrong prediction type.")
    return None
