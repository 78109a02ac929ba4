"""A model's own recommended edit settings, read from `stabledrag_settings.json` in its folder.

A diffusers model folder may carry the StableDrag-Diff settings that give good results on it
(the bundled toy model does: its LoRA and DDIM steps, drag lr and stop distance differ from
DragDiffusion's SD 1.5 values). The CLI, the benchmarks and the web app start from these settings
and apply the user's own on top, so one set of settings per model is written once, beside the model.

File format (JSON object):

    {"about": "free text",
     "edit": {"lora.steps": 10, "inversion.num_steps": 20, "lr": 0.05, "stop_distance": 1.0}}

`edit` holds keys of `DiffusionEditConfig.with_overrides`: a drag setting (`DragConfig` field),
a top-level edit field, or `lora.<field>` / `inversion.<field>`. Models without the file (hub
ids, single checkpoint files, SD 1.5 folders) get `{}`: the method presets as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError

SETTINGS_FILE = "stabledrag_settings.json"


def settings_path(model: Optional[str | os.PathLike]) -> Optional[Path]:
    """The settings file of `model` (a diffusers folder; None = the default model), or None when
    the model is not a local folder or the folder has no such file."""
    if model is None:
        from .loading import default_model

        model = default_model()
    folder = Path(os.fspath(model)).expanduser()
    path = folder / SETTINGS_FILE
    return path if folder.is_dir() and path.is_file() else None


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The `edit` mapping of a settings file (`{}` when it has none).

    Raises UserError naming the file when it is not valid JSON, not an object, or its `edit`
    entry is not an object of setting -> number/str/bool/null."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Could not read the model's settings {os.fspath(path)!r}: {e}") from None
    edit = data.get("edit", {}) if isinstance(data, dict) else None
    if not isinstance(edit, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, (int, float, str, bool))) for k, v in edit.items()):
        raise UserError(f"{os.fspath(path)!r}: expected {{\"edit\": {{setting: value, ...}}}}")
    return dict(edit)


def recommended_overrides(model: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """The recommended `with_overrides` settings of `model` (None = the default model): the
    folder's `stabledrag_settings.json` `edit` entry, or `{}` when there is none.
    Raises UserError for a malformed file."""
    path = settings_path(model)
    return read_settings(path) if path is not None else {}
