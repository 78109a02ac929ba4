"""What an engine offers the CLI, the benchmarks and the web app, and the registry of engines.

A drag engine (Stable Diffusion, StyleGAN2, ...) is a `Backend` (`stabledrag.drag`: the drag loop's
five methods) plus an `Engine` (this module): how to load its model and make the initial state from
an image or a seed, its own command-line options, and its runners for `bench toy`. Adding a third
engine is "implement `Backend` + `Engine`, `register` it": the CLI (`edit --backend NAME`) and
`bench toy --backend NAME` pick it up from here.

The web app (`stabledrag.webapp`) reaches the engines only through this registry: an engine that
also implements `AppEngine` (its models for the menus, loading one, its editor, its recommended
settings and its edit config) can back a tab, and one that implements `PhotoProjector` can take an
uploaded photo (GAN inversion). Session files name their engine by its registry name.

The built-in engines are registered by module path and imported only when first asked for, so
this module (and the core) imports no engine.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class Option:
    """One engine-only command-line option of `edit`: argparse `flags` and keyword arguments.
    Its default must be None / False / [] (unset), so that the CLI can refuse it for other engines."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The argparse attribute name (`--lora-steps` -> `lora_steps`)."""
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


@dataclass
class EditOutcome:
    """What one CLI edit produced.

    image: `H x W x 3` uint8 result (the size the user's image or the model's output has).
    status: the drag's status ("reached", "max_steps", "cancelled", "diverged").
    steps: drag steps run. final_distances: per pair, handle-target distance in image px.
    report: the engine's own JSON-ready details (config, timings, trajectories, model...).
    error: a message when the drag stopped early (diverged), else None.
    """

    image: np.ndarray
    status: str
    steps: int
    final_distances: list[float]
    report: dict[str, Any]
    error: Optional[str] = None


#: `bench toy` runner: `(source(i, seed) -> image, run(image, case, method) -> (image, status, outcome), meta)`.
ToyRunner = tuple[Callable[..., np.ndarray], Callable[..., tuple], dict[str, Any]]


@runtime_checkable
class Engine(Protocol):
    """A drag engine as the CLI and the benchmarks see it.

    name: the `--backend` value. help: one line for `--help`. options: its `edit` options (the CLI
    refuses them for other engines). default_cases / step_tracking: `bench toy` defaults.
    """

    name: str
    help: str
    options: tuple[Option, ...]
    default_cases: int
    step_tracking: bool

    def edit(self, args: argparse.Namespace, progress: Any) -> EditOutcome:
        """Load the model (`args.model`), make the initial state (from `args.image` or a seed), drag
        the points of `args.drag` (image px) with `args.method`'s preset and `args.set` overrides.
        Raises UserError for bad input (before loading a model where it can)."""
        ...

    def toy_runner(self, device: Optional[str], model: Optional[str], overrides: dict[str, Any],
                   step_tracking: bool) -> ToyRunner:
        """The `bench toy` source of toy-face images and the function that drags one case."""
        ...


@dataclass(frozen=True)
class ModelChoice:
    """One model-menu entry of the web app: `label` shown to people, `spec` given to the engine's
    `load` (a path or hub id the server found itself; requests name a model by label only).
    toy: the bundled toy-faces model (the page then offers the toy-face examples)."""

    label: str
    spec: str
    toy: bool = False


@dataclass
class Projection:
    """A photo projected into a model (`PhotoProjector.project`).

    latent: `1 x num_ws x w_dim` float32 (W+). image: its rendering `R x R x 3` uint8 (with the
    tuned weights). weight_delta: `{parameter name: tuned - original}` float32 arrays (pivotal
    tuning; empty without it). metrics: JSON-ready quality numbers (psnr, ssim, ..., "pti": bool).
    """

    latent: np.ndarray
    image: np.ndarray
    weight_delta: dict[str, np.ndarray]
    metrics: dict[str, Any]


@runtime_checkable
class AppEngine(Engine, Protocol):
    """What the web app needs of an engine on top of `Engine` (one tab per such engine).

    no_model_message: what the page says when the engine's menu is empty (how to get a model).
    An engine may also set `title`, how the page names its tab (see `title`; default: its name).
    """

    no_model_message: str

    def claim(self, path: Path) -> int:
        """How sure the engine is that `path` (a file or folder inside the app's models folder) is
        one of its models: 0 = not its, 1 = by the name only, 2 = by the contents. The app lists
        each entry under the engine most sure of it (ties: registry order). Never raises."""
        ...

    def model_choices(self, named: Optional[str], found: Sequence[Path], on_gpu: bool) -> list[ModelChoice]:
        """The engine's model menu, best default first: `named` (the app's `--<name>-model`, a path
        or hub id, or None), its bundled model when built, the models-folder entries it claimed
        (`found`), and any hub default (listed earlier when `on_gpu`)."""
        ...

    def load(self, spec: str, device: Any, dtype: Any, cache_dir: Optional[str]) -> Any:
        """The model of menu spec `spec` on `device` (`torch.device`) in `dtype` (weights where the
        engine uses it), caching in `cache_dir` where the engine caches (None = its default). It may
        load lazily (see `warm_up`). ModelUnavailableError when the model cannot be had."""
        ...

    def warm_up(self, model: Any) -> None:
        """Load a lazily loaded `model` now (start-up preloading). ModelUnavailableError as `load`."""
        ...

    def editor(self, model: Any, weight_delta: Optional[dict[str, np.ndarray]] = None) -> Any:
        """An editor on `model` (`GanEditor` / `DiffusionEditor`: what the engine's tab drives).
        weight_delta: tuned weights from `PhotoProjector.project` (UserError when they do not fit
        the model or the engine has no such tuning)."""
        ...

    def recommended(self, spec: Optional[str], photo: bool = False) -> dict[str, Any]:
        """The drag settings recommended for the model of `spec` (its folder's info file; keys as
        `edit_config`'s overrides); `{}` when it has none. `photo`: for a photo projected into the
        model (engines that project photos may recommend other settings then; the others ignore
        it). UserError for a malformed file."""
        ...

    def edit_config(self, method: str, overrides: dict[str, Any],
                    image_size: Optional[tuple[int, int]] = None) -> Any:
        """The engine's config for `method`'s preset with `overrides` (keys as `edit --set`: a
        `DragConfig` field such as "max_steps", "lr", or an engine key such as "lora.steps") applied
        in order, for an image of `image_size` `(W, H)` px where the preset depends on it.
        ValueError / UserError for an unknown method, key or bad value."""
        ...


@runtime_checkable
class PhotoProjector(Protocol):
    """Optional capability: project a user's photo into the model, so that it can be dragged
    (GAN inversion; the edit is pasted back into the photo). Crops are `[left, top, right, bottom,
    width, height, resolution]` lists (photo px, right/bottom exclusive)."""

    def align_photo(self, model: Any, photo: np.ndarray, crop: Optional[list[int]] = None
                    ) -> tuple[np.ndarray, list[int]]:
        """(`photo` cropped to a square and resized to the model's size, the crop). `crop` given:
        that crop again. UserError when the model cannot take photos."""
        ...

    def projection_config(self, spec: Optional[str] = None, pti: bool = True, steps_scale: float = 1.0) -> Any:
        """The projection settings of the model at `spec` (a menu entry's spec; its own recommended
        ones over the defaults), phase steps times `steps_scale`; `pti` False: no pivotal tuning.
        UserError when the model's settings file is malformed."""
        ...

    def refine_config(self, config: Any, pti: bool) -> Any:
        """`config` changed to continue an earlier projection gently ("More steps")."""
        ...

    def project(self, model: Any, image: np.ndarray, config: Any, crop: list[int], *,
                start: Optional[Projection] = None, progress: Any = None, cancel: Any = None,
                preview_every: int = 0) -> Projection:
        """Project the aligned `image` with `config` (continuing from `start` when given), reporting
        `Progress` (with previews every `preview_every` steps) and stopping on `cancel` (Cancelled)."""
        ...

    def paste_back(self, photo: np.ndarray, image: np.ndarray, crop: list[int]) -> np.ndarray:
        """The edited model-size `image` put back into `photo` where `crop` came from."""
        ...


_BUILTIN = {"diffusion": "stabledrag.diffusion.engine:DiffusionEngine", "gan": "stabledrag.gan.engine:GanEngine"}
#: The web-app tab titles of the built-in engines (by registry name, so that an engine derived from
#: a built-in one under another name does not take its title).
_BUILTIN_TITLES = {"diffusion": "StableDrag-Diff", "gan": "StableDrag-GAN"}
_REGISTRY: dict[str, Engine] = {}


def register(engine: Engine) -> Engine:
    """Add `engine` under `engine.name` (replacing one of that name); returns it."""
    if not isinstance(engine, Engine):
        raise TypeError(f"{engine!r} does not implement the Engine protocol")
    _REGISTRY[engine.name] = engine
    return engine


def unregister(name: str) -> None:
    """Remove the engine `name` (a no-op when absent); built-ins come back on the next `get`."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """The registered engine names, built-ins first."""
    return list(_BUILTIN) + [n for n in _REGISTRY if n not in _BUILTIN]


def get(name: str) -> Engine:
    """The engine `name` (built-ins are imported on first use). UserError for an unknown name."""
    if name not in _REGISTRY and name in _BUILTIN:
        module, cls = _BUILTIN[name].split(":")
        register(getattr(importlib.import_module(module), cls)())
    if name not in _REGISTRY:
        raise UserError(f"Unknown engine {name!r}; known: {', '.join(names())}.")
    return _REGISTRY[name]


def title(name: str) -> str:
    """How the web app names engine `name`'s tab ("StableDrag-GAN"): the engine's `title` attribute
    when it has one (an engine registered from outside sets it), else the built-in engines' titles
    (`_BUILTIN_TITLES`, by registry name: an engine derived from a built-in one under another name
    does not take its title), else the name. UserError for an unknown name."""
    own = getattr(get(name), "title", None)
    if isinstance(own, str) and own.strip():
        return own
    return _BUILTIN_TITLES.get(name, name)


def all_engines() -> list[Engine]:
    """Every registered engine (built-ins imported)."""
    return [get(n) for n in names()]


def app_engines() -> list[AppEngine]:
    """The registered engines that can back a web-app tab (`AppEngine`), in registry order."""
    return [e for e in all_engines() if isinstance(e, AppEngine)]


def refuse_foreign_options(args: argparse.Namespace, engine: Engine, engines: Sequence[Engine]) -> None:
    """UserError when `args` sets an option that belongs to another engine than `engine` (an option
    counts as set when its value is not None / False / empty)."""
    own = {o.dest for o in engine.options}
    for other in engines:
        if other.name == engine.name:
            continue
        for opt in other.options:
            if opt.dest in own:
                continue
            if getattr(args, opt.dest, None) not in (None, False, [], ""):
                raise UserError(f"{opt.flags[0]} is for --backend {other.name}; drop it with --backend {engine.name}.")
