"""What an engine offers the CLI, the benchmarks and (later) the web app, and the registry of engines.

A drag engine (Stable Diffusion, StyleGAN2, ...) is a `Backend` (`stabledrag.drag`: the drag loop's
five methods) plus an `Engine` (this module): how to load its model and make the initial state from
an image or a seed, its own command-line options, and its runners for `bench toy`. Adding a third
engine is "implement `Backend` + `Engine`, `register` it": the CLI (`edit --backend NAME`) and
`bench toy --backend NAME` pick it up from here.

The built-in engines are registered by module path and imported only when first asked for, so
this module (and the core) imports no engine.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
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

    def edit(self, args: argparse.Namespace, points: Any, progress: Any) -> EditOutcome:
        """Load the model (`args.model`), make the initial state (from `args.image` or a seed), drag
        `points` (`DragPoints`, image px) with `args.method`'s preset and `args.set` overrides.
        Raises UserError for bad input (before loading a model where it can)."""
        ...

    def toy_runner(self, device: Optional[str], model: Optional[str], overrides: dict[str, Any],
                   step_tracking: bool) -> ToyRunner:
        """The `bench toy` source of toy-face images and the function that drags one case."""
        ...


_BUILTIN = {"diffusion": "stabledrag.diffusion.engine:DiffusionEngine", "gan": "stabledrag.gan.engine:GanEngine"}
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


def all_engines() -> list[Engine]:
    """Every registered engine (built-ins imported)."""
    return [get(n) for n in names()]


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
