"""ZeroGPU support without depending on it.

On a Hugging Face ZeroGPU Space, functions that use the GPU must be decorated with
`spaces.GPU`; everywhere else the decorator must do nothing. `gpu` is `spaces.GPU` when the
`spaces` package is importable (it already returns the function unchanged unless the env var
SPACES_ZERO_GPU is set), and a shim with the same two call forms otherwise:

    @gpu                      def f(...): ...
    @gpu(duration=120)        def g(...): ...   # generators too
"""

from __future__ import annotations

import os
from typing import Any, Callable


def on_spaces() -> bool:
    """True when running inside a Hugging Face Space (SPACE_ID is set there)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    """True on ZeroGPU hardware (the `spaces` package reads the same variable)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")


def _shim(fn: Callable | None = None, **_kwargs: Any) -> Any:
    """`spaces.GPU` look-alike that returns the function unchanged."""
    if fn is not None and callable(fn):
        return fn
    return lambda f: f


def _resolve() -> Callable:
    if not on_zero_gpu():
        # Off ZeroGPU the real decorator is a no-op as well; skipping the import keeps start-up fast.
        return _shim
    try:
        import spaces  # noqa: F401  (must be imported before CUDA is initialised)
    except ImportError:  # ZeroGPU without the package cannot happen on Spaces; be lenient elsewhere
        return _shim
    return spaces.GPU


gpu = _resolve()
