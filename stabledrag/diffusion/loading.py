"""Load a Stable Diffusion 1.x/2.x pipeline once per process, offline-first, with one clear error.

`load_pipeline(model, device, dtype, config_dir)` accepts
- None: the bundled toy model folder `assets/models/toy_sd/` if it exists, else SD 1.5 on the hub;
- a local diffusers folder (with model_index.json);
- a single `.safetensors` / `.ckpt` file (original SD layout). Its diffusers configs come from
  `config_dir` (a local diffusers folder) or, if not given, from the Hugging Face cache of the
  matching official repo — never silently from the network when offline;
- a hub id ("owner/name"): first looked up in the local Hugging Face cache; the hub is tried
  only when HF_HUB_OFFLINE is not set and the endpoint answers a 3-second TCP probe, so an
  offline machine never waits on network timeouts.

The pipeline gets a DDIMScheduler built from the model's own scheduler config (SD 1.5's
settings where the config leaves them out), no safety checker, and is cached by
(model, config_dir, device, dtype). Anything that goes wrong is raised as ONE
`ModelUnavailableError` saying what was tried and how to point at local files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

import torch

from ..device import choose
from ..errors import ModelUnavailableError, UserError
from ..paths import SD15_HUB_ID, TOY_SD_DIR

log = logging.getLogger(__name__)

TOY_MODEL_DIR = TOY_SD_DIR
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
HUB_PROBE_TIMEOUT_S = 3.0
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# Config files only (what from_single_file needs besides the weights).
_CONFIG_PATTERNS = ["*.json", "**/*.json", "*.txt", "**/*.txt"]

_HINT = ("Point at local files instead: --model /path/to/diffusers-folder (a folder with "
         "model_index.json, e.g. made by StableDiffusionPipeline.save_pretrained), or "
         "--model /path/to/model.safetensors --config-dir /path/to/diffusers-folder, or put the "
         "model in the Hugging Face cache (HF_HOME, default ~/.cache/huggingface) on a machine "
         "with internet access and copy it over.")

_cache: dict[tuple, Any] = {}
_lock = threading.RLock()


def default_model() -> str:
    """The model used when none is given: the bundled toy folder if present, else SD 1.5's hub id."""
    if (TOY_MODEL_DIR / "model_index.json").is_file():
        return str(TOY_MODEL_DIR)
    return SD15_HUB_ID


def hub_offline() -> bool:
    """True if the Hugging Face hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with diffusers
        return False


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A quick TCP connect to the hub endpoint (HF_ENDPOINT, default huggingface.co:443)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def clear_cache() -> None:
    """Forget every cached pipeline (they are freed once no one else holds them)."""
    with _lock:
        _cache.clear()


def load_pipeline(model: Optional[str | os.PathLike] = None, device: Optional[str | torch.device] = None,
                  dtype: Optional[str | torch.dtype] = None,
                  config_dir: Optional[str | os.PathLike] = None,
                  loras: Sequence[tuple[str, float]] = ()):
    """Load (or return the cached) Stable Diffusion 1.x/2.x pipeline.

    model: hub id, diffusers folder, single checkpoint file, or None (see the module docstring).
    device/dtype: see `stabledrag.device.choose` (CUDA -> bf16/fp16, CPU -> fp32).
    config_dir: for single-file checkpoints, a local diffusers folder providing the configs.
    loras: the user's own LoRA files `(path, scale)` (diffusers, DragDiffusion or kohya format),
      fused into the UNet (and text encoder) weights in this order: the identity LoRA is then
      trained on and applied over them. Part of the cache key and of `stabledrag_model_key`.
    Returns a `StableDiffusionPipeline` in eval mode on `device`, with a DDIMScheduler. Its
    attribute `stabledrag_model_key` identifies the weights (for LoRA/inversion caches).
    Raises `ModelUnavailableError` with a message saying what was tried and what to do.
    """
    dev, dt = choose(device, dtype)
    spec = os.fspath(model) if model is not None else default_model()
    cfg = os.path.abspath(os.fspath(config_dir)) if config_dir is not None else None
    kind, ident = _classify(spec)
    user = tuple(_lora_spec(p, s) for p, s in loras)
    key = (kind, ident, cfg, str(dev), str(dt), user)
    with _lock:
        if key in _cache:
            return _cache[key]
        pipe = _load_uncached(kind, ident, cfg, dt)
        pipe = _finish(pipe, kind, ident, dev, dt)
        if user:
            _fuse_user_loras(pipe, user)
        _cache[key] = pipe
        return pipe


def _lora_spec(path: str, scale: float) -> tuple[str, int, float]:
    """(absolute path, mtime, scale) of a user LoRA file; UserError when it is missing."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        raise ModelUnavailableError(f"the LoRA file {path} does not exist.")
    return path, os.stat(path).st_mtime_ns, float(scale)


def _fuse_user_loras(pipe: Any, loras: tuple[tuple[str, int, float], ...]) -> None:
    """Fuse each user LoRA into the weights (no LoRA layers stay) and extend the model key."""
    from .lora.weights import read_lora_state_dict

    for i, (path, _, scale) in enumerate(loras):
        name = f"user_{i}"
        try:
            pipe.load_lora_weights(read_lora_state_dict(path), adapter_name=name)
        except UserError:
            raise
        except Exception as e:  # a LoRA for another architecture: diffusers raises ValueError/KeyError/...
            raise ModelUnavailableError(f"the LoRA {os.path.basename(path)} does not fit this model: {_short(e)}") \
                from None
        components = ["unet"] + (["text_encoder"] if getattr(pipe.text_encoder, "peft_config", None) else [])
        pipe.fuse_lora(components=components, lora_scale=scale, adapter_names=[name])
        pipe.unload_lora_weights()
    pipe.stabledrag_model_key += "".join(f"+lora:{p}:{m}:{s}" for p, m, s in loras)



# --------------------------------------------------------------------------------------------


def _classify(spec: str) -> tuple[str, str]:
    """("dir" | "file" | "hub", identifier) for a model string, or a clear error."""
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelUnavailableError(
                f"{spec!r} is a folder but not a diffusers pipeline (no model_index.json). " + _HINT)
        return "dir", str(path.resolve())
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelUnavailableError(
                f"{spec!r} is a file but not a checkpoint ({', '.join(SINGLE_FILE_SUFFIXES)}). " + _HINT)
        return "file", str(path.resolve())
    if not _HUB_ID.fullmatch(spec) or spec.lower().endswith(SINGLE_FILE_SUFFIXES):
        raise ModelUnavailableError(f"model {spec!r} not found: no such file or folder, and it is not a "
                                    "hub id of the form owner/name. " + _HINT)
    return "hub", spec


def _common_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    return dict(dtype=dtype, safety_checker=None, requires_safety_checker=False)


def _pipeline_class():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline


def _unet_config(folder: str) -> dict[str, Any]:
    """The UNet config of a diffusers folder ({} when unreadable)."""
    try:
        with open(os.path.join(folder, "unet", "config.json")) as f:
            return dict(json.load(f))
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        return {}


def _check_model_index(folder: str) -> None:
    """Reject diffusers folders that are not SD 1.x/2.x text-to-image before loading weights."""
    try:
        with open(os.path.join(folder, "model_index.json")) as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelUnavailableError(f"cannot read {folder}/model_index.json ({e}). " + _HINT) from None
    cls = str(index.get("_class_name", ""))
    if "text_encoder_2" in index or "XL" in cls:
        raise ModelUnavailableError(f"{folder} holds an SDXL model ({cls}); only Stable Diffusion 1.x/2.x "
                                    "is supported.")
    in_ch = _unet_config(folder).get("in_channels", 4)
    if "Inpaint" in cls or in_ch != 4:
        raise ModelUnavailableError(f"{folder} holds an inpainting model ({cls}, UNet input channels {in_ch}); "
                                    "use a standard text-to-image Stable Diffusion 1.x/2.x model.")
    missing = [c for c in ("unet", "vae", "text_encoder", "tokenizer") if not index.get(c) or index[c][0] is None]
    if missing:
        raise ModelUnavailableError(f"{folder} ({cls or 'unknown pipeline'}) lacks {', '.join(missing)}; "
                                    "a Stable Diffusion 1.x/2.x pipeline folder is needed.")


def _load_uncached(kind: str, ident: str, config_dir: Optional[str], dtype: torch.dtype):
    if kind == "dir":
        return _load_folder(ident, dtype)
    if kind == "file":
        return _load_single_file(ident, config_dir, dtype)
    return _load_hub(ident, dtype)


def _load_folder(folder: str, dtype: torch.dtype, what: Optional[str] = None):
    _check_model_index(folder)
    try:
        return _from_hub(folder, dtype, local_only=True)
    except Exception as e:  # diffusers raises OSError/ValueError/KeyError/... for broken folders
        log.debug("loading %s failed", folder, exc_info=True)
        raise ModelUnavailableError(f"could not load the diffusers folder {what or folder}: {_short(e)}. "
                                    + _HINT) from None


def _variants(dtype: torch.dtype) -> list[Optional[str]]:
    """Weight variants to try: half-precision runs first try the repo's "fp16" files (half the
    download, e.g. 2 GB instead of 4 GB for SD 1.5), then the default files; full precision the
    default files, then "fp16" ones (a folder or cache holding only `*.fp16.*` files), which
    diffusers upcasts to the requested dtype."""
    return ["fp16", None] if dtype in (torch.float16, torch.bfloat16) else [None, "fp16"]


def _from_hub(repo_id: str, dtype: torch.dtype, local_only: bool):
    """`from_pretrained` over the variants; re-raises the first error (the default files') if
    none loads."""
    error: Optional[BaseException] = None
    for variant in _variants(dtype):
        try:
            return _pipeline_class().from_pretrained(repo_id, local_files_only=local_only, variant=variant,
                                                     **_common_kwargs(dtype))
        except Exception as e:
            log.debug("%s (variant %s, local only %s) failed: %s", repo_id, variant, local_only, e)
            error = error or e
    assert error is not None
    raise error


def _check_hub_index(repo_id: str) -> None:
    """Refuse SDXL / inpainting repos before loading: their model_index.json (and UNet config) from
    the cache, or, when the hub may be contacted, those two small files alone."""
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json", "unet/config.json"]
    try:
        folder = snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns)
    except Exception:
        if hub_offline() or not hub_reachable():
            return  # nothing to read; loading will say it is not available
        try:
            folder = snapshot_download(repo_id, allow_patterns=patterns)
        except Exception:
            return
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        try:
            _check_model_index(folder)
        except ModelUnavailableError as e:
            raise ModelUnavailableError(str(e).replace(folder, repo_id)) from None


def _load_hub(repo_id: str, dtype: torch.dtype):
    _check_hub_index(repo_id)
    cache = f"the local Hugging Face cache ({_hf_cache_dir()})"
    try:
        return _from_hub(repo_id, dtype, local_only=True)
    except Exception as e:
        cache_error = _cache_miss(e)
    if hub_offline():
        raise ModelUnavailableError(
            f"model {repo_id!r} is not available offline. Tried: {cache} ({cache_error}); the hub was not "
            "contacted because HF_HUB_OFFLINE is set. " + _HINT)
    if not hub_reachable():
        raise ModelUnavailableError(
            f"model {repo_id!r} is not available. Tried: {cache} ({cache_error}); the hub "
            f"({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) is unreachable. " + _HINT)
    log.info("downloading %s from the hub (several GB for SD 1.5)", repo_id)
    try:
        return _from_hub(repo_id, dtype, local_only=False)
    except Exception as e:
        log.debug("download of %s failed", repo_id, exc_info=True)
        raise ModelUnavailableError(
            f"model {repo_id!r} could not be loaded. Tried: {cache} ({cache_error}); downloading from the "
            f"hub: {_short(e)}. " + _HINT) from None


def _check_single_file(path: str, config_dir: Optional[str]) -> None:
    """Refuse LoRA / SDXL / inpainting files, SD 2.x files whose prediction type is unknown, and a
    --config-dir of another family, from the file's tensor names and shapes (`families`)."""
    from .families import detect_family, read_shapes, refusal

    try:
        shapes = read_shapes(path)
    except Exception as e:
        raise ModelUnavailableError(f"could not read the checkpoint {path}: {_short(e)}.") from None
    found = detect_family(shapes)
    log.info("%s: %s", path, found)
    unet_cfg = _unet_config(config_dir) if config_dir is not None else {}
    why = refusal(found, os.path.basename(path), config_dir, unet_cfg.get("cross_attention_dim"),
                  unet_cfg.get("in_channels"))
    if why:
        raise ModelUnavailableError(why)


def _load_single_file(path: str, config_dir: Optional[str], dtype: torch.dtype):
    if config_dir is not None and os.path.isdir(config_dir) \
            and os.path.isfile(os.path.join(config_dir, "model_index.json")):
        _check_single_file(path, config_dir)
    elif config_dir is None:
        _check_single_file(path, None)
    if config_dir is not None:
        if not os.path.isdir(config_dir) or not os.path.isfile(os.path.join(config_dir, "model_index.json")):
            raise ModelUnavailableError(
                f"--config-dir {config_dir!r} must be a diffusers folder with model_index.json (the configs "
                f"for {os.path.basename(path)}); e.g. a saved SD 1.5 pipeline.")
        _check_model_index(config_dir)
        configs = config_dir
    else:
        configs = _find_single_file_configs(path)
    try:
        # config= a local folder + local_files_only=True: diffusers reads the configs from disk and
        # never falls back to downloading (it only does that when config is a repo id).
        return _pipeline_class().from_single_file(path, config=configs, local_files_only=True,
                                                  **_common_kwargs(dtype))
    except Exception as e:
        log.debug("single-file load of %s failed", path, exc_info=True)
        msg = _short(e)
        if "weights_only" in msg or "Unpickl" in type(e).__name__:
            msg = ("the .ckpt holds Python objects besides tensors and is not loaded for safety; "
                   "convert it to .safetensors")
        raise ModelUnavailableError(
            f"could not load the checkpoint {path} with the configs in {configs}: {msg}. Use an SD 1.x/2.x "
            "checkpoint and a matching --config-dir (a diffusers folder of the same architecture).") from None


def _find_single_file_configs(path: str) -> str:
    """A local folder with the diffusers configs matching the checkpoint at `path`.

    Infers the official repo (SD 1.5, 2.x, ...) from the checkpoint's keys with diffusers, then
    takes its configs from the Hugging Face cache, or downloads only the small config files when
    online. Offline with no cache -> `ModelUnavailableError` asking for --config-dir.
    """
    from diffusers.loaders.single_file_utils import fetch_diffusers_config, load_single_file_checkpoint
    from huggingface_hub import snapshot_download

    try:
        checkpoint = load_single_file_checkpoint(path, local_files_only=True)
        repo = fetch_diffusers_config(checkpoint)["pretrained_model_name_or_path"]
    except Exception as e:
        log.debug("could not inspect %s", path, exc_info=True)
        raise ModelUnavailableError(f"could not read the checkpoint {path}: {_short(e)}. "
                                    "Give its configs with --config-dir /path/to/diffusers-folder.") from None
    finally:
        checkpoint = None  # free the tensors now; from_single_file reads the file again
    try:
        return snapshot_download(repo, local_files_only=True, allow_patterns=_CONFIG_PATTERNS)
    except Exception as e:
        cache_error = _cache_miss(e)
    if hub_offline() or not hub_reachable():
        raise ModelUnavailableError(
            f"the checkpoint {os.path.basename(path)} looks like {repo}, whose configs are not in the local "
            f"Hugging Face cache ({cache_error}) and the hub cannot be reached. Pass --config-dir "
            "/path/to/diffusers-folder (a saved pipeline of the same architecture, e.g. SD 1.5).")
    try:
        return snapshot_download(repo, allow_patterns=_CONFIG_PATTERNS)
    except Exception as e:
        raise ModelUnavailableError(
            f"the checkpoint {os.path.basename(path)} looks like {repo}, but its configs could not be fetched "
            f"({_short(e)}). Pass --config-dir /path/to/diffusers-folder.") from None


def _finish(pipe: Any, kind: str, ident: str, device: torch.device, dtype: torch.dtype):
    """Validate an SD 1.x/2.x pipeline, swap in DDIM, move it, and stamp its identity."""
    from diffusers import DDIMScheduler

    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(pipe, "text_encoder", None) is None or getattr(pipe, "vae", None) is None:
        raise ModelUnavailableError(f"{ident} is not a Stable Diffusion 1.x/2.x pipeline (missing components).")
    if getattr(pipe, "text_encoder_2", None) is not None or unet.config.get("addition_embed_type") == "text_time" \
            or unet.config.get("cross_attention_dim") in (1280, 2048):
        raise ModelUnavailableError(f"{ident} holds an SDXL model; only Stable Diffusion 1.x/2.x is supported.")
    if int(unet.config.in_channels) != 4:
        raise ModelUnavailableError(
            f"{ident} has a UNet with {unet.config.in_channels} input channels (an inpainting or other "
            "special model); a standard text-to-image SD 1.x/2.x model is needed.")
    sched_cfg = dict(pipe.scheduler.config)
    overrides: dict[str, Any] = {"clip_sample": False}  # latents exceed [-1, 1]; clipping x0 would corrupt them
    if "set_alpha_to_one" not in sched_cfg:
        overrides["set_alpha_to_one"] = False
    if "steps_offset" not in sched_cfg:
        overrides["steps_offset"] = 1
    pipe.scheduler = DDIMScheduler.from_config(sched_cfg, **overrides)
    pipe.to(device)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval()
        module.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    pipe.stabledrag_model_key = _identity(pipe, kind, ident)
    log.info("loaded %s (%s) on %s as %s", ident, kind, device, dtype)
    return pipe


def _identity(pipe: Any, kind: str, ident: str) -> str:
    """A string that changes when the weights change: path + size/mtime, or hub id + commit."""
    if kind == "file":
        st = os.stat(ident)
        return f"file:{ident}:{st.st_size}:{st.st_mtime_ns}"
    if kind == "dir":
        stamps = []
        for sub in ("unet", "vae", "text_encoder"):
            d = Path(ident) / sub
            for f in sorted(d.glob("*")) if d.is_dir() else []:
                if f.suffix in (".safetensors", ".bin", ".json"):
                    st = f.stat()
                    stamps.append(f"{sub}/{f.name}:{st.st_size}:{st.st_mtime_ns}")
        return f"dir:{ident}:" + ";".join(stamps)
    name_or_path = str(getattr(pipe.config, "_name_or_path", "") or "")
    revision = os.path.basename(name_or_path.rstrip("/")) if "snapshots" in name_or_path else "unknown"
    return f"hub:{ident}@{revision}"


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def _cache_miss(e: BaseException) -> str:
    """Short reason why the local Hugging Face cache could not serve a model."""
    text = str(e)
    if "cached" in text or "local_files_only" in text or "LocalEntryNotFound" in type(e).__name__:
        return "not found there"
    return _short(e)


def _short(e: BaseException, limit: int = 300) -> str:
    """One line of an exception message, cut to `limit` characters."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
