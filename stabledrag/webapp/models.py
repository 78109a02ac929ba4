"""Which models the menus offer, and the loaded engines behind them.

The menus list only models this process knows: the ones named on the command line, the bundled
toy models when their files exist, checkpoints found in `--models-dir`, and (Diff tab) SD 1.5 by
hub id. A request names a model by its menu label and the server maps the label to a path, so no
input can make the server open a path of its choosing.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelUnavailableError, UserError
from ..paths import SD15_HUB_ID, TOY_GAN_DIR, TOY_SD_DIR
from .args import AppOptions

log = logging.getLogger(__name__)

TOY_GAN_LABEL = "Toy faces (bundled)"
TOY_SD_LABEL = "Toy faces SD (bundled)"
SD15_LABEL = "Stable Diffusion 1.5 (Hugging Face hub)"
_GAN_META_KEY = "stabledrag_gan_config"


@dataclass(frozen=True)
class ModelChoice:
    """One menu entry: `label` shown to people, `spec` given to the loader (path or hub id)."""

    label: str
    spec: str


def _is_native_gan_file(path: Path) -> bool:
    """True for a `.safetensors` file written by `stabledrag.gan.save_native` (config in metadata)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return _GAN_META_KEY in (f.metadata() or {})
    except Exception:  # unreadable or not safetensors: not offered as a GAN
        return False


def _is_native_gan_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path / "model.safetensors").is_file() or not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == "stabledrag-gan"
    except (OSError, ValueError, AttributeError):
        return False


def _unique(choices: list[ModelChoice]) -> list[ModelChoice]:
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
        out.append(ModelChoice(label, c.spec))
    return out


def _scan(models_dir: str | Path) -> tuple[list[ModelChoice], list[ModelChoice]]:
    """(GAN choices, diffusion choices) found directly inside `models_dir`."""
    root = Path(models_dir)
    gans: list[ModelChoice] = []
    diffs: list[ModelChoice] = []
    if not root.is_dir():
        return gans, diffs
    for p in sorted(root.iterdir()):
        if p.is_dir():
            if (p / "model_index.json").is_file():
                diffs.append(ModelChoice(f"{p.name} (models folder)", str(p.resolve())))
            elif _is_native_gan_dir(p):
                gans.append(ModelChoice(f"{p.name} (models folder)", str(p.resolve())))
        elif p.suffix == ".pkl":
            gans.append(ModelChoice(f"{p.name} (models folder)", str(p.resolve())))
        elif p.suffix == ".safetensors":
            target = gans if _is_native_gan_file(p) else diffs
            target.append(ModelChoice(f"{p.name} (models folder)", str(p.resolve())))
        elif p.suffix == ".ckpt":
            diffs.append(ModelChoice(f"{p.name} (models folder)", str(p.resolve())))
    return gans, diffs


def gan_choices(options: AppOptions) -> list[ModelChoice]:
    """GAN menu: `--gan-model`, the bundled toy model (if built), then `--models-dir` checkpoints."""
    out = []
    if options.gan_model:
        out.append(ModelChoice(f"{Path(options.gan_model).name} (--gan-model)", str(Path(options.gan_model).resolve())))
    if (TOY_GAN_DIR / "model.safetensors").is_file():
        out.append(ModelChoice(TOY_GAN_LABEL, str(TOY_GAN_DIR)))
    out += _scan(options.models_dir)[0]
    return _unique(out)


def diffusion_choices(options: AppOptions, prefer_sd15: bool = False) -> list[ModelChoice]:
    """Diff menu: `--diffusion-model`, the bundled toy SD (if built), `--models-dir` models, SD 1.5.
    `prefer_sd15` (a GPU is available) lists SD 1.5 right after `--diffusion-model`."""
    out = []
    sd15 = ModelChoice(SD15_LABEL, SD15_HUB_ID)
    if options.diffusion_model:
        spec = options.diffusion_model
        path = Path(spec).expanduser()
        label = f"{path.name if path.exists() else spec} (--diffusion-model)"
        out.append(ModelChoice(label, str(path.resolve()) if path.exists() else spec))
    if prefer_sd15:
        out.append(sd15)
    if (TOY_SD_DIR / "model_index.json").is_file():
        out.append(ModelChoice(TOY_SD_LABEL, str(TOY_SD_DIR)))
    out += _scan(options.models_dir)[1]
    out.append(sd15)  # dropped by `_unique` when already listed
    return _unique(out)


NO_GAN_MESSAGE = ("No GAN model is available: the bundled toy-faces model (assets/models/toy_gan/) has not "
                  "been built yet and no checkpoint was found in the models folder. Start the app with "
                  "--gan-model PATH (an official StyleGAN2 .pkl or a .safetensors model), or put one in ./models.")


class Engines:
    """The loaded models of this process, shared by every user (loaded once, on first use).

    Requests name models by menu label; `generator(label)` / `diffusion_editor(label)` refuse any
    label that is not on the menus.
    """

    def __init__(self, options: AppOptions) -> None:
        from ..device import choose

        self.options = options
        self.device, self.dtype = choose(options.device, getattr(options, "dtype", None))
        self.gan_menu = gan_choices(options)
        # on a GPU the real SD 1.5 is the useful default; on a CPU the bundled toy model is
        self.diffusion_menu = diffusion_choices(options, prefer_sd15=self.device.type == "cuda")
        self._diffusion_editors: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- menus ---------------------------------------------------------------------------------
    def device_text(self) -> str:
        """E.g. `"cpu, float32"`, for the status lines."""
        return f"{self.device}, {str(self.dtype).removeprefix('torch.')}"

    def _spec(self, menu: list[ModelChoice], label: Optional[str], what: str) -> str:
        for c in menu:
            if c.label == label:
                return c.spec
        if not menu:
            raise ModelUnavailableError(NO_GAN_MESSAGE)
        raise UserError(f"Unknown {what} model {label!r}: pick one from the model menu.")

    # -- engines -------------------------------------------------------------------------------
    def generator(self, label: Optional[str]) -> Any:
        """The StyleGAN2 `Generator` for menu `label` (loaded once, cached by the GAN loader)."""
        from ..gan import load_generator

        spec = self._spec(self.gan_menu, label, "GAN")
        with self._lock:
            return load_generator(spec, self.device)

    def diffusion_recommended(self, label: Optional[str]) -> dict[str, Any]:
        """The recommended settings of menu `label`'s model (its folder's `stabledrag_settings.json`,
        see `stabledrag.diffusion.recommended`); `{}` for none, an unknown label or a bad file
        (logged: the page must still open)."""
        from ..diffusion.recommended import recommended_overrides

        choice = next((c for c in self.diffusion_menu if c.label == label), None)
        if choice is None:
            return {}
        try:
            return recommended_overrides(choice.spec)
        except UserError as e:
            log.warning("ignoring the settings of %s: %s", choice.spec, e)
            return {}

    def diffusion_editor(self, label: Optional[str]) -> Any:
        """The `DiffusionEditor` for menu `label` (one per model; it loads its pipeline on first use
        and keeps LoRA / inversion caches across requests)."""
        from ..diffusion.editor import DiffusionEditor

        spec = self._spec(self.diffusion_menu, label, "diffusion")
        with self._lock:
            if label not in self._diffusion_editors:
                self._diffusion_editors[label] = DiffusionEditor(
                    model=spec, device=str(self.device), dtype=self.dtype, lora_cache_dir=self.options.lora_cache_dir)
            return self._diffusion_editors[label]

    def preload(self) -> None:
        """Load the first model of each menu now (a missing one is logged, not raised: the page
        still starts and says what is missing when the model is used)."""
        if self.gan_menu:
            try:
                self.generator(self.gan_menu[0].label)
            except UserError as e:
                log.warning("GAN model not loaded: %s", e)
        if self.diffusion_menu:
            try:
                _ = self.diffusion_editor(self.diffusion_menu[0].label).pipe
            except UserError as e:
                log.warning("diffusion model not loaded: %s", e)
