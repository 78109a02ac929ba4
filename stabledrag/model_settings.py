"""A model's own recommended settings: `stabledrag_settings.json` in the model's folder.

A model folder of any engine may carry the drag settings that give good results on it (both bundled
toy models do), and a GAN folder its photo-projection settings. The engines read it
(`stabledrag.diffusion.recommended`, `stabledrag.gan.presets.recommended_overrides`) and the CLI,
the benchmarks and the web app apply it between the method's preset and the user's own settings:
preset < model < user. This module only reads the file; which keys are valid is the engine's
business (its `edit_config` overrides).

File format (JSON object):

    {"about": "free text: where the values come from",
     "edit": {"lr": 0.05, "stop_distance": 1.0},
     "edit_photo": {"max_steps": 600},
     "project": {"pti_steps": 600}}

Each section maps a setting name (str) to a number, string, bool or null: `edit` holds drag
settings (every engine), `edit_photo` drag settings over `edit` for a photo projected into the
model (the CLI's `edit --latent` with a file from `project`, the projected-faces bench, and the
GAN tab's drags on an uploaded photo, under the tab's own fields), and `project` photo-projection
settings (`stabledrag.gan.projection.ProjectionConfig` fields); the last two are for GAN models
only. Other top-level keys are ignored. Models that are not a local folder (hub ids, single files)
have no such file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from .errors import UserError

SETTINGS_FILE = "stabledrag_settings.json"


def settings_path(folder: Optional[str | os.PathLike]) -> Optional[Path]:
    """`folder / SETTINGS_FILE` when `folder` is a local directory holding that file, else None
    (None, a hub id, a single checkpoint file, a folder without it)."""
    if folder is None:
        return None
    root = Path(os.fspath(folder)).expanduser()
    path = root / SETTINGS_FILE
    return path if root.is_dir() and path.is_file() else None


def read_settings(path: str | os.PathLike, section: str = "edit") -> dict[str, Any]:
    """The `section` mapping ("edit", "edit_photo" or "project") of the settings file at `path` (`{}` when it
    has none).

    Raises UserError naming the file when it cannot be read, is not valid JSON, not an object, or
    its `section` entry is not an object of setting -> number/str/bool/null."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Could not read the model's settings {os.fspath(path)!r}: {e}") from None
    entry = data.get(section, {}) if isinstance(data, dict) else None
    if not isinstance(entry, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, (int, float, str, bool))) for k, v in entry.items()):
        raise UserError(f"{os.fspath(path)!r}: expected {{\"{section}\": {{setting: value, ...}}}}")
    return dict(entry)


def folder_overrides(folder: Optional[str | os.PathLike], section: str = "edit") -> dict[str, Any]:
    """The recommended `section` settings in `folder`'s `stabledrag_settings.json`
    (`read_settings`), or `{}` when there is no such file. Raises UserError for a malformed file."""
    path = settings_path(folder)
    return read_settings(path, section) if path is not None else {}
