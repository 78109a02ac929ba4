"""Which models the menus offer, and the loaded models behind them.

Everything engine-specific comes from the engine registry (`stabledrag.engine.get(name)`, the
`AppEngine` protocol): which files of `--models-dir` are an engine's models, its menu (the model
named on the command line, its bundled toy model when built, the models-folder entries, a hub
default), how to load a model and its recommended settings. A request names a model by its menu
label and the server maps the label to a path, so no input can make the server open a path of
its choosing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Optional

from .. import engine as registry
from ..engine import ModelChoice
from ..errors import ModelUnavailableError, UserError
from .args import AppOptions

log = logging.getLogger(__name__)

__all__ = ["Engines", "ModelChoice", "scan_models_dir", "menu_for"]


def _unique(choices: list[ModelChoice]) -> list[ModelChoice]:
    """`choices` without repeated specs (the first kept), labels made unique with " (2)", " (3)"..."""
    seen: set[str] = set()
    specs: set[str] = set()
    out = []
    for c in choices:
        if c.spec in specs:
            continue
        label = c.label
        k = 2
        while label in seen:
            label = f"{c.label} ({k})"
            k += 1
        seen.add(label)
        specs.add(c.spec)
        out.append(dataclasses.replace(c, label=label))
    return out


def scan_models_dir(models_dir: str | Path) -> dict[str, list[Path]]:
    """`{engine name: entries}` found directly inside `models_dir`: each file or folder goes to the
    registered app engine most sure it is one of its models (`AppEngine.claim`; ties: registry
    order); entries no engine claims (notes, images) are left out."""
    engines = registry.app_engines()
    found: dict[str, list[Path]] = {e.name: [] for e in engines}
    root = Path(models_dir)
    if not root.is_dir():
        return found
    for p in sorted(root.iterdir()):
        best, owner = 0, None
        for e in engines:
            score = e.claim(p)
            if score > best:
                best, owner = score, e.name
        if owner is not None:
            found[owner].append(p)
    return found


def menu_for(name: str, options: AppOptions, on_gpu: bool = False,
             found: Optional[dict[str, list[Path]]] = None) -> list[ModelChoice]:
    """The model menu of engine `name`: `--<name>-model`, its bundled model, its `--models-dir`
    entries and hub default (`AppEngine.model_choices`), repeats dropped."""
    found = found if found is not None else scan_models_dir(options.models_dir)
    named = getattr(options, f"{name}_model", None)
    return _unique(registry.get(name).model_choices(named, found.get(name, []), on_gpu))


class Engines:
    """The app's engines (`stabledrag.engine.app_engines()`) and the models of this process,
    shared by every user (each loaded once, on first use).

    menus: `{engine name: [ModelChoice]}`. Requests name models by menu label; `model(name, label)`
    refuses any label that is not on that engine's menu.
    """

    def __init__(self, options: AppOptions) -> None:
        from ..device import choose

        self.options = options
        self.device, self.dtype = choose(options.device, getattr(options, "dtype", None))
        found = scan_models_dir(options.models_dir)
        # on a GPU the real SD 1.5 is the useful default; on a CPU the bundled toy model is
        self.menus: dict[str, list[ModelChoice]] = {
            e.name: menu_for(e.name, options, self.device.type == "cuda", found) for e in registry.app_engines()}
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # -- menus ---------------------------------------------------------------------------------
    def device_text(self) -> str:
        """E.g. `"cpu, float32"`, for the status lines."""
        return f"{self.device}, {str(self.dtype).removeprefix('torch.')}"

    def engine(self, name: str) -> Any:
        """The registered `AppEngine` `name`."""
        return registry.get(name)

    def menu(self, name: str) -> list[ModelChoice]:
        """Engine `name`'s menu (empty when it has no model)."""
        return self.menus.get(name, [])

    def labels(self, name: str) -> list[str]:
        """The menu labels of engine `name`."""
        return [c.label for c in self.menu(name)]

    def choice(self, name: str, label: Optional[str]) -> Optional[ModelChoice]:
        """The menu entry `label` of engine `name`, or None."""
        return next((c for c in self.menu(name) if c.label == label), None)

    def no_model_message(self, name: str) -> str:
        """What the page says when engine `name` has no model."""
        return self.engine(name).no_model_message

    # -- models --------------------------------------------------------------------------------
    def spec(self, name: str, label: Optional[str]) -> str:
        """Engine `name`'s model spec (path or id) for menu `label`. ModelUnavailableError when the
        engine has no model; UserError for a label not in its menu."""
        choice = self.choice(name, label)
        if choice is not None:
            return choice.spec
        if not self.menu(name):
            raise ModelUnavailableError(self.no_model_message(name))
        raise UserError(f"Unknown {'GAN' if name == 'gan' else name} model {label!r}: pick one from the model menu.")

    def model(self, name: str, label: Optional[str]) -> Any:
        """Engine `name`'s model for menu `label` (`AppEngine.load`, once per label: e.g. the GAN's
        `Generator`, or a `DiffusionEditor` that loads its pipeline on first use and keeps LoRA /
        inversion caches across requests)."""
        spec = self.spec(name, label)
        with self._lock:
            key = (name, str(label))
            if key not in self._models:
                self._models[key] = self.engine(name).load(spec, self.device, self.dtype,
                                                           self.options.lora_cache_dir)
            return self._models[key]

    def recommended(self, name: str, label: Optional[str], strict: bool = False, photo: bool = False
                    ) -> dict[str, Any]:
        """The recommended settings of menu `label`'s model (`AppEngine.recommended`: e.g. its
        folder's `stabledrag_settings.json`; with `photo`, a GAN model's settings for a projected
        photo, `edit_photo` over `edit`); `{}` for none or an unknown label. A malformed file is
        logged and gives `{}` (the page must still open), or with `strict` (a run about to use the
        model) raises its UserError, so the person sees what is wrong."""
        choice = self.choice(name, label)
        if choice is None:
            return {}
        try:
            return self.engine(name).recommended(choice.spec, photo=photo)
        except UserError as e:
            if strict:
                raise
            log.warning("ignoring the settings of %s: %s", choice.spec, e)
            return {}

    def preload(self) -> None:
        """Load the first model of each menu now (a missing one is logged, not raised: the page
        still starts and says what is missing when the model is used)."""
        for name, menu in self.menus.items():
            if not menu:
                continue
            try:
                self.engine(name).warm_up(self.model(name, menu[0].label))
            except UserError as e:
                log.warning("%s model not loaded: %s", name, e)
