"""The StableDrag-Diff tab's handlers: plain functions returning `View`s (see `views`).

Flow: load an image (upload or example) -> paint the editable region (optional) -> click handle /
target pairs -> Run: identity LoRA, DDIM inversion, drag (live preview), denoise -> result beside
the input, PNG and GIF downloads -> export / import the session.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Optional

import numpy as np
from PIL import Image

from .. import engine as engines
from ..errors import UserError
from ..imageio import check_size
from ..limits import LIMITS, check_point_count, check_prompt
from ..points import from_clicks, scale_points, validate
from ..progress import Cancelled, CancelToken, Progress
from . import compare, drawing
from .compare import COMPARE_METHODS, CompareRun, drag_numbers
from .examples import Example, load_example
from .masks import editor_value, mask_from_editor
from .messages import STOPPED_MESSAGE
from .runner import Finished, stream_work
from .settings_base import BASELINE_LABEL, TabSettings, setting, tab_config
from .session_io import SessionData, read_session, write_session
from .state import DiffState, clicks_to_text, require_image
from .views import (DISTANCE_NOTE, View, add_frame, canvas_for, check_handles_in_region, click_status, full_canvas,
                    handle_lines, new_output_path, progress_html, save_gif, save_png, status_words, time_text)

log = logging.getLogger(__name__)

#: "baseline" = nearest neighbour + plain supervision on our tuned settings; "dragdiffusion" =
#: DragDiffusion's own drag settings.
METHODS = {"StableDrag": "stabledrag", BASELINE_LABEL: "baseline",
           "DragDiffusion (reference settings)": "dragdiffusion"}
#: Labels of earlier versions (sessions and API calls that use them still work).
OLD_METHODS = {"DragDiffusion (baseline)": "baseline", "DragDiffusion (exact reference)": "dragdiffusion"}
IMAGE_CHANGED_MESSAGE = ("A new image was loaded while the edit ran, so the edit was stopped and its result "
                         "dropped (it belonged to the previous image). Press Run to edit the new image.")
PHASE_NAMES = {"lora": "Fine-tuning the identity LoRA", "inversion": "DDIM inversion", "drag": "Dragging",
               "denoise": "Denoising"}
#: Lighter defaults without a GPU (measured on the 2-core CPU: 40 LoRA steps of the toy SD took 300 s).
CPU_LORA_STEPS, CPU_DDIM_STEPS, CPU_DRAG_STEPS = 20, 25, 40


@dataclass
class DiffSettings(TabSettings):
    """The tab's settings (the "Advanced settings" panel), defaults as DragDiffusion's.

    method: "stabledrag", "baseline" (tuned) or "dragdiffusion" (DragDiffusion's own drag settings;
      a stop distance left at this tab's default then means DragDiffusion's "< 2" rule).
    lora_steps / lora_lr / lora_rank: identity LoRA.
    inversion_strength / ddim_steps: DDIM inversion. max_steps / lr: latent optimisation (drag steps
    and learning rate; the names of `DragConfig` and the CLI, `--max-steps`, `--set lr=...`; sessions
    written with the former names `drag_steps` / `drag_lr` still import, see `OLD_FIELD_NAMES`);
    stop_distance: the drag stops when every handle is this close to its target (feature px).
    r_m / r_p: motion patch and tracking radii (feature px). tau: confidence threshold of confident
    supervision. lambda_mask: weight of the mask loss. seed: seeds LoRA training and the edit.
    preview_every: decode a live preview every k drag steps (0 = none).
    Defaults (`defaults_for`): DragDiffusion's on a GPU; elsewhere fewer LoRA, DDIM and drag steps
    (`cpu_default`: 20 / 25 / 40), so that a CPU edit takes minutes rather than a quarter hour; a
    chosen model's own recommended settings win over both (the bundled toy model carries them).
    """

    METHOD_LABELS: ClassVar[dict[str, str]] = METHODS
    OLD_METHOD_LABELS: ClassVar[dict[str, str]] = OLD_METHODS
    OLD_FIELD_NAMES: ClassVar[dict[str, str]] = {"drag_steps": "max_steps", "drag_lr": "lr"}

    # Each setting once: default (GPU), label, accepted range, widget, CPU default, the model
    # recommendation it takes. The panel's widgets (`settings_widgets.build_panel`), the checks
    # (`check_numbers`), the CPU defaults and the model's settings all come from these lines.
    method: str = "stabledrag"
    lora_steps: int = setting(80, label="LoRA steps", error_name="LoRA steps", low=0, high=LIMITS.max_steps,
                              integer=True, slider=(0, 300, 1), row=0, cpu_default=CPU_LORA_STEPS,
                              recommended="lora.steps", follows_model=True)
    lora_lr: float = setting(5e-4, label="LoRA learning rate", error_name="The LoRA learning rate", low=1e-8,
                             high=LIMITS.max_lr, row=0, recommended="lora.lr")
    lora_rank: int = setting(16, label="LoRA rank", error_name="The LoRA rank", low=1, high=256, integer=True,
                             slider=(1, 64, 1), row=0, recommended="lora.rank")
    inversion_strength: float = setting(0.7, label="Inversion strength", error_name="The inversion strength",
                                        low=0.01, high=1.0, slider=(0.1, 1.0, 0.05), row=1,
                                        recommended="inversion.strength")
    ddim_steps: int = setting(50, label="DDIM steps", error_name="DDIM steps", low=1, high=LIMITS.max_steps,
                              integer=True, slider=(5, 100, 1), row=1, cpu_default=CPU_DDIM_STEPS,
                              recommended="inversion.num_steps", follows_model=True)
    max_steps: int = setting(80, label="Drag steps", error_name="Drag steps", low=1, high=LIMITS.max_steps,
                             integer=True, slider=(1, 300, 1), row=2, cpu_default=CPU_DRAG_STEPS,
                             recommended="max_steps", follows_model=True)
    lr: float = setting(0.01, label="Drag learning rate", error_name="The drag learning rate", low=1e-8,
                        high=LIMITS.max_lr, row=2, recommended="lr", follows_model=True)
    stop_distance: float = setting(2.0, label="Stop distance (feature px)", error_name="The stop distance", low=0,
                                   high=1000, row=2, recommended="stop_distance", follows_model=True)
    r_m: float = setting(1.0, label="r_m (motion patch radius, feature px)", error_name="r_m", low=0,
                         high=LIMITS.max_radius, slider=(0, 6, 1), row=3, recommended="r_m")
    r_p: float = setting(3.0, label="r_p (tracking radius, feature px)", error_name="r_p", low=1,
                         high=LIMITS.max_radius, slider=(1, 12, 1), row=3, recommended="r_p")
    tau: float = setting(0.6, label="tau (confidence threshold)", error_name="tau", low=0, high=1,
                         slider=(0.0, 1.0, 0.05), row=4, recommended="tau")
    lambda_mask: float = setting(0.1, label="Mask loss weight", error_name="The mask loss weight", low=0, high=1e6,
                                 row=4, recommended="lambda_mask")
    seed: int = setting(42, label="Seed", error_name="The seed", low=0, high=LIMITS.max_seed, integer=True,
                        precision=0, row=5)
    preview_every: int = setting(4, label="Live preview every k steps", error_name="Live preview every k steps",
                                 low=0, high=LIMITS.max_steps, integer=True, slider=(0, 20, 1), row=5)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "DiffSettings":
        """From UI values; a method label ("StableDrag") is mapped to its key; bad values -> UserError."""
        known = cls.known_values(values)
        try:
            s = cls(**known)
        except TypeError as e:
            raise UserError(f"A setting is missing or unknown: {e}") from None
        s.check_numbers()
        if s.method not in METHODS.values():
            raise UserError(f"Unknown method {s.method!r}: choose {', '.join(METHODS)}.")
        return s

    def edit_config(self, recommended: Optional[dict[str, Any]] = None) -> Any:
        """The diffusion engine's config (`DiffusionEditConfig`, via `engine.get("diffusion").edit_config`)
        for these settings: the method's preset and this seed, the model's `recommended` settings
        the tab has no field for (e.g. `lora.batch_size`), then this tab's values. UserError for
        invalid values (every number of the config checked; named with the model's settings file when
        they come from it, see `tab_config`)."""
        from_model = self.model_only(recommended)
        overrides = {"seed": self.seed, **from_model}
        mine = {key: getattr(self, name) for key, name in self.recommended_fields().items()}
        if self.method == "dragdiffusion" and self.stop_distance == DiffSettings.stop_distance:
            del mine["stop_distance"]  # keep DragDiffusion's own "< 2" stop (1.5 on whole cells)
        overrides.update(mine)
        return tab_config(lambda values: engines.get("diffusion").edit_config(self.method, values),
                          overrides, from_model)




def method_label(key: str) -> str:
    """The menu label of a method key."""
    return DiffSettings.method_label(key)


# -- loading images ---------------------------------------------------------------------------------


def _as_rgb(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UserError("That file is not an image this app can use; upload a PNG, JPEG or WebP picture.")
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo or 1.0) * 255).round().astype(np.uint8)
    if arr.shape[2] == 4:  # flatten transparency onto white, as the engines do
        a = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3] * a + 255 * (1 - a)).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def decode_upload(blob: Optional[bytes], max_side: Optional[int] = None) -> np.ndarray:
    """An uploaded file's bytes -> `H x W x 3` uint8, read by `stabledrag.imageio` (allow-listed
    formats, size limits, EXIF rotation, first frame, transparency on white), scaled down to
    `max_side` while decoding. UserError naming the problem for anything that is not a usable picture."""
    return _decode(blob, max_side)[0]


def _decode(blob: Optional[bytes], max_side: Optional[int]) -> tuple[np.ndarray, str]:
    from ..imageio import read_image

    if not blob:
        raise UserError("The uploaded file is empty.")
    im = read_image(blob, "uploaded image", max_side=max_side)
    (w, h), arr = im.info.get("original_size", im.size), np.asarray(im)
    note = "" if (w, h) == im.size else (f"The image was {w}x{h}; it was scaled down to {im.width}x{im.height} "
                                         f"(the longest side this app accepts is {max_side} px).")
    return arr, note


def fit_image(image: Any, max_side: int) -> tuple[np.ndarray, str]:
    """The image as `H x W x 3` uint8, scaled down when its long side exceeds `max_side`.
    Returns (image, note about any scaling). UserError for non-images and absurdly large ones."""
    arr = _as_rgb(image)
    h, w = arr.shape[:2]
    check_size(w, h)
    if max(h, w) > max_side:
        small = drawing.fit_long_side(arr, max_side)
        return small, (f"The image was {w}x{h}; it was scaled down to {small.shape[1]}x{small.shape[0]} "
                       f"(the longest side this app accepts is {max_side} px).")
    return arr, ""


def new_image(state: DiffState, image: Any, name: str, max_side: int) -> View:
    """Start over on `image` (numpy/PIL, or the bytes of an uploaded file): points, region and
    results are cleared. The same pixels again change nothing."""
    if image is None:
        return View(state=state)
    note = ""
    if isinstance(image, (bytes, bytearray)):
        image, note = _decode(bytes(image), max_side)
    arr, fit_note = fit_image(image, max_side)
    note = note or fit_note
    if state.image is not None and state.image.shape == arr.shape and np.array_equal(state.image, arr):
        return View(state=state)
    state.image, state.name = arr, name
    state.input_id += 1
    state.clicks, state.mask, state.result, state.report, state.frames = [], None, None, None, []
    status = f"Loaded {name} ({arr.shape[1]}x{arr.shape[0]}). " + (note + " " if note else "") + click_status([])
    return View(state=state, canvas=canvas_for(state), editor=editor_value(arr, None, state.scale), result=None,
                points_text="", status=status, download=None, animation=None)


def choose_example(state: DiffState, example: Example, max_side: int) -> View:
    """Load an example image and suggest its prompt."""
    view = new_image(state, load_example(example), f"the example '{example.name}'", max_side)
    view.prompt = example.prompt
    return view


# -- running ----------------------------------------------------------------------------------------


def _progress_text(p: Progress) -> str:
    name = PHASE_NAMES.get(p.phase, p.phase)
    if p.total:
        return f"{name}: {p.step}/{p.total}"
    return f"{name}…"


def run_edit(state: DiffState, editor_value: Any, prompt: str, settings: DiffSettings,
             get_editor: Callable[[], Any], cancel: Optional[CancelToken] = None,
             progress: Optional[Callable[..., Any]] = None) -> Iterator[View]:
    """Run one StableDrag-Diff edit, yielding live Views and a final one with the result.

    get_editor: returns the diffusion engine's editor (`DiffusionEditor`; called after the input is
    checked, so a missing model is reported only for otherwise valid requests). progress: `gr.Progress`-like callable.
    """
    img = require_image(state.image, state.NO_IMAGE)
    size = (img.shape[1], img.shape[0])
    prompt = check_prompt(prompt)
    check_point_count(len(state.clicks) // 2)
    points = validate(from_clicks(state.clicks), size)
    mask = mask_from_editor(editor_value, size)
    check_handles_in_region(state.clicks, mask)
    settings.edit_config()  # bad settings are reported before the model is needed
    editor = get_editor()
    config = settings.edit_config(editor.recommended_overrides())
    cancel = cancel if cancel is not None else CancelToken()
    made_from = state.input_id
    key = _resume_key(img, state.clicks, mask, prompt, settings, editor)
    paused = state.paused if state.paused is not None and state.paused.get("key") == key else None
    state.paused = None
    start_latent = None
    if paused is not None:
        import torch

        from ..points import DragPoints

        points = DragPoints(handles=torch.tensor(paused["handles"], dtype=torch.float32), targets=points.targets)
        start_latent = torch.from_numpy(paused["latent"])

    state.mask, state.prompt, state.settings = mask, prompt, settings.to_dict()
    state.frames, state.result, state.report = [], None, None
    start = full_canvas(state)
    add_frame(state.frames, start)
    before = drawing.enlarge(img, state.scale)
    targets = [tuple(t) for t in points.targets.tolist()]
    # the previous run's files go as soon as a new run starts (Download stays disabled until a result)
    first = (f"Continuing the stopped drag (it had done {paused['steps']} steps)…" if paused is not None
             else "Starting…")
    yield View(state=state, canvas=canvas_for(state), status=first, result=(before, start),
               progress=progress_html("Starting", 0, None), download=None, animation=None)

    def work(callback: Callable[[Progress], None]) -> Any:
        kwargs = {"start_latent": start_latent} if start_latent is not None else {}
        return editor.edit(Image.fromarray(img), points, mask=mask, prompt=prompt or "", config=config,
                           progress=callback, cancel=cancel, preview_every=max(0, settings.preview_every), **kwargs)

    t0 = time.monotonic()
    drag_t0: Optional[float] = None
    trail: list = []
    last_frame: Optional[np.ndarray] = None
    try:
        for item in stream_work(work, cancel):
            if state.input_id != made_from:  # another image was loaded: this run's result is not its
                cancel.cancel()
                yield View(status=IMAGE_CHANGED_MESSAGE, progress="")
                return
            if isinstance(item, Finished):
                yield _finished(state, item.value, paused["steps"] if paused is not None else 0)
                return
            if progress is not None:
                progress((item.step, item.total) if item.total else None, desc=PHASE_NAMES.get(item.phase, item.phase))
            text = _progress_text(item)
            bar = progress_html(PHASE_NAMES.get(item.phase, item.phase), item.step, item.total)
            if item.phase != "drag":
                yield View(state=state, status=f"{text} ({time.monotonic() - t0:.0f} s so far)", progress=bar)
                continue
            drag_t0 = drag_t0 if drag_t0 is not None else time.monotonic()
            handles = _input_handles(item, size)
            if handles is not None:
                trail.append(handles)
            stable = settings.method == "stabledrag"  # the baseline's tracker has no confidence
            per_handle = handle_lines(handles or [], targets, item.info.get("confidence") if stable else None,
                                      item.info.get("template_used") if stable else None)
            text = (f"Dragging: step {item.step} of at most {item.total} "
                    f"({time_text(time.monotonic() - drag_t0, item.step, item.total)}). "
                    f"Handles (tracker's estimate): {per_handle}.")
            if item.preview is not None:
                last_frame = _live_frame(state, item, size, handles, trail)
                add_frame(state.frames, last_frame)
                yield View(state=state, status=text + " " + PREVIEW_NOTE, progress=bar, result=(before, last_frame))
            else:
                yield View(state=state, status=text, progress=bar)
    except Cancelled as e:
        # the slider and the GIF show how far the drag got; there is no result to download
        gif = save_gif(state.frames, "stabledrag-diff-drag") if last_frame is not None else None
        message = STOPPED_MESSAGE
        latent = getattr(e, "latent", None)
        if latent is not None:
            done = int(getattr(e, "steps", 0)) + (paused["steps"] if paused is not None else 0)
            state.paused = {"key": key, "latent": np.asarray(latent.numpy(), dtype=np.float32),
                            "handles": np.asarray(e.handles, dtype=np.float32).tolist(), "steps": done}
            message = (f"Stopped after {done} drag steps. Press Run to continue from there (the LoRA and "
                       "inversion are reused); change the points, region, prompt or settings to start over.")
        yield View(state=state, status=message, progress="", download=None, animation=gif,
                   result=(before, last_frame) if last_frame is not None else (before, start))


def run_compare(state: DiffState, editor_value: Any, prompt: str, settings: DiffSettings,
                get_editor: Callable[[], Any], cancel: Optional[CancelToken] = None,
                progress: Optional[Callable[..., Any]] = None) -> Iterator[View]:
    """Edit the same image and points with StableDrag, then with the baseline (every other setting
    equal; the second run reuses the first one's LoRA and inversion from the editor's cache),
    streaming both; the last View shows the two results side by side with their trajectories and
    numbers (`compare.run_compare`). The tab's own result, downloads and a stopped drag are kept."""
    require_image(state.image, state.NO_IMAGE)
    cancel = cancel if cancel is not None else CancelToken()

    def start(method: str) -> tuple[DiffState, Iterator[View]]:
        work = dataclasses.replace(state, clicks=list(state.clicks), frames=[], paused=None, result=None,
                                   report=None)
        return work, run_edit(work, editor_value, prompt, dataclasses.replace(settings, method=method), get_editor,
                              cancel=cancel, progress=progress)

    def outcome(work: DiffState) -> Optional[CompareRun]:
        if work.result is None or not work.report:
            return None
        drag = work.report.get("drag", {})
        conf = drag.get("confidences") or []
        numbers = drag_numbers(drag.get("handles") or [], drag.get("targets") or [], drag.get("status", ""),
                               drag.get("steps", 0), drag.get("config", {}).get("method", ""),
                               conf[-1] if conf else None, drag.get("template_used"))
        return CompareRun(image=work.result, clicks=work.clicks, mask=work.mask, handles=drag.get("handles"),
                          trail=drag.get("trajectory") or [], numbers=numbers)

    def restore() -> dict[str, Any]:
        return {"result": (state.image, state.result) if state.result is not None else None}

    methods = [(m, method_label(m)) for m in COMPARE_METHODS]
    yield from compare.run_compare(state, methods, start, outcome, cancel, live=("progress", "result"),
                                   restore=restore)


def _resume_key(img: np.ndarray, clicks: list, mask: Optional[np.ndarray], prompt: str, settings: DiffSettings,
                editor: Any) -> str:
    """What must be unchanged for Run to continue a stopped drag: image, points, region, prompt,
    model and every setting except the step budget and the preview rate."""
    import hashlib
    import json

    h = hashlib.sha256(np.ascontiguousarray(img).tobytes())
    h.update(repr(img.shape).encode())
    if mask is not None:
        h.update(np.packbits(mask).tobytes())
    s = {k: v for k, v in settings.to_dict().items() if k not in ("max_steps", "preview_every")}
    h.update(json.dumps([list(map(list, clicks)), prompt or "", s, id(editor)], sort_keys=True, default=str).encode())
    return h.hexdigest()


#: What the live preview is (said in the status line while it is shown).
PREVIEW_NOTE = ("Preview: the model's one-step guess of the clean image at the inversion step (decoded x0 "
                "prediction), blurrier than the result, which is denoised in full at the end.")


def _input_handles(p: Progress, size: tuple[int, int]) -> Optional[list]:
    """The tracked handles of a drag report in input-image px (engine points are model px)."""
    import torch

    handles = p.info.get("handles")
    model_size = p.info.get("model_size")
    if not handles:
        return None
    if model_size is None and p.preview is not None:
        preview = np.asarray(p.preview)
        model_size = (preview.shape[1], preview.shape[0])
    if model_size is None or tuple(model_size) == tuple(size):
        return [list(map(float, h)) for h in handles]
    return scale_points(torch.tensor(handles, dtype=torch.float32), tuple(model_size), size).tolist()


def _live_frame(state: DiffState, p: Progress, size: tuple[int, int], handles: Optional[list],
                trail: list) -> np.ndarray:
    """The preview at input size with the tracked handles and their trail drawn."""
    preview = np.asarray(p.preview)
    if (preview.shape[1], preview.shape[0]) != size:
        preview = np.asarray(Image.fromarray(preview).resize(size, Image.Resampling.LANCZOS))
    return full_canvas(state, handles=handles, image=preview, trail=trail)


def _finished(state: DiffState, result: Any, resumed_after: int = 0) -> View:
    out = np.asarray(result.image.convert("RGB"))
    state.result, state.report = out, result.report
    drag = result.report.get("drag", {})
    handles = drag.get("handles")
    final = full_canvas(state, handles=handles, image=out, trail=drag.get("trajectory"))
    add_frame(state.frames, final)
    targets = drag.get("targets") or []
    method = getattr(getattr(result.config, "drag", None), "method", "stabledrag")
    conf = (drag.get("confidences") or []) if method == "stabledrag" else []
    per_handle = handle_lines(handles or [], targets, conf[-1] if conf else None)
    cached = [k for k, v in result.cached.items() if v]
    seconds = result.timings.get("total", 0.0)
    steps = (f"{result.drag.steps} more drag steps (continued after {resumed_after})" if resumed_after
             else f"{result.drag.steps} drag steps")
    status = (f"Done: {status_words(result.drag.status).lower()} after {steps}, "
              f"{seconds:.1f} s in all. Handles: {per_handle}. {DISTANCE_NOTE}"
              + (f" Reused the cached {' and '.join(cached)}." if cached else ""))
    return View(state=state, status=status, progress="", result=(state.image, out),
                download=save_png(out, "stabledrag-diff"),
                animation=save_gif(state.frames, "stabledrag-diff-drag"))


# -- sessions -----------------------------------------------------------------------------------------


def export_session(state: DiffState, prompt: str, settings: DiffSettings) -> View:
    """Write the tab's session (image, points, region, prompt, settings, last result) to a zip."""
    img = require_image(state.image, "Nothing to export yet: load an image first.")
    data = SessionData(engine="diffusion", image=img, clicks=list(state.clicks), mask=state.mask,
                       result=state.result, settings=settings.to_dict(), prompt=prompt or "", report=state.report)
    path = write_session(data, new_output_path("stabledrag-diff-session", ".zip"))
    return View(state=state, session_file=str(path), status="Session exported: download the .zip below.")


def import_session(state: DiffState, blob: Optional[bytes], max_side: int) -> View:
    """Restore a session zip (bytes of the uploaded file) into the tab."""
    if not blob:
        raise UserError("Choose a session .zip file to import.")
    data = read_session(blob, expect_engine="diffusion")
    img, note = fit_image(data.image, max_side)
    if note:
        raise UserError("The session's image is larger than this app accepts (--max-image-side).")
    settings = DiffSettings.from_values({**DiffSettings().to_dict(), **DiffSettings.upgrade(data.settings)})
    state.image, state.name, state.clicks, state.mask = img, "an imported session", list(data.clicks), data.mask
    state.input_id += 1
    state.result, state.report, state.frames = data.result, data.report, []
    state.prompt, state.settings = data.prompt, settings.to_dict()
    values = settings.to_dict()
    values["method"] = method_label(values["method"])
    return View(state=state, canvas=canvas_for(state), editor=editor_value(img, state.mask, state.scale),
                result=(img, data.result) if data.result is not None else None,
                points_text=clicks_to_text(state.clicks), prompt=data.prompt, settings=values,
                download=save_png(data.result, "stabledrag-diff") if data.result is not None else None,
                animation=None,
                status=f"Session imported: {len(state.clicks) // 2} drag pair(s)"
                       + (", with its painted region." if data.mask is not None else "."))
