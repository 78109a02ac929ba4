"""Choose the device and dtype once, and pass them down.

CUDA: half-precision weights — bfloat16 where the GPU computes it natively (compute capability
>= 8.0: A100, H100, RTX 30xx/40xx; its exponent range keeps gradients through the UNet from
underflowing without a loss scaler), float16 otherwise (T4, V100, RTX 20xx: there
`torch.cuda.is_bf16_supported()` may still say True, but bf16 is emulated and slow). With fp16 the
drag keeps its latent in fp32 and scales the gradient through the UNet
(`diffusion.features.FP16_GRAD_SCALE`), and the VAE falls back to fp32 where fp16 overflows.
CPU (and Apple MPS): float32.
The `--dtype` option (CLI, `app.py`) or else the environment variable STABLEDRAG_DTYPE
(fp32 | fp16 | bf16) overrides the choice.
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


def native_bf16(device: torch.device) -> bool:
    """True when the CUDA `device` computes bfloat16 in hardware (compute capability >= 8.0).
    `torch.cuda.is_bf16_supported()` alone also answers True on older GPUs that emulate it."""
    if device.type != "cuda":
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and torch.cuda.is_bf16_supported()


def default_dtype(device: torch.device) -> torch.dtype:
    """The weight dtype for `device`: STABLEDRAG_DTYPE if set; CUDA -> bf16 where native
    (`native_bf16`), else fp16; anything else -> fp32."""
    override = os.environ.get("STABLEDRAG_DTYPE", "").strip()
    if override:
        return parse_dtype(override)
    if device.type == "cuda":
        return torch.bfloat16 if native_bf16(device) else torch.float16
    return torch.float32


def choose(device: Optional[str | torch.device] = None,
           dtype: Optional[str | torch.dtype] = None) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) from optional user choices, with the defaults above. Half precision on a
    CPU is refused (UserError): CPU kernels for it are slow or missing."""
    dev = resolve_device(device)
    dt = parse_dtype(dtype) if dtype is not None and str(dtype).strip().lower() != "auto" else default_dtype(dev)
    if dev.type == "cpu" and dt != torch.float32:
        raise UserError(f"{str(dt).removeprefix('torch.')} on the CPU is not supported; use --dtype fp32 "
                        "(or unset STABLEDRAG_DTYPE), or a GPU")
    return dev, dt
