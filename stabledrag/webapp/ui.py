"""The Gradio page: one function per tab, events wired to the plain handlers.

Every event goes through `_call` / `_stream`, which turn a handler's `View` into Gradio outputs
and any exception into a message in the page (a `gr.Warning` toast and the tab's status box),
never a stack trace. GPU-bound events share one queue (`concurrency_id="gpu"`, one at a time);
light events (clicks, undo, loading an image) run beside them.

Security with --share / on Spaces: uploads and session files arrive as bytes and examples as
pixels, model menus hold labels that the server maps to the files it discovered (Gradio also
refuses values outside a menu), there is no free-text path input, and no `allowed_paths` are
given, so the server serves only what it produced itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator, Optional

import gradio as gr

from ..engine import title as engine_title
from ..progress import CancelToken
from . import diff_handlers as dh
from . import fair_queue, marker_drag
from . import gan_handlers as gh
from .args import AppOptions
from .examples import PHOTO_NOTE, examples_for_model, list_examples, load_example
from .gan_projection_ui import build_photo_controls, wire_photo_controls
from .messages import user_message
from .models import Engines
from .safe_editor import SafeImageEditor
from .settings_widgets import build_panel, widget
from .spaces_compat import gpu, on_zero_gpu
from .state import ZOOM_FACTORS, DiffState, GanState
from . import views
from .views import (KEEP, View, add_point, clear_points, delete_pair, drag_marker, redo_point, refresh_region,
                    set_points_text, set_zoom, undo_point)

log = logging.getLogger(__name__)

GPU_QUEUE = "gpu"
#: The region editors' empty canvas. Gradio's editor sizes a restored layer by the union of its
#: layers and the default canvas (800 x 800 unless set), and centres the layer in it, so a layer
#: given back with a smaller image landed shifted right and down; a canvas smaller than any image
#: keeps the restored layer exactly on its background.
EDITOR_MIN_CANVAS = (32, 32)
NOTHING_TO_STOP = "Nothing is running, so there is nothing to stop."
#: Seconds of ZeroGPU time asked for per call (ignored elsewhere).
ZERO_GPU_DURATION = 120

INTRO = """# StableDrag Studio
Point-based image editing: click a **handle** (red) on the content, then its **target** (blue), press
**Run** (Diff) or **Start** (GAN), and watch the content move. *StableDrag-Diff* edits pictures with Stable
Diffusion; *StableDrag-GAN* edits images a StyleGAN2 generates, live.
"""

HOW_IT_WORKS = """**StableDrag** ([Cui et al., CVPR 2024, arXiv 2403.04437](https://arxiv.org/abs/2403.04437)) moves
each handle by repeating two steps: *motion supervision* (optimise the latent so the features around the handle
shift one small step towards the target) and *point tracking* (find where the handle went). It changes two
things over DragGAN / DragDiffusion:

1. **Discriminative point tracking.** Instead of looking for the nearest feature to the original handle, a small
   tracking model, fitted to the first image, scores every candidate position; the highest score is the new
   handle and its value is the **confidence** shown per handle while dragging.
2. **Confidence-based latent enhancement.** While the confidence stays above **tau**, the handle's current features
   supervise the next step; when it falls below tau the **template** (the original handle's features) is used
   instead, so the content keeps its look. The status marks such steps "(template)".

The distance shown per handle is the tracker's estimate of where the handle is, which is what the drag
optimises; judge the picture itself. **Compare** (on both tabs) runs StableDrag and the baseline from the same
image and points, side by side. The *baseline* is DragGAN's / DragDiffusion's algorithm (nearest-neighbour
tracking, plain supervision) on our tuned settings; "DragGAN / DragDiffusion (reference settings)" runs it with
the published settings.
"""

#: Caption above the before/after slider.
SLIDER_CAPTION = '<div class="sd-caption"><span>◀ before</span><span>after ▶</span></div>'


CSS = """
#diff_status textarea, #gan_status textarea { font-size: 0.95em; }
.sd-small-buttons button { min-width: 0; }
.sd-progress { display: flex; flex-direction: column; gap: 4px; font-size: 0.9em; }
.sd-progress progress { width: 100%; height: 12px; accent-color: #6366f1; }
.sd-caption { display: flex; justify-content: space-between; font-size: 0.85em; opacity: 0.8; padding: 0 8px; }
.sd-step { margin: 0 0 2px 2px; font-size: 0.95em; }
.sd-help { font-size: 0.85em; opacity: 0.85; }
"""


# -- cancel tokens per browser session ---------------------------------------------------------------


class CancelTokens:
    """The Stop buttons' bookkeeping: one `CancelToken` per *job*, never per session.

    `arm` (the Start/Run click, before the job is queued) makes a fresh token for the session and
    tab; `begin` (the job starting) takes it, or a fresh one for API calls that skip `arm`;
    `stop` cancels only an armed or running job and answers whether there was one, so a Stop sent
    while idle cannot stop the next Start; `end` forgets the job. Running jobs are never evicted;
    armed-but-not-started tokens are capped at `MAX_ARMED` (oldest dropped), so made-up session ids
    cannot push a real user's running job out of reach.
    """

    MAX_ARMED = 10_000

    def __init__(self) -> None:
        self._armed: dict[tuple[str, str], CancelToken] = {}
        self._running: dict[tuple[str, str], CancelToken] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(request: Optional[gr.Request], tab: str) -> tuple[str, str]:
        return (getattr(request, "session_hash", None) or "anonymous", tab)

    def arm(self, request: Optional[gr.Request], tab: str) -> CancelToken:
        """A fresh token for the job `request`'s session is about to queue in `tab`."""
        key = self._key(request, tab)
        with self._lock:
            self._armed.pop(key, None)
            while len(self._armed) >= self.MAX_ARMED:
                self._armed.pop(next(iter(self._armed)))
            token = self._armed[key] = CancelToken()
            return token

    def begin(self, request: Optional[gr.Request], tab: str) -> CancelToken:
        """The token of the job now starting (the armed one, else a fresh one)."""
        key = self._key(request, tab)
        with self._lock:
            token = self._armed.pop(key, None) or CancelToken()
            self._running[key] = token
            return token

    def end(self, request: Optional[gr.Request], tab: str, token: CancelToken) -> None:
        """Forget the job of `token` (a newer job of the session keeps its own)."""
        key = self._key(request, tab)
        with self._lock:
            if self._running.get(key) is token:
                del self._running[key]

    def stop(self, request: Optional[gr.Request], tab: str) -> bool:
        """Cancel the session's running (else armed) job in `tab`; False when there is none."""
        key = self._key(request, tab)
        with self._lock:
            token = self._running.get(key) or self._armed.get(key)
        if token is None:
            return False
        token.cancel()
        return True

    def busy(self, request: Optional[gr.Request], tab: str) -> bool:
        """True while a job of that session and tab is armed (queued) or running."""
        key = self._key(request, tab)
        with self._lock:
            return key in self._armed or key in self._running

    def __len__(self) -> int:
        with self._lock:
            return len(self._armed) + len(self._running)


# -- View -> outputs -----------------------------------------------------------------------------------


class Outputs:
    """The output components of a tab, in View order, plus its settings inputs."""

    def __init__(self, components: dict[str, gr.components.Component], settings: dict[str, gr.components.Component],
                 status_name: str = "status") -> None:
        self.names = [n for n in View.names() if n in components]
        self.components = [components[n] for n in self.names]
        self.settings_names = list(settings)
        self.settings_components = list(settings.values())
        self.status_index = self.names.index(status_name)

    @property
    def all(self) -> list[gr.components.Component]:
        """Every output component (View fields, then settings)."""
        return self.components + self.settings_components

    def values(self, view: View) -> list[Any]:
        """Output values for `view` (KEEP -> gr.skip())."""
        out = [gr.skip() if getattr(view, n) is KEEP else _output(n, getattr(view, n)) for n in self.names]
        out += [view.settings.get(n, gr.skip()) for n in self.settings_names]
        return out

    def error(self, exc: BaseException) -> list[Any]:
        """Outputs showing the message for `exc` in the status box; everything else unchanged."""
        msg = user_message(exc)
        gr.Warning(msg)
        out = [gr.skip()] * len(self.all)
        out[self.status_index] = msg
        if "progress" in self.names:
            out[self.names.index("progress")] = ""
        return out


def _tab_outputs(tab: str, settings: dict[str, gr.components.Component],
                 **components: gr.components.Component) -> Outputs:
    """The `Outputs` of tab `tab` ("diff" / "gan"): `components` by View field name, and its
    `settings` widgets, each one without an `elem_id` given `<tab>_<setting name>` (the page's
    tests and scripts find them by it)."""
    for name, comp in settings.items():
        comp.elem_id = comp.elem_id or f"{tab}_{name}"
    return Outputs(components, settings)


def _output(name: str, value: Any) -> Any:
    """A View field's value for Gradio: the download button is clickable only while it has a file."""
    if name == "download":
        return gr.update(value=value, interactive=value is not None)
    return value


def _call(outputs: Outputs, fn: Callable[..., View], *args: Any) -> list[Any]:
    try:
        return outputs.values(fn(*args))
    except Exception as e:  # every failure becomes a message in the page
        return outputs.error(e)


def _stream(outputs: Outputs, gen: Callable[..., Iterator[View]], *args: Any) -> Iterator[list[Any]]:
    try:
        for view in gen(*args):
            yield outputs.values(view)
    except Exception as e:  # every failure becomes a message in the page
        yield outputs.error(e)


def _settings_dict(names: list[str], values: Any) -> dict[str, Any]:
    return dict(zip(names, values))


def _signed(names: list[str], request: bool = False, progress: bool = False) -> Callable[[Callable], Callable]:
    """Give a `def f(*args)` handler a signature with one named parameter per input (so the API
    documents `lora_steps`, not `param_5`), plus `request: gr.Request` / `progress=gr.Progress()`,
    which Gradio then passes as the last positional arguments."""
    import inspect

    def deco(fn: Callable) -> Callable:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter(n, kind) for n in names]
        annotations: dict[str, Any] = {}
        if request:
            params.append(inspect.Parameter("request", kind, annotation=gr.Request))
            annotations["request"] = gr.Request
        if progress:
            params.append(inspect.Parameter("progress", kind, default=gr.Progress()))
        fn.__signature__ = inspect.Signature(params)
        fn.__annotations__ = annotations
        return fn

    return deco


def _streamed_job(tokens: CancelTokens, tab: str, out: Outputs, names: list[str],
                  start: Callable[[list, CancelToken, Any], Iterator[View]]) -> Callable:
    """A GPU event handler with one parameter per input in `names` that streams the Views of
    `start(inputs, token, progress)` under the job's own Stop token (`CancelTokens` of `tab`)."""

    @gpu(duration=ZERO_GPU_DURATION)
    @_signed(names, request=True, progress=True)
    def job(*args):
        *inputs, request, progress = args
        token = tokens.begin(request, tab)
        try:
            yield from _stream(out, lambda: start(inputs, token, progress))
        finally:
            tokens.end(request, tab, token)

    return job


def _status_markdown(engines: Engines, what: str, model: Optional[str]) -> str:
    return f"**Device:** {engines.device_text()} · **{what} model:** {model or 'none available'}"


def _gallery_items(examples: list) -> list:
    return [(load_example(e), e.name) for e in examples]


def _model_change(engines: Engines, name: str, settings_cls: Any, label: Optional[str],
                  previous: Optional[str]) -> list[Any]:
    """The outputs of a model pick on engine `name`'s tab: one per field that follows the model
    (`settings_cls.followed_fields()`), the new value where `TabSettings.model_change` changes it
    (the fields the new model recommends, and those only the `previous` model recommended back to
    the default), else `gr.skip()` (the person's value stays); then `label`, the new shown model."""
    change = settings_cls.model_change(engines.device.type, engines.recommended(name, label),
                                       engines.recommended(name, previous))
    return [change[f] if f in change else gr.skip() for f in settings_cls.followed_fields()] + [label]


# -- StableDrag-Diff --------------------------------------------------------------------------------------


#: How points are edited, under each point canvas.
POINT_HELP = ("Drag a marker to move it, or click it to select it (yellow ring), then click where it should go; "
              "click it again to leave it. "
              "Undo / Redo cover placing, moving, deleting and clearing. Zoom enlarges part of the image (pan "
              "with the sliders) so small parts get room; clicks land on the exact image pixel.")


class PointTools:
    """The controls under a point canvas: Undo, Redo, Clear, delete pair k, and the zoom."""

    def __init__(self, prefix: str) -> None:
        with gr.Row(elem_classes="sd-small-buttons"):
            self.undo = gr.Button("Undo", size="sm", elem_id=f"{prefix}_undo")
            self.redo = gr.Button("Redo", size="sm", elem_id=f"{prefix}_redo")
            self.clear = gr.Button("Clear points", size="sm", elem_id=f"{prefix}_clear")
            self.pair_no = gr.Number(value=1, precision=0, minimum=1, label="Pair", show_label=False, min_width=60,
                                     elem_id=f"{prefix}_pair_number")
            self.delete = gr.Button("Delete this pair", size="sm", elem_id=f"{prefix}_delete_pair")
        with gr.Row(equal_height=True):
            self.zoom = gr.Radio([f"{f}×" for f in ZOOM_FACTORS], value="1×", label="Zoom", scale=2, min_width=240,
                                 elem_id=f"{prefix}_zoom")
            self.zoom_x = gr.Slider(0, 100, value=50, step=1, label="Centre x (%)", scale=1, min_width=110,
                                    elem_id=f"{prefix}_zoom_x")
            self.zoom_y = gr.Slider(0, 100, value=50, step=1, label="Centre y (%)", scale=1, min_width=110,
                                    elem_id=f"{prefix}_zoom_y")
        gr.Markdown(POINT_HELP, elem_classes="sd-help", elem_id=f"{prefix}_point_help")
        # what the page script (marker_drag) sends after a marker drag: in the page, never shown
        self.drag_text = gr.Textbox(visible="hidden", elem_id=marker_drag.drag_box_id(prefix))
        self.drag_button = gr.Button("Move the dragged marker", visible="hidden",
                                     elem_id=marker_drag.drag_button_id(prefix))


def _compare_panel(prefix: str) -> tuple[Any, Any]:
    """The "Comparison" panel (image, table) both tabs show under their result."""
    with gr.Accordion("Comparison: StableDrag vs the baseline from the same image and points", open=True,
                      elem_id=f"{prefix}_compare_panel"):
        with gr.Row(equal_height=False):
            image = gr.Image(label="Comparison (each method's handle trajectory drawn)", type="numpy",
                             format="png", interactive=False, height=300, elem_id=f"{prefix}_compare_image")
            table = gr.Markdown("Press **Compare** to run both methods on the current points.",
                                elem_id=f"{prefix}_compare_table")
    return image, table


def _session_panel(prefix: str, contents: str) -> tuple[Any, Any, Any]:
    """The "Session: export / import" panel of a tab: (export button, exported file, import file).
    contents: what a session holds, for the title ("image, points, region, settings")."""
    with gr.Accordion(f"Session: export / import ({contents})", open=False, elem_id=f"{prefix}_session_panel"):
        with gr.Row():
            export_btn = gr.Button("Export session", elem_id=f"{prefix}_export")
            session_file = gr.File(label="Exported session", interactive=False, elem_id=f"{prefix}_session_file")
            import_file = gr.File(label="Import a session (.zip)", file_types=[".zip"], type="binary",
                                  elem_id=f"{prefix}_session_import")
    return export_btn, session_file, import_file


COMPARE_BUTTON = "Compare: StableDrag vs the baseline on these points"


def _wire_point_editing(prefix: str, out: Outputs, st: Callable[[Any], Any], state: Any, canvas: Any,
                        tools: PointTools, points_btn: Any, points_text: Any, region_btn: Any, editor: Any) -> None:
    """Wire the point/region editing events that both tabs share (click, undo, redo, clear, delete a
    pair, zoom, a marker dragged with the mouse, points as text, region refresh, also on every editor
    change) to the shared view functions; API names are `<prefix>_undo`, `<prefix>_redo`, `<prefix>_clear`, ..."""

    def on_click(s, evt: gr.SelectData):
        return _call(out, add_point, st(s), evt)

    def on_drag(s, drag):
        return _call(out, drag_marker, st(s), drag)

    def on_undo(s):
        return _call(out, undo_point, st(s))

    def on_redo(s):
        return _call(out, redo_point, st(s))

    def on_clear(s):
        return _call(out, clear_points, st(s))

    def on_points(s, text):
        return _call(out, set_points_text, st(s), text)

    def on_region(s, region):
        return _call(out, refresh_region, st(s), region)

    def on_region_change(s, region):
        return _call(out, refresh_region, st(s), region, True)

    def on_delete(s, number):
        return _call(out, delete_pair, st(s), number)

    def on_zoom(s, zoom, x, y):
        return _call(out, set_zoom, st(s), zoom, x, y)

    canvas.select(on_click, [state], out.all, api_visibility="undocumented", show_progress="hidden")
    tools.drag_button.click(on_drag, [state, tools.drag_text], out.all, js=marker_drag.button_js(prefix),
                            api_name=f"{prefix}_drag_marker", show_progress="hidden")
    tools.undo.click(on_undo, [state], out.all, api_name=f"{prefix}_undo", show_progress="hidden")
    tools.redo.click(on_redo, [state], out.all, api_name=f"{prefix}_redo", show_progress="hidden")
    tools.clear.click(on_clear, [state], out.all, api_name=f"{prefix}_clear", show_progress="hidden")
    tools.delete.click(on_delete, [state, tools.pair_no], out.all, api_name=f"{prefix}_delete_pair",
                       show_progress="hidden")
    zoom_inputs = [state, tools.zoom, tools.zoom_x, tools.zoom_y]
    tools.zoom.change(on_zoom, zoom_inputs, out.all, api_name=f"{prefix}_zoom", show_progress="hidden")
    for slider in (tools.zoom_x, tools.zoom_y):
        slider.release(on_zoom, zoom_inputs, out.all, api_visibility="undocumented", show_progress="hidden")
    points_btn.click(on_points, [state, points_text], out.all, api_name=f"{prefix}_points", show_progress="hidden")
    region_btn.click(on_region, [state, editor], out.all, api_name=f"{prefix}_region", show_progress="hidden")
    editor.change(on_region_change, [state, editor], out.all, api_visibility="undocumented", trigger_mode="always_last",
                  show_progress="hidden")


def build_diff_tab(engines: Engines, options: AppOptions, tokens: CancelTokens) -> None:
    """The StableDrag-Diff tab (call inside a `gr.Blocks`)."""
    menu = engines.labels("diffusion")
    all_examples = list_examples()

    def is_toy(label: Optional[str]) -> bool:
        choice = engines.choice("diffusion", label)
        return choice is not None and choice.toy

    def shown_examples(label: Optional[str]) -> list:
        return examples_for_model(all_examples, toy_model=is_toy(label))

    def examples_note(label: Optional[str]) -> str:
        return f"ℹ️ {PHOTO_NOTE}" if is_toy(label) else ""

    examples = shown_examples(menu[0] if menu else None)
    d = dh.DiffSettings.defaults_for(engines.device.type, engines.recommended("diffusion", menu[0] if menu else None))
    state = gr.State(None)
    shown_model = gr.State(menu[0] if menu else None)  # the model whose settings the panel shows
    status_md = gr.Markdown(_status_markdown(engines, "Diffusion", menu[0] if menu else None), elem_id="diff_info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            upload = gr.File(label="1. Upload an image (PNG, JPEG, WebP)", file_types=["image"], type="binary",
                             height=150, elem_id="diff_upload")
            gr.Markdown("…or pick an example", elem_classes="sd-step")
            gallery = gr.Gallery(value=_gallery_items(examples), label="Examples", show_label=False, buttons=[],
                                 columns=max(3, len(examples)), height=130, allow_preview=False,
                                 object_fit="cover", elem_id="diff_examples", visible=bool(examples))
            photo_note = gr.Markdown(examples_note(menu[0] if menu else None), elem_id="diff_examples_note")
        with gr.Column(scale=1):
            gr.Markdown("**2. Paint the region that may change** (optional)", elem_classes="sd-step")
            editor = SafeImageEditor(label="2. Paint the region that may change (optional)", show_label=False,
                                     type="numpy",
                                     image_mode="RGBA", sources=(), transforms=(), layers=False, height=420,
                                     canvas_size=EDITOR_MIN_CANVAS,
                                    brush=gr.Brush(default_size=24, colors=["#ff00b4"], color_mode="fixed"),
                                    eraser=gr.Eraser(default_size=24), elem_id="diff_editor")
            region_btn = gr.Button("Show painted region on the points image", size="sm", elem_id="diff_region")
        with gr.Column(scale=1):
            canvas = gr.Image(label="3. Click a handle, then its target", type="numpy", format="png",
                              interactive=False, height=420, elem_id="diff_canvas")
            tools = PointTools("diff")
            with gr.Accordion("Points as text", open=False, elem_id="diff_points_panel"):
                points_text = gr.Textbox(label="handle x,y : target x,y (image pixels), pairs separated by spaces",
                                         placeholder="40,60:70,60", elem_id="diff_points")
                points_btn = gr.Button("Use these points", size="sm")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            model = gr.Dropdown(menu, value=menu[0] if menu else None, label="Model", elem_id="diff_model")
            prompt = gr.Textbox(label="Prompt (describe the image)", placeholder="a photo of a cat",
                                elem_id="diff_prompt")
            method = gr.Radio(list(dh.METHODS), value=dh.method_label(d.method), label="Method", elem_id="diff_method")
            with gr.Accordion("Advanced settings", open=False):
                gr.Markdown("LoRA, DDIM and drag steps, drag lr and stop distance follow the chosen model: a model "
                            "folder's own recommended settings (the bundled toy model has them), else "
                            + ("DragDiffusion's (80 LoRA, 50 DDIM, 80 drag steps)." if engines.device.type == "cuda"
                               else f"lighter ones without a GPU ({dh.CPU_LORA_STEPS} LoRA, {dh.CPU_DDIM_STEPS} DDIM, "
                                    f"{dh.CPU_DRAG_STEPS} drag steps; DragDiffusion uses 80, 50 and 80)."),
                            elem_id="diff_settings_note")
                panel = build_panel(d)
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary", elem_id="diff_run")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="diff_stop")
            compare_btn = gr.Button(COMPARE_BUTTON, elem_id="diff_compare")
            progress = gr.HTML("", elem_id="diff_progress")
            status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="diff_status",
                                value="Upload an image or pick an example.")
        with gr.Column(scale=2):
            gr.HTML(SLIDER_CAPTION)
            result = gr.ImageSlider(label="Before / after (live preview while dragging)", format="png",
                                    elem_id="diff_result", max_height=520)
            with gr.Row():
                download = gr.DownloadButton("Download result (PNG)", value=None, interactive=False,
                                             elem_id="diff_download")
                animation = gr.Image(label="Drag animation (GIF)", interactive=False, height=180,
                                     elem_id="diff_animation")
    compare_img, compare_table = _compare_panel("diff")
    export_btn, session_file, import_file = _session_panel("diff", "image, points, region, settings")

    settings = {"method": method, **panel}
    assert list(settings) == dh.DiffSettings.names()
    setting_names = list(settings)
    out = _tab_outputs("diff", settings, state=state, canvas=canvas, editor=editor, result=result,
                       points_text=points_text, status=status, progress=progress, download=download,
                       animation=animation, session_file=session_file, compare=compare_img,
                       compare_table=compare_table, prompt=prompt)
    max_side = options.max_image_side

    def st(s: Optional[DiffState]) -> DiffState:
        return s if s is not None else DiffState()

    def on_upload(s, image):
        return _call(out, dh.new_image, st(s), image, "the uploaded image", max_side)

    def on_example(s, model_label, evt: gr.SelectData):
        return _call(out, dh.choose_example, st(s), shown_examples(model_label)[evt.index], max_side)

    def arm(request: gr.Request):
        tokens.arm(request, "diff")

    def stop(request: gr.Request):
        gr.Info("Stopping after the current step…" if tokens.stop(request, "diff") else NOTHING_TO_STOP)

    def diff_job(run: Callable) -> Callable:
        """A streamed Diff job (`dh.run_edit` / `dh.run_compare`) with its own Stop token."""

        def start(inputs, token, progress):
            s, ed, model_label, prompt_text, *values = inputs
            settings_ = dh.DiffSettings.from_values(_settings_dict(setting_names, values))
            return run(st(s), ed, prompt_text, settings_, lambda: engines.model("diffusion", model_label),
                       cancel=token, progress=progress)

        return _streamed_job(tokens, "diff", out, ["s", "region", "model", "prompt", *setting_names], start)

    on_run = diff_job(dh.run_edit)
    on_compare = diff_job(dh.run_compare)

    @_signed(["s", "prompt", *setting_names])
    def on_export(*args):
        s, prompt_text, *values = args
        return _call(out, lambda: dh.export_session(st(s), prompt_text, dh.DiffSettings.from_values(
            _settings_dict(setting_names, values))))

    def on_import(s, session_zip):
        if session_zip is None:
            return [gr.skip()] * len(out.all)
        return _call(out, dh.import_session, st(s), session_zip, max_side)

    def on_model(label, previous):
        shown = shown_examples(label)
        return (_status_markdown(engines, "Diffusion", label),
                gr.update(value=_gallery_items(shown), columns=max(3, len(shown)), visible=bool(shown)),
                examples_note(label), *_model_change(engines, "diffusion", dh.DiffSettings, label, previous))

    upload.upload(on_upload, [state, upload], out.all, api_name="diff_load_image", show_progress_on=[status])
    gallery.select(on_example, [state, model], out.all, api_visibility="undocumented", show_progress="hidden")
    _wire_point_editing("diff", out, st, state, canvas, tools, points_btn, points_text, region_btn, editor)
    run_event = run_btn.click(arm, None, None, queue=False, api_visibility="private").then(
        on_run, [state, editor, model, prompt, *settings.values()], out.all, api_name="diff_run",
        concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress="full", show_progress_on=[status])
    compare_event = compare_btn.click(arm, None, None, queue=False, api_visibility="private").then(
        on_compare, [state, editor, model, prompt, *settings.values()], out.all, api_name="diff_compare",
        concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress="full", show_progress_on=[status])
    stop_btn.click(stop, None, None, queue=False, api_name="diff_stop",
                   cancels=[run_event, compare_event] if on_zero_gpu() else None)
    export_btn.click(on_export, [state, prompt, *settings.values()], out.all, api_name="diff_export",
                     show_progress_on=[status])
    import_file.upload(on_import, [state, import_file], out.all, api_name="diff_import", show_progress_on=[status])
    followed = [settings[name] for name in dh.DiffSettings.followed_fields()]
    model.change(on_model, [model, shown_model], [status_md, gallery, photo_note, *followed, shown_model],
                 api_visibility="private",
                 show_progress="hidden")



# -- StableDrag-GAN ----------------------------------------------------------------------------------------


def build_gan_tab(engines: Engines, options: AppOptions, tokens: CancelTokens) -> Callable[..., list[Any]]:
    """The StableDrag-GAN tab (call inside a `gr.Blocks`). Returns the page-load handler that
    generates the first image when a model is available."""
    menu = engines.labels("gan")
    no_model = engines.no_model_message("gan")
    # the defaults, with the first model's own recommended settings (its stabledrag_settings.json)
    g = gh.GanSettings.defaults_for(engines.device.type, engines.recommended("gan", menu[0] if menu else None))
    shown_model = gr.State(menu[0] if menu else None)  # the model last picked, whose settings the panel took
    shown = g.ui_values()  # automatic radii (None) are shown as 0
    gan_specs = gh.GanSettings.specs()  # the declared settings: label, range, widget
    state = gr.State(None)
    status_md = gr.Markdown(_status_markdown(engines, "GAN", menu[0] if menu else None) +
                            ("" if menu else f"\n\n⚠️ {no_model}"), elem_id="gan_info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            canvas = gr.Image(label="Click a handle, then its target (live while dragging)", type="numpy",
                              format="png", interactive=False, height=520, elem_id="gan_canvas")
            tools = PointTools("gan")
            reset_btn = gr.Button("Reset to the generated image", size="sm", elem_id="gan_reset")
            with gr.Accordion("Points as text", open=False, elem_id="gan_points_panel"):
                points_text = gr.Textbox(label="handle x,y : target x,y (image pixels), pairs separated by spaces",
                                         placeholder="40,60:70,60", elem_id="gan_points")
                points_btn = gr.Button("Use these points", size="sm")
        with gr.Column(scale=2):
            model = gr.Dropdown(menu, value=menu[0] if menu else None, label="Model", elem_id="gan_model")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed", minimum=0, maximum=gh.MAX_SEED, elem_id="gan_seed")
                psi = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation ψ")
            with gr.Row():
                gen_btn = gr.Button("Generate", elem_id="gan_generate")
                rand_btn = gr.Button("Random seed", elem_id="gan_random")
            photo_controls = build_photo_controls()  # "Upload a photo" (issue 16)
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary", elem_id="gan_start")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="gan_stop")
            compare_btn = gr.Button(COMPARE_BUTTON, elem_id="gan_compare")
            progress = gr.HTML("", elem_id="gan_progress")
            status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="gan_status")
            method = gr.Radio(list(gh.METHODS), value="StableDrag", label="Method", elem_id="gan_method")
            with gr.Row():
                latent_space = gr.Radio(list(gh.LATENT_SPACES), value=g.latent_space, label="Latent space")
                lr = widget(gan_specs["lr"], g.lr)
            with gr.Accordion("Flexible region (optional: paint what may change)", open=False,
                              elem_id="gan_region_panel"):
                editor = SafeImageEditor(label="Flexible region", type="numpy", image_mode="RGBA", sources=(),
                                         canvas_size=EDITOR_MIN_CANVAS,
                                        transforms=(), layers=False, height=380,
                                        brush=gr.Brush(default_size=24, colors=["#ff00b4"], color_mode="fixed"),
                                        eraser=gr.Eraser(default_size=24), elem_id="gan_editor")
                region_btn = gr.Button("Show painted region on the image", size="sm", elem_id="gan_region")
            with gr.Accordion("Advanced settings", open=False):
                gr.Markdown("Step size, steps per Start and r_m / r_p follow the chosen model: a model folder's "
                            "own recommended settings (the bundled toy GAN has them), else the defaults "
                            "(0 = r_m / r_p scaled to the image size).", elem_id="gan_settings_note")
                with gr.Row():
                    max_steps = widget(gan_specs["max_steps"], g.max_steps)
                    preview_every = widget(gan_specs["preview_every"], g.preview_every)
                with gr.Row():
                    r_m = widget(gan_specs["r_m"], shown["r_m"])
                    r_p = widget(gan_specs["r_p"], shown["r_p"])
                with gr.Row():
                    tau = widget(gan_specs["tau"], g.tau)
                    lambda_mask = widget(gan_specs["lambda_mask"], g.lambda_mask)
    with gr.Row(equal_height=False):
        result = gr.Image(label="Current image", type="numpy", format="png", interactive=False, height=300,
                          elem_id="gan_result")
        with gr.Column():
            download = gr.DownloadButton("Download image (PNG)", value=None, interactive=False,
                                         elem_id="gan_download")
            animation = gr.Image(label="Drag animation (GIF)", interactive=False, height=220, elem_id="gan_animation")
    compare_img, compare_table = _compare_panel("gan")
    export_btn, session_file, import_file = _session_panel("gan", "model, seed, latent, points, region, settings")

    settings = {"method": method, "latent_space": latent_space, "lr": lr, "max_steps": max_steps,
                "r_m": r_m, "r_p": r_p, "tau": tau, "lambda_mask": lambda_mask, "preview_every": preview_every}
    assert set(settings) == set(gh.GanSettings.names())
    setting_names = list(settings)
    followed_names = gh.GanSettings.followed_fields()  # the settings a chosen model resets
    out = _tab_outputs("gan", settings, state=state, canvas=canvas, editor=editor, result=result,
                       points_text=points_text, status=status, progress=progress, download=download,
                       animation=animation, session_file=session_file, compare=compare_img,
                       compare_table=compare_table, seed=seed, model=model)

    def st(s: Optional[GanState]) -> GanState:
        return s if s is not None else GanState()

    def gan_model(label: Optional[str]) -> Any:
        return engines.model("gan", label)

    @gpu(duration=60)
    def on_generate(s, model, seed, psi):
        return _call(out, lambda: gh.generate(st(s), model, seed, psi, gan_model(model)))

    def on_random():
        return gh.random_seed()

    def on_reset(s):
        return _call(out, gh.reset, st(s))

    def arm(request: gr.Request):
        tokens.arm(request, "gan")

    def stop(request: gr.Request):
        gr.Info("Stopping after the current step…" if tokens.stop(request, "gan") else NOTHING_TO_STOP)

    def not_while_dragging(request: gr.Request):
        if tokens.busy(request, "gan"):
            raise gr.Error("A drag is running: press Stop (or wait for it to finish), then Generate.")

    def drag_job(run: Callable) -> Callable:
        """A streamed GAN job (`gh.run_drag` / `gh.run_compare`) with its own Stop token."""

        def start(inputs, token, progress):
            s, ed, label, *values = inputs
            settings_ = gh.GanSettings.from_values(_settings_dict(setting_names, values))
            state = st(s)
            gh.check_same_model(state, label)  # before loading the menu's model for nothing
            # a projected photo gets the model's settings for photos (`edit_photo`) under the tab's fields
            return run(state, ed, settings_, gan_model(label), cancel=token, progress=progress,
                       recommended=engines.recommended("gan", label, strict=True,
                                                       photo=state.projection is not None), model=label)

        return _streamed_job(tokens, "gan", out, ["s", "region", "model", *setting_names], start)

    on_start = drag_job(gh.run_drag)
    on_compare = drag_job(gh.run_compare)

    @_signed(["s", *setting_names])
    def on_export(*args):
        s, *values = args
        return _call(out, lambda: gh.export_session(st(s), gh.GanSettings.from_values(
            _settings_dict(setting_names, values))))

    @gpu(duration=60)
    def on_import(s, session_zip):
        if session_zip is None:
            return [gr.skip()] * len(out.all)
        return _call(out, gh.import_session, st(s), session_zip, menu, gan_model)

    def on_model_status(label):
        return _status_markdown(engines, "GAN", label)

    def on_model(label, previous):
        return _model_change(engines, "gan", gh.GanSettings, label, previous)

    def on_load(s, model, seed, psi):
        if not menu:
            values = [gr.skip()] * len(out.all)
            values[out.status_index] = no_model
            return values
        return on_generate(s, model, seed, psi)

    gen_btn.click(not_while_dragging, None, None, queue=False, api_visibility="private").success(
        on_generate, [state, model, seed, psi], out.all, api_name="gan_generate",
        concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress_on=[status])
    rand_btn.click(not_while_dragging, None, None, queue=False, api_visibility="private").success(
        on_random, None, [seed], api_visibility="private").then(
        on_generate, [state, model, seed, psi], out.all, concurrency_id=GPU_QUEUE, concurrency_limit=1,
        api_visibility="private", show_progress_on=[status])
    _wire_point_editing("gan", out, st, state, canvas, tools, points_btn, points_text, region_btn, editor)
    reset_btn.click(on_reset, [state], out.all, api_name="gan_reset", show_progress="hidden")
    start_event = start_btn.click(arm, None, None, queue=False, api_visibility="private").then(
        on_start, [state, editor, model, *settings.values()], out.all, api_name="gan_start",
        concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress="full", show_progress_on=[status])
    compare_event = compare_btn.click(arm, None, None, queue=False, api_visibility="private").then(
        on_compare, [state, editor, model, *settings.values()], out.all, api_name="gan_compare",
        concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress="full", show_progress_on=[status])
    stop_btn.click(stop, None, None, queue=False, api_name="gan_stop",
                   cancels=[start_event, compare_event] if on_zero_gpu() else None)
    export_btn.click(on_export, [state, *settings.values()], out.all, api_name="gan_export", show_progress_on=[status])
    import_file.upload(on_import, [state, import_file], out.all, api_name="gan_import",
                       concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress_on=[status])
    wire_photo_controls(photo_controls, state=state, model=model, outputs=out, call=_call, stream=_stream,
                        generator=gan_model, spec=lambda label: engines.spec("gan", label), tokens=tokens,
                        queue_id=GPU_QUEUE, gpu=gpu)
    model.change(on_model_status, [model], [status_md], api_visibility="private", show_progress="hidden")
    # a model the person picks resets the settings that follow the model; an imported session that
    # names another model (a `change`, not an `input`) keeps the settings it carries
    model.input(on_model, [model, shown_model], [*(settings[name] for name in followed_names), shown_model],
                api_visibility="private", show_progress="hidden")
    return on_load, [state, model, seed, psi], out.all


# -- the page ---------------------------------------------------------------------------------------------


def build_demo(options: AppOptions, engines: Optional[Engines] = None) -> gr.Blocks:
    """The whole page for `options` (engines are created from them unless given)."""
    engines = engines if engines is not None else Engines(options)
    if options.preload or on_zero_gpu():
        engines.preload()
    tokens = CancelTokens()
    ttl = max(10, int(options.cache_ttl))
    views.OUTPUT_TTL_S = ttl
    views.clean_stale_output_dirs()
    views.own_gradio_cache()  # Gradio's cache inside our per-process folder: swept, removed at exit
    views.start_sweeper(ttl)
    # Gradio keeps every upload, streamed frame and download in its cache: delete those older than ttl.
    with gr.Blocks(title="StableDrag Studio", delete_cache=(max(5, min(300, ttl // 2)), ttl)) as demo:
        gr.Markdown(INTRO)
        with gr.Accordion("How it works", open=False, elem_id="how_it_works"):
            gr.Markdown(HOW_IT_WORKS)
        with gr.Tabs():
            with gr.Tab(engine_title("diffusion"), id="diff", elem_id="tab_diff"):
                build_diff_tab(engines, options, tokens)
            with gr.Tab(engine_title("gan"), id="gan", elem_id="tab_gan"):
                on_load, load_inputs, load_outputs = build_gan_tab(engines, options, tokens)
        demo.load(None, None, None, js=marker_drag.MARKER_DRAG_JS)  # markers move by dragging
        demo.load(on_load, load_inputs, load_outputs, concurrency_id=GPU_QUEUE, concurrency_limit=1,
                  api_visibility="private", show_progress="hidden")
    # The global cap applies to GPU runs only, with a fair share per session (fair_queue); cheap
    # actions (points, uploads, exports) are never refused because of other people's runs.
    demo.queue(max_size=None, default_concurrency_limit=4)
    fair_queue.install(demo, GPU_QUEUE, max_gpu_waiting=options.max_queue)
    demo.stabledrag_engines = engines  # for tests and tools
    return demo


def launch_kwargs(options: AppOptions) -> dict[str, Any]:
    """Keyword arguments of `demo.launch` for `options` (theme/CSS, no extra allowed paths)."""
    return dict(server_name=options.host, server_port=options.port, share=options.share, css=CSS,
                max_file_size="25mb", show_error=False, theme=gr.themes.Soft())
