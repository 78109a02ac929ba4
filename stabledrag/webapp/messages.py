"""Exceptions -> one message a person can act on (the page never shows a stack trace).

`UserError` (and `ModelUnavailableError`) already carry such a message. Out-of-memory, stopped
work, unreadable files and anything unexpected get a fixed sentence; unexpected errors are
logged with their traceback on the server, since they are bugs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import ModelUnavailableError, UserError
from ..progress import Cancelled

log = logging.getLogger(__name__)

OOM_MESSAGE = ("Out of GPU memory. Try a smaller image, fewer points, fewer LoRA steps, or close other "
               "programs using the GPU; your image, points and mask are kept.")
STOPPED_MESSAGE = "Stopped. Your image, points and mask are kept; press Run again to start over."
BUG_MESSAGE = ("Something went wrong inside the app ({kind}). Your image, points and mask are kept; "
               "export the session and report it if it happens again.")


#: What the web app offers instead of the library's command-line hints (`--model`, `--config-dir`).
APP_MODEL_HINT = ("Start the app with --diffusion-model /path/to/diffusers-folder (a folder with model_index.json) "
                  "or put such a folder in ./models (--models-dir), or fill the Hugging Face cache (HF_HOME) on a "
                  "machine with internet access and copy it over. Photos need SD 1.5 (about 4 GB) and, for "
                  "edits in minutes, a GPU; the bundled toy model draws only toy faces.")
_CLI_HINT_STARTS = ("Point at local files instead", "Pass --config-dir", "Give its configs with --config-dir")


def app_model_hint(text: str) -> str:
    """A loader message with its command-line advice (options `python app.py` does not have)
    replaced by `APP_MODEL_HINT`."""
    cut = min((text.find(m) for m in _CLI_HINT_STARTS if m in text), default=-1)
    if cut < 0 and "--config-dir" not in text and "--model " not in text:
        return text
    head = text[:cut].rstrip() if cut >= 0 else text.split("--")[0].rstrip()
    return (head + " " if head else "") + APP_MODEL_HINT


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (torch raises several types for them)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "mps backend out of memory" in text)


#: An absolute POSIX or Windows path (not the path part of a URL: no ':' or '/' right before it).
_PATH = re.compile(r"(?<![\w.:/~])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"/\\,;()]+[/\\])+([^\s'\"/\\,;()]*)")


def hide_paths(text: str) -> str:
    """`text` with every absolute server path shortened to its last part (`/root/.cache/hf/hub` ->
    `…/hub`), so messages shown to anonymous users do not reveal the server's layout."""
    return _PATH.sub(lambda m: "…/" + m.group(1) if m.group(1) else "…", str(text))


def hide_paths_in(obj: Any) -> Any:
    """`hide_paths` applied to every string of a JSON-like object (dicts, lists); a copy."""
    if isinstance(obj, str):
        return hide_paths(obj)
    if isinstance(obj, dict):
        return {k: hide_paths_in(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [hide_paths_in(v) for v in obj]
    return obj


def user_message(exc: BaseException) -> str:
    """The sentence to show in the page for `exc` (server paths hidden, see `hide_paths`)."""
    return hide_paths(_message(exc))


def _message(exc: BaseException) -> str:
    if isinstance(exc, ModelUnavailableError):
        return f"Model not available: {app_model_hint(str(exc))}"
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, Cancelled):
        return STOPPED_MESSAGE
    if is_out_of_memory(exc):
        _free_gpu_memory()
        return OOM_MESSAGE
    log.error("unexpected error in a web handler", exc_info=exc)
    return BUG_MESSAGE.format(kind=type(exc).__name__)


def _free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # freeing memory is best effort after an OOM
        pass
