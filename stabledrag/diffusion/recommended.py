"""A model's own recommended edit settings, read from `stabledrag_settings.json` in its folder.

A diffusers model folder may carry the StableDrag-Diff settings that give good results on it
(the bundled toy model does: its LoRA and DDIM steps, drag lr and stop distance differ from
DragDiffusion's SD 1.5 values). The CLI, the benchmarks and the web app start from these settings
and apply the user's own on top, so one set of settings per model is written once, beside the model.
The file is read by `stabledrag.model_settings` (shared with the GAN engine); this module adds
the diffusion engine's default model.

File format (JSON object):

    {"about": "free text",
     "edit": {"lora.steps": 10, "inversion.num_steps": 20, "lr": 0.05, "stop_distance": 1.0}}

`edit` holds keys of `DiffusionEditConfig.with_overrides`: a drag setting (`DragConfig` field),
a top-level edit field, or `lora.<field>` / `inversion.<field>`. Models without the file (hub
ids, single checkpoint files, SD 1.5 folders) get `{}`: the method presets as they are.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ..model_settings import SETTINGS_FILE, folder_overrides, read_settings

__all__ = ["SETTINGS_FILE", "read_settings", "recommended_overrides"]


def recommended_overrides(model: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """The recommended `with_overrides` settings of `model` (a diffusers folder; None = the
    default model, `loading.default_model`): the folder's `stabledrag_settings.json` `edit` entry
    (`model_settings.folder_overrides`), or `{}` when the model is not a local folder or has no
    such file. Raises UserError naming the file when it is malformed or gives a key or value
    `DiffusionEditConfig.with_overrides` or the limits refuse (checked here, as the GAN engine's
    `presets.recommended_overrides` does, so the CLI, the benches and the app all name the file)."""
    if model is None:
        from .loading import default_model

        model = default_model()
    rec = folder_overrides(model)
    if rec:
        from ..limits import checked_config
        from ..model_settings import settings_path
        from .editor import edit_config_for

        checked_config(lambda: edit_config_for("stabledrag").with_overrides(rec),
                       repr(os.fspath(settings_path(model))))
    return rec
