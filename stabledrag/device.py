"""Choose the device and dtype once, and pass them down.

CUDA: half-precision weights — bfloat16 where the GPU supports it (its exponent range keeps
gradients through the UNet from underflowing without a loss scaler, which matters for LoRA
training and latent optimisation), float16 otherwise. CPU (and Apple MPS): float32.
The environment variable STABLEDRAG_DTYPE (fp32 | fp16 | bf16) overrides the choice.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .errors import UserError

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
           "float16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16}


def resolve_device(name: Optional[str | torch.device] = None) -> torch.device:
    """A torch device from a user string ("cpu", "cuda", "cuda:1", "mps") or None (CUDA if
    available, else CPU). Asking for an unavailable device raises `UserError`."""
    if isinstance(name, torch.device):
        device = name
    elif name is None or str(name).strip() in ("", "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            device = torch.device(str(name).strip())
        except RuntimeError as e:
            raise UserError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return device


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """torch dtype from "fp32"/"fp16"/"bf16" (or their long names, or a torch.dtype)."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise UserError(f"unknown dtype {name!r}: use fp32, fp16 or bf16")
    return _DTYPES[key]


def default_dtype(device: torch.device) -> torch.dtype:
    """The weight dtype for `device`: STABLEDRAG_DTYPE if set; CUDA -> bf16 if supported else
    fp16; anything else -> fp32."""
    override = os.environ.get("STABLEDRAG_DTYPE", "").strip()
    if override:
        return parse_dtype(override)
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def choose(device: Optional[str | torch.device] = None,
           dtype: Optional[str | torch.dtype] = None) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) from optional user choices, with the defaults above."""
    dev = resolve_device(device)
    return dev, (parse_dtype(dtype) if dtype is not None else default_dtype(dev))
