"""An on-disk cache of identity LoRAs, so the same image is never trained twice.

Key = SHA-256 of (model identity, the prepared image's pixels and size, prompt, LoRA settings,
format version). Entries live in `<cache>/<key[:32]>/` with the diffusers-format weights and a
JSON description. The cache root is `$STABLEDRAG_CACHE/lora`, else
`$XDG_CACHE_HOME/stabledrag/lora`, else `~/.cache/stabledrag/lora`. Writes are atomic (train
into a temporary folder, then rename), so a crash or a cancel never leaves a half entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from ...progress import CancelToken, ProgressCallback, report

from .config import IdentityLoraConfig
from .train import PHASE, prepare_training_image, train_identity_lora
from .weights import WEIGHT_NAME, load_lora, save_lora

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """Where identity LoRAs are cached (see the module docstring)."""
    root = os.environ.get("STABLEDRAG_CACHE")
    if root:
        return Path(root).expanduser() / "lora"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "stabledrag" / "lora"


def weights_fingerprint(pipe: Any) -> str:
    """A content fingerprint of the pipeline's UNet, VAE and text-encoder weights (LoRA layers
    excluded), for pipelines that carry no `stabledrag_model_key`. Samples up to 256 values per
    tensor, so it is quick even at full SD size; computed once per pipeline."""
    cached = getattr(pipe, "stabledrag_weights_fingerprint", None)
    if cached:
        return cached
    h = hashlib.sha256()
    for comp in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, comp, None)
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            if "lora_" in name:
                continue
            name = name.replace(".base_layer.", ".")
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)][:256].float().cpu().numpy()
            h.update(f"{comp}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(sample.tobytes())
    fp = "weights:" + h.hexdigest()
    pipe.stabledrag_weights_fingerprint = fp
    return fp


def model_identity(pipe: Any, model_id: Optional[str] = None) -> str:
    """`model_id` if given, else the key `stabledrag.diffusion.loading` stored on the pipeline,
    else a fingerprint of its weights."""
    if model_id:
        return str(model_id)
    key = getattr(pipe, "stabledrag_model_key", None)
    return key or weights_fingerprint(pipe)


def cache_key(model: str, image: Image.Image, prompt: str, config: IdentityLoraConfig) -> str:
    """Hex SHA-256 naming one LoRA: model identity, RGB pixels + size of the (prepared) training
    image, prompt and every LoRA setting."""
    rgb = image.convert("RGB")
    h = hashlib.sha256()
    meta = {"version": CACHE_VERSION, "model": model, "prompt": prompt, "config": config.to_dict(),
            "size": list(rgb.size)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(np.asarray(rgb, dtype=np.uint8).tobytes())
    return h.hexdigest()


def cached_lora_path(cache_dir: str | os.PathLike, key: str) -> Path:
    """Folder of the cache entry for `key` (it may not exist)."""
    return Path(cache_dir) / key[:32]


def ensure_identity_lora(pipe: Any, model_id: Optional[str], image: Image.Image, prompt: str,
                         config: Optional[IdentityLoraConfig] = None,
                         cache_dir: Optional[str | os.PathLike] = None,
                         progress: Optional[ProgressCallback] = None,
                         cancel: Optional[CancelToken] = None, scale: float = 1.0) -> tuple[str, bool]:
    """Make `pipe.unet` carry the identity LoRA for (`image`, `prompt`), training it only if it
    is not cached yet.

    model_id: identity of the base weights (None: `stabledrag_model_key` set by the loader, else
    a weights fingerprint). image: any PIL image (prepared with `prepare_image` at the config's
    resolution; pass the same image the drag uses). cache_dir: None = `default_cache_dir()`.
    Returns (path of the LoRA folder, trained) where trained is False on a cache hit. With
    `config.steps == 0` no LoRA is applied (any previous one is removed) and ("", False) is
    returned. A cache hit still reports `Progress("lora", steps, steps, info={"cached": True})`.
    """
    from .weights import unload_lora

    config = config or IdentityLoraConfig()
    if config.steps == 0:
        unload_lora(pipe)
        return "", False
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    img = prepare_training_image(pipe, image, config)
    model = model_identity(pipe, model_id)
    key = cache_key(model, img, prompt, config)
    entry = cached_lora_path(cache_root, key)
    if (entry / WEIGHT_NAME).is_file():
        log.info("identity LoRA cache hit: %s", entry)
        load_lora(pipe, entry, scale=scale)
        report(progress, PHASE, config.steps, config.steps, info={"cached": True})
        return str(entry), False

    state = train_identity_lora(pipe, img, prompt, config, progress=progress, cancel=cancel)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_root))
    try:
        save_lora(state, tmp, metadata={"key": key, "model": model, "prompt": prompt,
                                        "config": config.to_dict(), "image_size": list(img.size),
                                        "version": CACHE_VERSION})
        try:
            os.replace(tmp, entry)
        except OSError:
            # Another process finished the same entry first; theirs is equivalent.
            if not (entry / WEIGHT_NAME).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    load_lora(pipe, entry, scale=scale)
    return str(entry), True

