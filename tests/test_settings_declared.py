"""The tabs' settings are declared once (`DiffSettings` / `GanSettings` fields made with
`setting`): the widgets, the value checks, and (Diff) the CPU defaults and the model
recommendations all come from those declarations."""

import dataclasses

import gradio as gr
import pytest

from stabledrag.errors import UserError
from stabledrag.webapp import diff_handlers as dh
from stabledrag.webapp import gan_handlers as gh
from stabledrag.webapp.settings_base import Setting
from stabledrag.webapp.settings_widgets import build_panel, widget

SPECS = dh.DiffSettings.specs()


def test_every_numeric_field_is_declared_and_its_defaults_are_accepted():
    assert list(SPECS) == [n for n in dh.DiffSettings.names() if n != "method"]
    gpu, cpu = dh.DiffSettings(), dh.DiffSettings.defaults_for("cpu")
    for name, spec in SPECS.items():
        for value in (getattr(gpu, name), getattr(cpu, name)):
            assert spec.low <= value <= spec.high, name
        if spec.slider is not None:
            assert spec.slider[0] <= getattr(gpu, name) <= spec.slider[1], name
        assert getattr(cpu, name) == (spec.cpu_default if spec.cpu_default is not None else getattr(gpu, name))


def test_the_panel_widgets_are_the_declarations():
    values = dh.DiffSettings.defaults_for("cpu")
    with gr.Blocks():
        panel = build_panel(values)
    assert list(panel) == list(SPECS)
    for name, spec in SPECS.items():
        w = panel[name]
        assert w.label == spec.label and w.value == getattr(values, name), name
        if spec.slider is not None:
            assert isinstance(w, gr.Slider) and (w.minimum, w.maximum, w.step) == spec.slider, name
        else:
            assert isinstance(w, gr.Number) and w.precision == spec.precision, name
    # the GAN tab lays its widgets out itself, each made from its declaration
    with gr.Blocks():
        for name, spec in gh.GanSettings.specs().items():
            w = widget(spec, 3)
            assert w.label == spec.label and w.value == 3
            assert isinstance(w, gr.Slider if spec.slider else gr.Number), name


@pytest.mark.parametrize("cls", [dh.DiffSettings, gh.GanSettings], ids=["diff", "gan"])
def test_values_are_checked_against_the_declared_range(cls):
    specs = cls.specs()
    assert set(specs) == {n for n in cls.names() if n not in ("method", "latent_space")}
    for name, spec in specs.items():
        for bad in (spec.low - 1.5, spec.high * 2 + 1, float("nan")):
            with pytest.raises(UserError, match=spec.error_name.split()[-1]):
                cls.from_values({"method": "StableDrag", name: bad})
        ok = cls.from_values({"method": "StableDrag", name: spec.high})
        assert getattr(ok, name) == spec.high
        if spec.integer:
            with pytest.raises(UserError):
                cls.from_values({"method": "StableDrag", name: spec.low + 0.5})


def test_a_models_recommendation_reaches_the_declared_field_and_the_engine_config():
    changed = {}
    for name, spec in SPECS.items():
        if spec.recommended:
            value = spec.low + (spec.high - spec.low) / 3
            changed[spec.recommended] = int(value) if spec.integer else value
    s = dh.DiffSettings.defaults_for("cpu", changed)
    for key, value in changed.items():
        assert getattr(s, dh.DiffSettings.recommended_fields()[key]) == value
    cfg = s.edit_config()
    assert cfg.lora.steps == changed["lora.steps"] and cfg.inversion.num_steps == changed["inversion.num_steps"]
    assert cfg.drag.max_steps == changed["max_steps"] and cfg.drag.lr == changed["lr"]
    assert dh.DiffSettings.followed_fields() == tuple(n for n, spec in SPECS.items() if spec.follows_model)


def test_a_declaration_whose_widget_offers_refused_values_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        Setting(label="x", error_name="x", low=0, high=10, slider=(0, 20, 1))
    assert all(dataclasses.is_dataclass(spec) for spec in SPECS.values())
