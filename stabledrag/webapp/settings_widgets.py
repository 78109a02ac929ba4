"""A tab's settings panel built from its settings dataclass: one Gradio widget per field declared
with `settings_base.setting` (a slider where the declaration has `slider`, else a number box), in
the declared rows, with the declared label and the given values. The same declarations check the
values that come back (`TabSettings.check_numbers`), so a widget and its check cannot disagree."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .settings_base import Setting, TabSettings


def widget(spec: Setting, value: Any) -> gr.components.Component:
    """The widget of one declared setting showing `value`: `gr.Slider(min, max, step)` for a
    `spec.slider`, else `gr.Number` (with `spec.precision`). Call inside a `gr.Blocks`."""
    if spec.slider is not None:
        low, high, step = spec.slider
        return gr.Slider(low, high, value=value, step=step, label=spec.label)
    return gr.Number(value=value, label=spec.label, precision=spec.precision)


def build_panel(settings: TabSettings) -> dict[str, gr.components.Component]:
    """The widgets of every declared field of `settings` (an instance: its values are shown), one
    `gr.Row` per declared row. Returns `{field name: widget}` in field order. Call inside a
    `gr.Blocks` (e.g. in an Accordion)."""
    specs = type(settings).specs()
    widgets: dict[str, gr.components.Component] = {}
    for row in sorted({spec.row for spec in specs.values()}):
        with gr.Row():
            for name, spec in specs.items():
                if spec.row == row:
                    widgets[name] = widget(spec, getattr(settings, name))
    return {name: widgets[name] for name in specs}
