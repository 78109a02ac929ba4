"""Reading NVlabs StyleGAN2 `.pkl` files without executing anything they contain.

A pickle is a program: every global it names is imported and may be called. Official
StyleGAN pickles additionally store the *source code* of their network classes
(`torch_utils.persistence`) and normally `exec` it while loading. `SafeUnpickler` instead:

- maps `torch_utils.persistence._reconstruct_persistent_obj` to `PersistentRecord`, which keeps
  the class name and the state (`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, ...) as
  plain data and never runs `module_src`;
- maps `dnnlib.util.EasyDict` to a plain dict subclass;
- rebuilds tensors itself: `torch.storage._load_from_bytes` (which, in torch, calls
  `torch.load(..., weights_only=False)` on an inner pickle) is replaced by a parser of that
  legacy storage format whose own unpickler admits nothing but the storage type names;
- admits a short list of harmless numpy/collections/builtins constructors;
- refuses every other global with a `ModelUnavailableError` naming it, before anything runs.

TF-era pickles (`dnnlib.tflib`) are refused with a message saying they are not supported.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import struct
from typing import Any, BinaryIO, Callable, Optional

import numpy as np
import torch

from ..errors import ModelUnavailableError

log = logging.getLogger(__name__)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy (non-zip) serialisation magic number

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


class _Sealed(type):
    """Metaclass whose classes cannot be given new attributes (a pickle's BUILD could try)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise ModelUnavailableError("Refused to load this checkpoint: it tries to modify a class.")


class EasyDict(dict, metaclass=_Sealed):
    """Stand-in for `dnnlib.util.EasyDict`: a dict whose keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PersistentRecord:
    """What `torch_utils.persistence` would have rebuilt, kept as data (its source is never run).

    class_name: e.g. "Generator", "SynthesisLayer". state: the module's `__dict__` as pickled
    (`_parameters`, `_buffers`, `_modules`, `_init_args`, `_init_kwargs`, attributes).
    module_src: the stored source text, kept only so callers can recognise the architecture.
    """

    def __init__(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            raise ModelUnavailableError("Refused to load this checkpoint: a persistent object has malformed metadata.")
        self.type = meta.get("type")
        self.version = meta.get("version")
        self.class_name = str(meta.get("class_name", ""))
        self.module_src = meta.get("module_src") if isinstance(meta.get("module_src"), str) else ""
        state = meta.get("state")
        self.state: dict = state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r})"


def _record_persistent_obj(meta: Any) -> PersistentRecord:
    return PersistentRecord(meta)


# --- tensors ---------------------------------------------------------------------------------


class _StorageRef:
    """A storage named by the inner pickle, filled once its bytes are read."""

    def __init__(self, dtype: torch.dtype, numel: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self.data: Optional[torch.Tensor] = None


class _StorageUnpickler(pickle.Unpickler):
    """The inner pickle of a legacy torch storage: only storage type names are admitted."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__(f)
        self.refs: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise ModelUnavailableError(
            f"Refused to load this checkpoint: a tensor in it asks to run code ({module}.{name})."
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ModelUnavailableError("Refused to load this checkpoint: a tensor has an unknown storage record.")
        dtype, key, numel = pid[1], str(pid[2]), int(pid[4])
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(dtype, torch.dtype):
            raise ModelUnavailableError("Refused to load this checkpoint: a tensor has an unknown storage type.")
        if view is not None:
            raise ModelUnavailableError("This checkpoint stores tensor views, which this loader does not support.")
        if key not in self.refs:
            self.refs[key] = _StorageRef(dtype, numel)
        return self.refs[key]


def load_storage_from_bytes(b: bytes) -> torch.Tensor:
    """Parse one legacy `torch.save(storage)` byte string (what `torch.storage._load_from_bytes`
    receives) into a flat 1-D CPU tensor, without `torch.load` and without running any code.

    Layout: pickled magic number, protocol version, system info; a pickle naming the storage by
    persistent id `('storage', <torch.XStorage>, key, location, numel[, view])`; a pickled key
    list; then per key an int64 element count and the raw (little-endian) bytes.
    """
    if not isinstance(b, (bytes, bytearray)):
        raise ModelUnavailableError("Refused to load this checkpoint: a tensor's data is not a byte string.")
    f = io.BytesIO(b)
    head = _StorageUnpickler(f)
    if head.load() != _LEGACY_MAGIC:
        raise ModelUnavailableError("This checkpoint holds a tensor in an unknown format (bad magic number).")
    head.load()  # protocol version
    sys_info = head.load()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    body = _StorageUnpickler(f)
    result = body.load()
    keys = _StorageUnpickler(f).load()
    if not isinstance(keys, list):
        raise ModelUnavailableError("This checkpoint holds a tensor in an unknown format (no storage keys).")
    for key in keys:
        ref = body.refs.get(str(key))
        if ref is None:
            raise ModelUnavailableError("This checkpoint holds a tensor in an unknown format (unknown storage key).")
        (count,) = struct.unpack("<q" if little else ">q", f.read(8))
        itemsize = torch.empty((), dtype=ref.dtype).element_size()
        raw = f.read(count * itemsize)
        if count < 0 or len(raw) != count * itemsize or count != ref.numel:
            raise ModelUnavailableError("This checkpoint is truncated or corrupt (a tensor's data is short).")
        arr = torch.frombuffer(bytearray(raw), dtype=ref.dtype) if count else torch.empty(0, dtype=ref.dtype)
        if not little and itemsize > 1:
            arr = torch.from_numpy(arr.numpy().byteswap().copy())
        ref.data = arr
    if not isinstance(result, _StorageRef) or result.data is None:
        raise ModelUnavailableError("This checkpoint holds a tensor in an unknown format (missing data).")
    return result.data


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise ModelUnavailableError("Refused to load this checkpoint: a tensor is not backed by plain data.")
    size, stride, offset = [int(s) for s in size], [int(s) for s in stride], int(offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise ModelUnavailableError("This checkpoint is corrupt (a tensor has an invalid shape).")
    if all(s > 0 for s in size):
        last = offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= storage.numel():
            raise ModelUnavailableError("This checkpoint is corrupt (a tensor reaches past its data).")
    return torch.as_strided(storage, size, stride, offset).clone()


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any) -> torch.Tensor:
    return _rebuild_tensor_v2(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: bool = False, backward_hooks: Any = None, *state: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise ModelUnavailableError("This checkpoint is corrupt (a parameter holds no tensor).")
    return data


# --- numpy -----------------------------------------------------------------------------------


def _np_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(spec, str):
        raise ModelUnavailableError("Refused to load this checkpoint: it builds a numpy dtype from a non-string.")
    return np.dtype(spec, bool(align), bool(copy))


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype):
        raise ModelUnavailableError("This checkpoint is corrupt (a numpy scalar has no dtype).")
    if dtype.hasobject:
        return data
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise ModelUnavailableError("This checkpoint is corrupt (a numpy scalar has bad data).")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise ModelUnavailableError("Refused to load this checkpoint: it builds an unusual numpy array type.")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles spell a `bytes` value as `_codecs.encode(str, 'latin1')`."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ModelUnavailableError("Refused to load this checkpoint: it encodes text in an unexpected way.")
    return text.encode("latin1")


# --- the unpickler ---------------------------------------------------------------------------


class _Call:
    """An allow-listed function as the unpickler hands it out: callable, but a pickle's BUILD
    opcode cannot change it (no `__dict__`, no state)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ModelUnavailableError("Refused to load this checkpoint: it tries to modify a function.")

    def __setstate__(self, state: Any) -> None:
        raise ModelUnavailableError("Refused to load this checkpoint: it tries to modify a function.")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Call(_record_persistent_obj),
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _Call(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): _Call(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Call(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Call(_rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): _Call(load_storage_from_bytes),
    ("torch", "Size"): torch.Size,
    ("_codecs", "encode"): _Call(_codecs_encode),
    ("numpy", "dtype"): _Call(_np_dtype),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _Call(_np_scalar),
    ("numpy._core.multiarray", "scalar"): _Call(_np_scalar),
    ("numpy.core.multiarray", "_reconstruct"): _Call(_np_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Call(_np_reconstruct),
}


class SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that admits only the globals an official StyleGAN2 pickle needs.

    `source` names the file in error messages.
    """

    def __init__(self, f: BinaryIO, source: str = "this checkpoint") -> None:
        super().__init__(f)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol <= 2 pickles spell builtins the Python 2 way
            module = "builtins"
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith("dnnlib.tflib"):
            raise ModelUnavailableError(
                f"{self.source} is a TensorFlow-era StyleGAN pickle ({module}.{name}), which is not supported. "
                "Convert it to a PyTorch pickle with NVlabs' stylegan2-ada-pytorch legacy.py first."
            )
        raise ModelUnavailableError(
            f"Refused to load {self.source}: it asks to run code {module}.{name}, which a StyleGAN checkpoint "
            "never needs. Nothing from the file was run. Use checkpoints from a source you trust "
            "(official NVlabs/DragGAN .pkl files or this project's .safetensors format)."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise ModelUnavailableError(f"Refused to load {self.source}: it uses persistent ids, "
                                    "which StyleGAN pickles do not.")


def safe_load_pickle(f: BinaryIO, source: str = "this checkpoint") -> Any:
    """Unpickle `f` with `SafeUnpickler`. Raises ModelUnavailableError for refused content or a
    corrupt file; persistent objects come back as `PersistentRecord`s."""
    try:
        return SafeUnpickler(f, source).load()
    except ModelUnavailableError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, RuntimeError) as e:
        raise ModelUnavailableError(f"Could not read {source}: it is not a valid StyleGAN pickle ({e}).") from e
