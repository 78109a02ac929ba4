"""Loading StyleGAN2 generators: official `.pkl` files (safely) and the project's native format.

- Official NVlabs stylegan2-ada-pytorch / stylegan3-repo `networks_stylegan2` / DragGAN pickles:
  read with `safe_pickle.SafeUnpickler` (nothing in the file runs), take `G_ema`, build a
  `GeneratorConfig` from the recorded constructor arguments and a flat state dict from the
  recorded `_parameters` / `_buffers`, then load it with `strict=True`.
- Native format: `model.safetensors` + `config.json` in a folder, or a single `.safetensors`
  file carrying the config in its metadata. Written by `save_native`, read by `load_native`.

`load_generator(path, device)` dispatches by path and caches generators per process.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..device import resolve_device
from ..errors import ModelUnavailableError
from ..paths import TOY_GAN_DIR
from .networks import Generator, GeneratorConfig
from .safe_pickle import PersistentRecord, safe_load_pickle

log = logging.getLogger(__name__)

NATIVE_FORMAT = "stabledrag-gan"
NATIVE_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_META_KEY = "stabledrag_gan_config"


def is_native_file(path: Path) -> bool:
    """True for a `.safetensors` file written by `save_native` (its config in the metadata).
    Never raises: an unreadable file or another format is False."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return _META_KEY in (f.metadata() or {})
    except Exception:
        return False


def is_native_dir(path: Path) -> bool:
    """True for a folder with `model.safetensors` and a `config.json` of format `NATIVE_FORMAT`.
    Never raises."""
    cfg = path / "config.json"
    if not (path / "model.safetensors").is_file() or not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == NATIVE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False

TOY_MODEL_DIR = TOY_GAN_DIR

# Constructor arguments that change nothing in a float32 forward pass.
_IGNORED_KWARGS = {"fp16_channels_last", "channels_last", "fused_modconv_default", "use_fp16", "epochs"}
_MAPPING_KEYS = {
    "num_layers": "mapping_layers", "embed_features": "embed_features", "layer_features": "layer_features",
    "activation": "mapping_activation", "lr_multiplier": "mapping_lr_multiplier", "w_avg_beta": "w_avg_beta",
}
_SYNTHESIS_KEYS = {
    "channel_base": "channel_base", "channel_max": "channel_max", "num_fp16_res": "num_fp16_res",
    "conv_clamp": "conv_clamp", "architecture": "architecture", "resample_filter": "resample_filter",
    "use_noise": "use_noise", "activation": "activation", "kernel_size": "kernel_size",
}
_TOP_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_STYLEGAN3_MARKERS = ("use_radial_filters", "magnitude_ema_beta", "conv_kernel", "num_critical",
                      "first_cutoff", "first_stopband", "last_stopband_rel", "margin_size", "output_scale")


def _plain(v: Any) -> Any:
    """numpy scalars / EasyDicts / tuples -> plain Python values (for configs and JSON)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return v


# --- official pickles ------------------------------------------------------------------------


def _children(rec: PersistentRecord) -> dict[str, Any]:
    mods = rec.state.get("_modules") or {}
    return dict(mods) if isinstance(mods, dict) else {}


def _walk(rec: PersistentRecord):
    yield rec
    for child in _children(rec).values():
        if isinstance(child, PersistentRecord):
            yield from _walk(child)


def flat_state_dict(rec: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Collect `_parameters` and persistent `_buffers` of `rec` and its children into a flat,
    dotted state dict (the names `nn.Module.state_dict()` would give)."""
    out: dict[str, torch.Tensor] = {}
    state = rec.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        items = state.get(group) or {}
        for name, t in dict(items).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise ModelUnavailableError(f"The checkpoint's {prefix}{name} is not a tensor.")
            out[prefix + name] = t
    for name, child in _children(rec).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise ModelUnavailableError(
                f"The checkpoint's module {prefix}{name} is not a StyleGAN network object; this loader reads only "
                "official stylegan2-ada-pytorch / DragGAN generators."
            )
        out.update(flat_state_dict(child, prefix + name + "."))
    return out


def _init_kwargs(rec: Optional[PersistentRecord], names: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record's constructor keyword arguments, with positional ones named by `names`."""
    if rec is None:
        return {}
    kwargs = dict(rec.state.get("_init_kwargs") or {})
    args = rec.state.get("_init_args") or ()
    for name, value in zip(names, args):
        kwargs.setdefault(name, value)
    return _plain(kwargs)


def _check_stylegan2(g: PersistentRecord, source: str) -> None:
    for rec in _walk(g):
        kwargs = rec.state.get("_init_kwargs") or {}
        if rec.class_name in ("SynthesisInput",) or any(k in kwargs for k in _STYLEGAN3_MARKERS) \
                or "class SynthesisInput" in rec.module_src:
            raise ModelUnavailableError(
                f"{source} is a StyleGAN3 generator, which is not supported; use a StyleGAN2 (or "
                "StyleGAN2-ADA) checkpoint."
            )
    if g.class_name != "Generator":
        raise ModelUnavailableError(
            f"{source}: expected a StyleGAN2 'Generator' under G_ema, found {g.class_name or 'something else'!r}."
        )


def config_from_record(g: PersistentRecord, source: str = "the checkpoint") -> GeneratorConfig:
    """Build a `GeneratorConfig` from a recorded official `Generator` (its own constructor
    arguments and those of its `mapping` / `synthesis` children, which hold every setting in both
    the stylegan2-ada-pytorch and the stylegan3-repository layouts)."""
    _check_stylegan2(g, source)
    top = _init_kwargs(g, ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"))
    kids = _children(g)
    syn = _init_kwargs(kids.get("synthesis"), ("w_dim", "img_resolution", "img_channels"))
    mapk = _init_kwargs(kids.get("mapping"), ("z_dim", "c_dim", "w_dim", "num_ws"))
    # Fall back to the Generator's own nested kwargs (mapping_kwargs / synthesis_kwargs or flat).
    syn_from_top = dict(top.get("synthesis_kwargs") or {})
    syn_from_top.update({k: v for k, v in top.items()
                         if k not in _TOP_KEYS and k not in ("mapping_kwargs", "synthesis_kwargs")})
    for k, v in syn_from_top.items():
        syn.setdefault(k, v)
    for k, v in dict(top.get("mapping_kwargs") or {}).items():
        mapk.setdefault(k, v)

    cfg: dict[str, Any] = {}
    for key in _TOP_KEYS:
        value = top.get(key, syn.get(key, mapk.get(key)))
        if value is None:
            raise ModelUnavailableError(f"{source} does not record the generator's {key}; "
                                        "it is not an official StyleGAN2 pickle.")
        cfg[key] = int(value)
    unknown = []
    for k, v in mapk.items():
        if k in _MAPPING_KEYS:
            cfg[_MAPPING_KEYS[k]] = v
        elif k not in ("z_dim", "c_dim", "w_dim", "num_ws") and k not in _IGNORED_KWARGS:
            unknown.append(f"mapping.{k}")
    for k, v in syn.items():
        if k in _SYNTHESIS_KEYS:
            cfg[_SYNTHESIS_KEYS[k]] = v
        elif k not in ("w_dim", "img_resolution", "img_channels") and k not in _IGNORED_KWARGS:
            unknown.append(f"synthesis.{k}")
    if unknown:
        raise ModelUnavailableError(
            f"{source} uses generator settings this implementation does not know ({', '.join(sorted(unknown))}); "
            "only standard StyleGAN2 generators are supported."
        )
    try:
        return GeneratorConfig(**cfg)
    except (TypeError, ValueError) as e:
        raise ModelUnavailableError(f"{source} has an unsupported generator configuration: {e}") from e


def generator_record(data: Any, source: str = "the checkpoint") -> PersistentRecord:
    """Pick the generator out of an unpickled official snapshot (`G_ema`, else `G`)."""
    if isinstance(data, PersistentRecord):
        return data
    if not isinstance(data, dict):
        raise ModelUnavailableError(f"{source} is not a StyleGAN snapshot (expected a dict with G_ema).")
    for key in ("G_ema", "G"):
        if isinstance(data.get(key), PersistentRecord):
            if key == "G":
                log.warning("%s has no G_ema; using G", source)
            return data[key]
    raise ModelUnavailableError(f"{source} holds no generator (no G_ema); keys: {sorted(map(str, data))}.")


def build_from_record(g: PersistentRecord, source: str = "the checkpoint") -> Generator:
    """A `Generator` with the recorded architecture and weights (loaded with strict=True)."""
    cfg = config_from_record(g, source)
    state = flat_state_dict(g)
    G = Generator(cfg)
    _load_state(G, state, source)
    return G


def _load_state(G: Generator, state: dict[str, torch.Tensor], source: str) -> None:
    own = G.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if bad or missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if bad:
            parts.append(f"wrong shapes {bad[:3]}")
        raise ModelUnavailableError(f"{source} does not match a StyleGAN2 generator of its recorded settings: "
                                    + "; ".join(parts))
    G.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                      strict=True)


def load_pickle(path: str | os.PathLike) -> Generator:
    """Load `G_ema` from an official StyleGAN2 `.pkl` without running anything from it (CPU)."""
    source = Path(path).name
    with open(path, "rb") as f:
        data = safe_load_pickle(f, source)
    return build_from_record(generator_record(data, source), source)


# --- native format ---------------------------------------------------------------------------


def save_native(G: Generator, path: str | os.PathLike) -> Path:
    """Write `G` in the native format. `path` ending in `.safetensors` -> one file with the config
    in its metadata; otherwise a folder with `model.safetensors` and `config.json`. Returns the
    weights file path."""
    from safetensors.torch import save_file

    path = Path(path)
    doc = {"format": NATIVE_FORMAT, "version": NATIVE_VERSION, "generator": G.config.to_dict()}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in G.state_dict().items()}
    meta = {_META_KEY: json.dumps(doc)}
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text(json.dumps(doc, indent=2) + "\n")
    save_file(tensors, str(path / WEIGHTS_NAME), metadata=meta)
    return path / WEIGHTS_NAME


def _native_config(doc: Any, source: str) -> GeneratorConfig:
    if not isinstance(doc, dict) or doc.get("format") != NATIVE_FORMAT:
        raise ModelUnavailableError(f"{source} is not a StableDrag GAN checkpoint (format {NATIVE_FORMAT!r} expected).")
    if int(doc.get("version", 0)) > NATIVE_VERSION:
        raise ModelUnavailableError(f"{source} was written by a newer version of this program; please update.")
    try:
        return GeneratorConfig.from_dict(doc["generator"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelUnavailableError(f"{source} has an invalid generator configuration: {e}") from e


def load_native(path: str | os.PathLike) -> Generator:
    """Read a native checkpoint (folder or `.safetensors` file) into a CPU `Generator`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    source = str(path)
    if not weights.is_file():
        raise ModelUnavailableError(f"{source} has no {WEIGHTS_NAME}.")
    doc = None
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        try:
            doc = json.loads((path / CONFIG_NAME).read_text())
        except json.JSONDecodeError as e:
            raise ModelUnavailableError(f"{path / CONFIG_NAME} is not valid JSON: {e}") from e
    else:
        try:
            with safe_open(str(weights), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ModelUnavailableError(f"{weights} is not a readable .safetensors file: {e}") from e
        if _META_KEY in meta:
            doc = json.loads(meta[_META_KEY])
    if doc is None:
        raise ModelUnavailableError(f"{source} has no generator configuration ({CONFIG_NAME} or safetensors metadata).")
    cfg = _native_config(doc, source)
    G = Generator(cfg)
    _load_state(G, load_file(str(weights)), source)
    return G


# --- dispatch --------------------------------------------------------------------------------

_CACHE: dict[tuple, Generator] = {}


def load_generator(path: str | os.PathLike | None = None, device: Any = None, cache: bool = True) -> Generator:
    """Load a StyleGAN2 generator onto `device` (None = CUDA if available, else CPU).

    path: an official `.pkl`, a native `.safetensors` file or folder, or None for the bundled toy
    model (`assets/models/toy_gan/`). Generators are cached per (file, modification time, device).
    Raises ModelUnavailableError with a clear message when the model is missing or unsupported.
    """
    dev = resolve_device(device)
    if path is None or str(path) == "":
        p = TOY_MODEL_DIR
        if not (p / WEIGHTS_NAME).is_file():
            raise ModelUnavailableError(
                f"The bundled toy GAN is missing ({p} has no {WEIGHTS_NAME}); it is produced by the toy-world "
                "training. Pass a StyleGAN2 checkpoint with --model (an official .pkl or a .safetensors model)."
            )
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise ModelUnavailableError(f"No model at {p}: give an official StyleGAN2 .pkl or a native "
                                        ".safetensors model.")
    weights = p / WEIGHTS_NAME if p.is_dir() else p
    stamp = weights.stat().st_mtime_ns if weights.exists() else 0
    key = (str(p.resolve()), stamp, str(dev))
    if cache and key in _CACHE:
        return _CACHE[key]
    if p.is_dir() or p.suffix == ".safetensors":
        G = load_native(p)
    elif p.suffix == ".pkl":
        G = load_pickle(p)
    else:
        raise ModelUnavailableError(
            f"Do not know how to read {p.name}: use an official StyleGAN2 .pkl, a .safetensors file or a model folder."
        )
    G = G.to(dev)
    if cache:
        _CACHE[key] = G
    log.info("loaded %s (%d px, %d ws) on %s", p, G.img_resolution, G.num_ws, dev)
    return G
