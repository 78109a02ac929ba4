"""What both tabs' settings dataclasses share: their field names in UI order, the step from raw
UI values (any extra keys, a method's menu label) to constructor arguments, and `Setting`, the one
declaration of a setting (label, accepted range, widget, default, CPU default, the model
recommendation it follows) from which the tab builds its widget (`settings_widgets`) and checks
its value (`TabSettings.check_numbers`). No Gradio here."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

log = logging.getLogger(__name__)


#: The menu label of the "baseline" method on both tabs: nearest-neighbour tracking and plain
#: supervision (DragGAN's / DragDiffusion's algorithm) on *our* tuned settings, which is not
#: DragGAN or DragDiffusion as published (those are the "reference settings" entries).
BASELINE_LABEL = "Baseline (nearest-neighbour tracking, our settings)"


@dataclass(frozen=True)
class Setting:
    """One numeric setting of a tab, declared once (attach it to a dataclass field with `setting`).

    label: the widget's label. error_name: how a message names it ("The LoRA rank must be ...").
    low, high, integer: the values accepted (from the widget, the API and imported sessions;
      `stabledrag.limits.finite_number` checks them). The widget may offer less (`slider`).
    slider: `(minimum, maximum, step)` of a slider widget; None = a number box.
    precision: decimals of a number box (0 = whole numbers; None = any).
    row: the settings panel's row the widget sits in (rows in increasing order, fields in order).
    cpu_default: the default without a GPU (None: the field's default everywhere).
    recommended: the key a model's recommended settings use for it (the engine's `edit_config`
      overrides: "lora.steps", "lr", "r_p", ...; None: models do not set it).
    follows_model: the widget is reset to the model's recommendation when another model is chosen.
    """

    label: str
    error_name: str
    low: float
    high: float
    integer: bool = False
    slider: Optional[tuple[float, float, float]] = None
    precision: Optional[int] = None
    row: int = 0
    cpu_default: Any = None
    recommended: Optional[str] = None
    follows_model: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"{self.label}: low {self.low} > high {self.high}")
        if self.slider is not None and not self.low <= self.slider[0] <= self.slider[1] <= self.high:
            raise ValueError(f"{self.label}: the slider {self.slider} offers values outside [{self.low}, {self.high}]")


def setting(default: Any, **spec: Any) -> Any:
    """A dataclass field with default `default` that carries its `Setting(**spec)` declaration."""
    return dataclasses.field(default=default, metadata={"setting": Setting(**spec)})


class TabSettings:
    """Mixin for a settings dataclass; subclasses set `METHOD_LABELS` (menu label -> method key),
    `OLD_METHOD_LABELS` (labels of earlier versions, still read from sessions and the API) and
    `OLD_FIELD_NAMES` (former field name -> today's, e.g. "drag_lr" -> "lr": settings of session
    files written before the rename still import)."""

    METHOD_LABELS: ClassVar[dict[str, str]] = {}
    OLD_METHOD_LABELS: ClassVar[dict[str, str]] = {}
    OLD_FIELD_NAMES: ClassVar[dict[str, str]] = {}

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with former field names (`OLD_FIELD_NAMES`) renamed to today's; where both
        names are present, today's wins. Other keys are kept as they are."""
        out = {cls.OLD_FIELD_NAMES.get(k, k): v for k, v in values.items() if k in cls.OLD_FIELD_NAMES}
        out.update({k: v for k, v in values.items() if k not in cls.OLD_FIELD_NAMES})
        return out

    @classmethod
    def specs(cls) -> dict[str, Setting]:
        """The fields declared with `setting`, in UI order: `{field name: Setting}`."""
        return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls) if "setting" in f.metadata}

    @classmethod
    def bounds(cls) -> dict[str, tuple[float, float, bool, str]]:
        """`{field: (low, high, integer, error_name)}`: the accepted range of each declared setting."""
        return {name: (s.low, s.high, s.integer, s.error_name) for name, s in cls.specs().items()}

    def check_numbers(self) -> None:
        """Replace each numeric field named in `bounds()` by its checked value (finite, within the
        range, whole where `integer`); UserError naming the setting otherwise (NaN, inf, text,
        2**63 seeds, r_p = 1e6 ...). A None value (automatic) is left as it is."""
        from ..limits import finite_number

        for name, (low, high, integer, label) in self.bounds().items():
            value = getattr(self, name)
            if value is None:
                continue
            setattr(self, name, finite_number(value, label, low=low, high=high, integer=integer))

    @classmethod
    def names(cls) -> list[str]:
        """Field names in the order the UI lists them."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def known_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The entries of `values` that are fields (former names renamed, see `upgrade`), with a
        method label (current or old) mapped to its key."""
        known = {k: v for k, v in cls.upgrade(values).items() if k in cls.names()}
        labels = {**cls.OLD_METHOD_LABELS, **cls.METHOD_LABELS}
        if isinstance(known.get("method"), str) and known["method"] in labels:
            known["method"] = labels[known["method"]]
        return known

    @classmethod
    def method_label(cls, key: str) -> str:
        """The menu label of a method key (the key itself when it has none)."""
        return next((label for label, k in cls.METHOD_LABELS.items() if k == key), key)

    def ui_values(self) -> dict[str, Any]:
        """Values for the UI inputs: the fields, the method as its menu label."""
        d = dataclasses.asdict(self)
        d["method"] = self.method_label(d["method"])
        return d

    # -- a model's recommended settings ---------------------------------------------------------
    @classmethod
    def recommended_fields(cls) -> dict[str, str]:
        """Keys of a model's recommended settings (the engine's `edit_config` overrides, e.g.
        "lora.steps", "lr", "r_p") -> the tab fields that show them."""
        return {spec.recommended: name for name, spec in cls.specs().items() if spec.recommended}

    @classmethod
    def followed_fields(cls) -> tuple[str, ...]:
        """The fields that follow the chosen model (`Setting.follows_model`), in UI order."""
        return tuple(name for name, spec in cls.specs().items() if spec.follows_model)

    @classmethod
    def defaults_for(cls, device_type: str, recommended: Optional[dict[str, Any]] = None) -> Any:
        """The tab's defaults on a `device_type` ("cuda", "cpu", ...) device: the fields' defaults,
        their `cpu_default` without a GPU, and over both the chosen model's `recommended` settings
        (the engine's `AppEngine.recommended`, keys of its `edit_config` overrides) for the fields
        that show them (`recommended_fields`), since they were measured on that model. Keys the
        tab has no field for are ignored here (`model_only` passes them to the engine), and so is
        (logged) a value that is not a number within the field's range: a bad value in a model's
        file must not stop the page."""
        from ..errors import UserError
        from ..limits import finite_number

        specs = cls.specs()
        cpu = {name: spec.cpu_default for name, spec in specs.items() if spec.cpu_default is not None}
        s = cls() if device_type == "cuda" else cls(**cpu)
        for key, value in (recommended or {}).items():
            name = cls.recommended_fields().get(key)
            if name is None:
                continue
            spec = specs[name]
            try:
                value = finite_number(value, spec.error_name, low=spec.low, high=spec.high, integer=spec.integer)
            except UserError as e:
                log.warning("ignoring the model's setting %s=%r: %s", key, value, e)
                continue
            setattr(s, name, int(value) if spec.integer else float(value))
        return s

    @classmethod
    def model_values(cls, device_type: str, recommended: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The UI values of the fields that follow the model (`followed_fields`) when a model with
        `recommended` settings is chosen: its values where it has them, else this device's defaults."""
        values = cls.defaults_for(device_type, recommended).ui_values()
        return {name: values[name] for name in cls.followed_fields()}

    @classmethod
    def model_change(cls, device_type: str, recommended: Optional[dict[str, Any]],
                     previous: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The UI values to change when the person picks a model with `recommended` settings after
        one with `previous` settings: of the fields that follow the model (`followed_fields`), those
        the new model recommends get its value, those only the previous model recommended go back
        to this device's default, and the others are left out (they keep the person's value: a
        model without a settings file does not reset 500 steps to 200). `{field: UI value}`."""
        fields = cls.recommended_fields()
        followed = cls.followed_fields()

        def set_by(rec: Optional[dict[str, Any]]) -> set[str]:
            return {fields[key] for key in (rec or {}) if fields.get(key) in followed}

        changed = set_by(recommended) | set_by(previous)
        values = cls.defaults_for(device_type, recommended).ui_values()
        return {name: values[name] for name in followed if name in changed}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (the method as its key), as sessions store it."""
        return dataclasses.asdict(self)

    @classmethod
    def model_only(cls, recommended: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The entries of a model's `recommended` settings that no tab field shows (e.g. the
        diffusion engine's "lora.batch_size", the GAN's "stop_distance"): the tab passes them to
        the engine's `edit_config` under its own fields' values."""
        fields = cls.recommended_fields()
        return {k: v for k, v in (recommended or {}).items() if k not in fields}


def tab_config(build: Callable[[dict[str, Any]], Any], overrides: dict[str, Any],
               from_model: dict[str, Any]) -> Any:
    """`build(overrides)` (an engine's `edit_config` for a method and image) checked as the CLI's
    (`stabledrag.limits.checked_config`: every number of the config finite and within its range,
    the keys a tab has no field for, `from_model` (a model's `stop_distance`, `sigma`...), too).

    UserError "Bad drag setting in ...: ..." naming where the bad value came from: the chosen
    model's settings file (`stabledrag.model_settings.SETTINGS_FILE`) when the config builds and
    checks without the `from_model` keys, else the tab's settings."""
    from ..errors import UserError
    from ..limits import checked_config
    from ..model_settings import SETTINGS_FILE

    try:
        return checked_config(lambda: build(overrides), "the tab's settings")
    except UserError as e:
        error = e
    model_keys = [k for k in from_model if k in overrides]
    if model_keys:
        try:
            checked_config(lambda: build({k: v for k, v in overrides.items() if k not in model_keys}), "")
        except UserError:
            raise error from None
        checked_config(lambda: build(overrides), f"the chosen model's {SETTINGS_FILE}")
    raise error
