"""The `.npz` file of a projected photo: W+, crop box, model, and PTI's weight delta.

Keys (all plain arrays, read with `allow_pickle=False`; nothing in the file runs):

    format      "stabledrag-gan-latent" (0-d str)      version   1
    ws          float32 `1 x num_ws x w_dim`           crop      int64 `[l, t, r, b, W, H, R]` (optional)
    model       the model as given (path or "" for the bundled toy GAN)
    model_key   SHA-1 fingerprint of the generator's weights (`projection.model_fingerprint`)
    info        JSON text: projection metrics and config
    delta.<name> float32, one per tuned tensor (state-dict name), when PTI ran

Written by `python -m stabledrag project`, read by `edit --backend gan --latent`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import UserError
from .projection import CropBox, ProjectionResult

FORMAT = "stabledrag-gan-latent"
VERSION = 1
_DELTA = "delta."


@dataclass
class LatentFile:
    """What a latent file holds. ws: `1 x num_ws x w_dim` float32 tensor; weight_delta: name ->
    float32 tensor (empty without PTI); crop: where the image came from in the photo (or None);
    model / model_key: which generator it belongs to; info: metrics and config (JSON-ready)."""

    ws: torch.Tensor
    weight_delta: dict[str, torch.Tensor] = field(default_factory=dict)
    crop: Optional[CropBox] = None
    model: str = ""
    model_key: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def from_result(result: ProjectionResult, model: Optional[str]) -> LatentFile:
    """The file contents of a projection of `model` (a path, or None for the bundled toy GAN)."""
    return LatentFile(ws=result.ws, weight_delta=dict(result.weight_delta), crop=result.crop, model=model or "",
                      model_key=result.model_key, info=result.metrics())


def save(path: str | Path, data: LatentFile) -> Path:
    """Write `data` to `path` (`.npz` is appended when missing). Raises UserError when it cannot."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "version": np.array(VERSION),
        "ws": data.ws.detach().cpu().to(torch.float32).numpy(),
        "model": np.array(data.model), "model_key": np.array(data.model_key),
        "info": np.array(json.dumps(data.info)),
    }
    if data.crop is not None:
        arrays["crop"] = np.array(data.crop.to_list(), dtype=np.int64)
    for name, t in data.weight_delta.items():
        arrays[_DELTA + name] = t.detach().cpu().to(torch.float32).numpy()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
    except OSError as e:
        raise UserError(f"Could not write the latent to {path}: {e}") from e
    return path


def load(path: str | Path) -> LatentFile:
    """Read a latent file written by `save`. Also accepts a plain `.npy` W+ array (no delta, no
    crop). Raises UserError for a missing, unreadable or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No latent file at {path}: make one with `python -m stabledrag project`.")
    try:
        if path.suffix == ".npy":
            return LatentFile(ws=torch.from_numpy(np.load(path, allow_pickle=False)).to(torch.float32))
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise UserError(f"{path} is not a StableDrag latent file (written by `python -m stabledrag project`).")
            if int(z["version"]) > VERSION:
                raise UserError(f"{path} was written by a newer version of this program; please update.")
            ws = torch.from_numpy(np.asarray(z["ws"], dtype=np.float32))
            crop = CropBox.from_list(z["crop"].tolist()) if "crop" in z.files else None
            delta = {k[len(_DELTA):]: torch.from_numpy(np.asarray(z[k], dtype=np.float32))
                     for k in z.files if k.startswith(_DELTA)}
            info = json.loads(str(z["info"])) if "info" in z.files else {}
            return LatentFile(ws=ws, weight_delta=delta, crop=crop, model=str(z["model"]),
                              model_key=str(z["model_key"]), info=info)
    except UserError:
        raise
    except Exception as e:  # numpy raises many error types for damaged files
        raise UserError(f"Could not read the latent file {path}: {e}") from e
