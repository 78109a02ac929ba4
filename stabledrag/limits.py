"""Every bound on what one request (web page, API call, session file, command line) may ask for.

The app runs behind public share links, so each input an anonymous sender controls has an upper
bound here, in one place, documented in the README ("Limits"). Readers and validators import
`LIMITS`; tests may pass their own `Limits`.

Units: pixels are width x height of one decoded frame; bytes are bytes; radii are in the pixel
units of the engine's setting (GAN: image px; Diff: feature px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UserError


@dataclass(frozen=True)
class Limits:
    """Upper (and a few lower) bounds on user input.

    max_pixels: decoded image width x height (images and masks). min_side: shortest side accepted.
    max_editor_pixels: each image the region editor sends (background, brush layers, composite).
    max_file_bytes: one image or mask file as sent. max_session_bytes: a session zip as sent.
    max_inflated_bytes: one zip entry after decompression (counted while reading, not as declared).
    max_inflated_total: all entries of one session together, after decompression.
    max_json_depth: nesting of session.json / report.json. max_points: handle/target pairs.
    max_radius: r_m and r_p. max_prompt_chars: prompt length. max_steps: drag / LoRA / DDIM steps.
    max_seed: seeds are 0 <= seed <= max_seed (fits numpy, torch and Gradio's JS numbers).
    max_lr: learning rates (drag step size, LoRA lr).
    """

    max_pixels: int = 40_000_000
    max_editor_pixels: int = 16_000_000
    min_side: int = 16
    max_file_bytes: int = 25 * 2**20
    max_session_bytes: int = 40 * 2**20
    max_inflated_bytes: int = 32 * 2**20
    max_inflated_total: int = 64 * 2**20
    max_json_depth: int = 32
    max_points: int = 64
    max_radius: float = 64.0
    max_prompt_chars: int = 1000
    max_steps: int = 2000
    max_seed: int = 2**31 - 1
    max_lr: float = 1.0


LIMITS = Limits()


def finite_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                  integer: bool = False) -> float | int:
    """`value` as a finite float (or int when `integer`) within [low, high].

    Accepts numbers and numeric strings; NaN, +-inf, booleans, text and out-of-range values raise
    UserError naming the setting `name` and the allowed range. Integers must be whole numbers.
    """
    rng = _range_text(low, high, integer)
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or value is None:
        raise UserError(f"{name} must be {kind}{rng}.")
    try:
        x = value if isinstance(value, int) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{name} must be {kind}{rng}, not {str(value)[:40]!r}.") from None
    if isinstance(x, float) and not math.isfinite(x):
        raise UserError(f"{name} must be a finite number{rng}, not {x}.")
    if integer and isinstance(x, float):
        if x != int(x):
            raise UserError(f"{name} must be a whole number{rng}, not {x:g}.")
        x = int(x)
    if (low is not None and x < low) or (high is not None and x > high):
        got = str(x) if integer else f"{x:g}"
        raise UserError(f"{name} must be {kind}{rng}; got {got}.")
    return x


def _range_text(low: float | None, high: float | None, integer: bool = False) -> str:
    def fmt(v: float) -> str:
        return str(int(v)) if integer or float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"

    if low is not None and high is not None:
        return f" between {fmt(low)} and {fmt(high)}"
    if low is not None:
        return f" of at least {fmt(low)}"
    if high is not None:
        return f" of at most {fmt(high)}"
    return ""


def check_seed(value: Any, name: str = "The seed", limits: Limits = LIMITS) -> int:
    """A seed as an int in [0, limits.max_seed]; UserError otherwise (NaN, inf, -1, 2**63, text)."""
    return int(finite_number(value, name, low=0, high=limits.max_seed, integer=True))


def check_prompt(prompt: Any, limits: Limits = LIMITS) -> str:
    """The prompt as a str of at most `limits.max_prompt_chars` characters; UserError otherwise."""
    text = "" if prompt is None else str(prompt)
    if len(text) > limits.max_prompt_chars:
        raise UserError(f"The prompt is too long ({len(text)} characters); use at most "
                        f"{limits.max_prompt_chars}. Stable Diffusion reads only its first 77 tokens anyway.")
    return text


def check_point_count(n_pairs: int, limits: Limits = LIMITS) -> None:
    """UserError when more than `limits.max_points` handle/target pairs are given."""
    if n_pairs > limits.max_points:
        raise UserError(f"Too many drag pairs ({n_pairs}); use at most {limits.max_points}.")


#: Ranges of the numeric fields of the engine configs (DragConfig, IdentityLoraConfig,
#: InversionConfig, DiffusionEditConfig), by field name; every other number only has to be finite.
def config_bounds(limits: Limits = LIMITS) -> dict[str, tuple[float, float]]:
    """field name -> (low, high) for `check_drag_config`."""
    return {"r_m": (0, limits.max_radius), "r_p": (0, limits.max_radius), "max_steps": (0, limits.max_steps),
            "steps": (0, limits.max_steps), "num_steps": (1, limits.max_steps), "tau": (0, 1),
            "lr": (0, limits.max_lr), "stop_distance": (0, 1e4), "seed": (0, limits.max_seed),
            "strength": (0.01, 1), "rank": (1, 256), "batch_size": (1, 64), "resolution": (64, 4096),
            "train_points": (1, 1000), "train_radius": (0, 4 * limits.max_radius),
            "supervise_min_distance": (0, 1e4), "lambda_mask": (0, 1e6)}


def check_drag_config(cfg: Any, limits: Limits = LIMITS) -> None:
    """Check every number in an engine config dataclass (nested ones too): finite, whole where the
    field is an int, and within `config_bounds`. UserError naming the first bad field, so a CLI
    `--set tau=nan` or `--set r_p=1e9` fails before any model work starts."""
    import dataclasses

    bounds = config_bounds(limits)
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            check_drag_config(v, limits)
            continue
        numeric_field = isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
        if isinstance(v, bool) or not (isinstance(v, (int, float)) or (numeric_field and isinstance(v, str))):
            continue
        low, high = bounds.get(f.name, (None, None))
        integer = isinstance(f.default, int) and not isinstance(f.default, bool)
        finite_number(v, f.name, low=low, high=high, integer=integer)


def checked_config(build: Callable[[], Any], where: str, limits: Limits = LIMITS) -> Any:
    """The engine config `build()` returns, checked by `check_drag_config`. A TypeError / ValueError
    from `build` (a setting of the wrong type, an unknown name) or a UserError from either becomes
    one UserError "Bad drag setting in {where}: ..." (`where`: "--set", a settings file's path), so
    a bad value fails before any model work with one line that says where it came from."""
    try:
        cfg = build()
        check_drag_config(cfg, limits)
    except (TypeError, ValueError, UserError) as e:
        raise UserError(f"Bad drag setting in {where}: {e}") from None
    return cfg
