"""The StableDrag-GAN tab's handlers: plain functions returning `View`s (see `views`).

Flow: pick a model and a seed -> Generate -> paint the flexible region (optional) -> click handle /
target pairs -> Start: the drag runs live, frame by frame; Stop pauses (Start continues from the
current latent and handle positions) -> Reset goes back to the generated image -> download.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Optional

import numpy as np

from .. import engine as engines
from ..errors import UserError
from ..limits import LIMITS, check_point_count, check_seed, finite_number
from ..points import from_clicks, validate
from ..progress import CancelToken
from . import compare, drawing
from .compare import COMPARE_METHODS, CompareRun, drag_numbers
from .masks import editor_value, mask_from_editor
from .settings_base import BASELINE_LABEL, TabSettings, setting, tab_config
from .session_io import SessionData, read_session, write_session
from .state import GanState, clicks_from_pairs, clicks_to_text, require_image
from .views import (DISTANCE_NOTE, KEEP, View, add_frame, canvas_for, check_handles_in_region, click_status,
                    full_canvas, handle_lines, new_output_path, progress_html, save_gif, save_png, status_words,
                    time_text)

log = logging.getLogger(__name__)

#: "baseline" = nearest neighbour + plain supervision on our tuned settings; "draggan" = DragGAN's own settings.
METHODS = {"StableDrag": "stabledrag", BASELINE_LABEL: "baseline", "DragGAN (reference settings)": "draggan"}
#: Labels of earlier versions (sessions and API calls that use them still work).
OLD_METHODS = {"DragGAN (baseline)": "baseline", "DragGAN (exact reference)": "draggan"}
LATENT_SPACES = ("W+", "W")
DRAG_REPLACED_MESSAGE = ("The drag was stopped because the image or the points changed while it ran (Reset, "
                         "Generate, import, or a point edit); nothing of it was kept. Press Start to drag again.")
MAX_SEED = LIMITS.max_seed


@dataclass
class GanSettings(TabSettings):
    """The tab's drag settings (DragGAN's defaults where they exist).

    method: "stabledrag", "baseline" (tuned) or "draggan" (DragGAN's own settings; a learning rate left
      at this tab's default then means DragGAN's 1e-3). latent_space: "W+" (first 6 vectors optimised) or "W".
    lr: Adam learning rate on the latent (the widget says "step size"). max_steps: steps per Start at most.
    Field names are `DragConfig`'s and the CLI's (`--set lr=...`, `--max-steps`); sessions written
    with the former name `step_size` still import (`OLD_FIELD_NAMES`).
    r_m / r_p: motion patch and tracking radii in image px (None = DragGAN's, scaled to the size).
    tau: confidence threshold. lambda_mask: mask-loss weight. preview_every: frame every k steps.
    """

    METHOD_LABELS: ClassVar[dict[str, str]] = METHODS
    OLD_METHOD_LABELS: ClassVar[dict[str, str]] = OLD_METHODS
    OLD_FIELD_NAMES: ClassVar[dict[str, str]] = {"step_size": "lr"}

    # Each numeric setting once: default, label, accepted range, widget, the model recommendation it
    # takes (the tab builds its widgets with `settings_widgets.widget`, `check_numbers` checks values
    # against the same lines, `defaults_for` / `model_values` fill them from a model's settings file).
    method: str = "stabledrag"
    latent_space: str = "W+"
    lr: float = setting(2e-3, label="Step size (learning rate)", error_name="The step size", low=1e-8,
                        high=LIMITS.max_lr, recommended="lr", follows_model=True)
    max_steps: int = setting(200, label="Steps per Start (at most)", error_name="Steps per Start", low=1,
                             high=LIMITS.max_steps, integer=True, slider=(1, 1000, 1), row=0,
                             recommended="max_steps", follows_model=True)
    r_m: Optional[float] = setting(None, label="r_m (image px, 0 = automatic)", error_name="r_m", low=0,
                                   high=LIMITS.max_radius, row=1, recommended="r_m", follows_model=True)
    r_p: Optional[float] = setting(None, label="r_p (image px, 0 = automatic)", error_name="r_p", low=0,
                                   high=LIMITS.max_radius, row=1, recommended="r_p", follows_model=True)
    tau: float = setting(0.6, label="tau (confidence threshold)", error_name="tau", low=0, high=1,
                         slider=(0.0, 1.0, 0.05), row=2, recommended="tau")
    lambda_mask: float = setting(20.0, label="Mask loss weight", error_name="The mask loss weight", low=0, high=1e6,
                                 row=2, recommended="lambda_mask")
    preview_every: int = setting(2, label="Show a frame every k steps", error_name="Show a frame every k steps",
                                 low=1, high=LIMITS.max_steps, integer=True, slider=(1, 20, 1), row=0)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "GanSettings":
        """From UI values (method labels mapped to keys; radii 0/None = automatic)."""
        known = cls.known_values(values)
        for name in ("r_m", "r_p"):
            if isinstance(known.get(name), (int, float)) and not isinstance(known.get(name), bool) \
                    and known[name] == 0:
                known[name] = None  # 0 = automatic (NaN, text and negatives are checked below)
            elif known.get(name) in (None, ""):
                known[name] = None
        if isinstance(known.get("preview_every"), (int, float)) and known["preview_every"] == 0:
            known["preview_every"] = 1
        try:
            s = cls(**known)
        except TypeError as e:
            raise UserError(f"A setting is missing or unknown: {e}") from None
        s.check_numbers()
        if s.r_m == 0:
            s.r_m = None
        if s.r_p == 0:
            s.r_p = None
        if s.method not in METHODS.values():
            raise UserError(f"Unknown method {s.method!r}: choose {', '.join(METHODS)}.")
        if s.latent_space not in LATENT_SPACES:
            raise UserError("The latent space must be W+ or W.")
        if s.lr <= 0 or s.max_steps < 1:
            raise UserError("The step size must be above 0 and the steps at least 1.")
        return s

    def ui_values(self) -> dict[str, Any]:
        """Values for the UI inputs (method as its label, automatic radii as 0)."""
        d = super().ui_values()
        d["r_m"], d["r_p"] = d["r_m"] or 0, d["r_p"] or 0
        return d

    def edit_config(self, image_size: tuple[int, int], recommended: Optional[dict[str, Any]] = None) -> Any:
        """The GAN engine's `DragConfig` (via `engine.get("gan").edit_config`) for an image of
        `image_size` `(W, H)` px: the method's preset, the model's `recommended` settings that the
        tab has no field for (e.g. "stop_distance"), then this tab's values (automatic radii and,
        for "draggan", a step size left at the tab's default keep the preset's). UserError for
        invalid values, named with the model's settings file when they come from it (`tab_config`)."""
        from_model = self.model_only(recommended)
        overrides: dict[str, Any] = {**from_model, "lr": self.lr, "max_steps": self.max_steps,
                                     "tau": self.tau, "lambda_mask": self.lambda_mask}
        if self.method == "draggan" and self.lr == GanSettings.lr:
            del overrides["lr"]  # the tab's default is our tuned step; DragGAN's own is 1e-3
        if self.r_m:
            overrides["r_m"] = float(self.r_m)
        if self.r_p:
            overrides["r_p"] = float(self.r_p)
        return tab_config(lambda values: engines.get("gan").edit_config(self.method, values, image_size),
                          overrides, from_model)


def method_label(key: str) -> str:
    """The menu label of a method key."""
    return GanSettings.method_label(key)


def random_seed() -> int:
    """A fresh seed for the "random" button."""
    return random.randint(0, 99_999)


def _editor(generator: Any, state: Optional[GanState] = None) -> Any:
    """The GAN engine's editor (`GanEditor`) on `generator`, with the state's PTI weight delta when
    it holds a projected photo."""
    return engines.get("gan").editor(generator, state.weight_delta if state is not None else None)


def _download(state: GanState) -> str:
    """The PNG to download: the image, pasted back into the uploaded photo for a projected one."""
    from .gan_projection import download_image

    stem = "stabledrag-gan-photo" if state.photo is not None else f"stabledrag-gan-seed{state.seed}"
    return save_png(download_image(state), stem)


def check_same_model(state: GanState, model: Optional[str]) -> None:
    """Raise UserError when the tab's image (a sample or a projected photo, with its latent and PTI
    weight delta) was made by another model than `model`, the label now in the model menu: that
    model would drag (or refine) a latent, and apply a weight delta, that are not its own. None or
    an empty tab checks nothing."""
    if model is None or state.image is None or not state.model or model == state.model:
        return
    redo = "upload the photo again" if state.projection else "press Generate"
    raise UserError(f"The image was made by '{state.model}', but the model menu shows '{model}': pick "
                    f"'{state.model}' again to go on with it, or {redo} to use '{model}'.")


def generate(state: GanState, model: str, seed: Any, psi: float, generator: Any) -> View:
    """Render `generator(seed)` with truncation `psi`: a fresh image, no points, no region."""
    seed = check_seed(seed)
    psi = float(finite_number(psi, "The truncation ψ", low=0, high=1))
    ed = _editor(generator)
    img = ed.generate(seed, psi)
    w = ed.latent().cpu().numpy()
    state.model, state.seed, state.psi = model, seed, float(psi)
    state.w0, state.w, state.image0, state.image = w, w.copy(), img, img
    state.clicks, state.start_clicks, state.mask, state.frames = [], [], None, []
    state.input_id += 1
    state.photo, state.crop, state.weight_delta, state.projection = None, None, {}, None
    state.trail, state.last_result = [], None
    return View(state=state, canvas=canvas_for(state), editor=editor_value(img, None, state.scale),
                result=drawing.enlarge(img, state.scale),
                points_text="", seed=seed, download=save_png(img, f"stabledrag-gan-seed{seed}"), animation=None,
                status=f"Generated seed {seed} ({img.shape[1]}x{img.shape[0]}). " + click_status([]))


def run_drag(state: GanState, editor_value_: Any, settings: GanSettings, generator: Any,
             cancel: Optional[CancelToken] = None, progress: Optional[Callable[..., Any]] = None,
             recommended: Optional[dict[str, Any]] = None, model: Optional[str] = None) -> Iterator[View]:
    """Drag the points on the current image, yielding a live View every `preview_every` steps.

    recommended: the model's own settings (`AppEngine.recommended`); the tab's fields show those it
    has fields for, the others reach the config here (`GanSettings.edit_config`). model: the model
    menu's label for `generator`; UserError when the image is another model's (`check_same_model`).

    Starts from the current latent and the current handle positions, so Start after Stop (or after
    running out of steps) continues the edit. The final View carries the image and downloads.
    """
    img = require_image(state.image, state.NO_IMAGE)
    if state.w is None or state.w0 is None:
        raise UserError(state.NO_IMAGE)
    check_same_model(state, model)
    size = (img.shape[1], img.shape[0])
    check_point_count(len(state.clicks) // 2)
    points = validate(from_clicks(state.clicks), size)
    mask = mask_from_editor(editor_value_, size)
    check_handles_in_region(state.clicks, mask)
    ed = _editor(generator, state)
    if ed.image_size != size:
        raise UserError("The image was made by another model: press Generate again.")
    import torch

    ed.set_latent(torch.from_numpy(state.w0), as_reference=True)
    ed.set_latent(torch.from_numpy(state.w), as_reference=False)
    config = settings.edit_config(ed.image_size, recommended)

    if np.array_equal(state.w, state.w0):
        state.start_clicks = list(state.clicks)
    state.mask, state.settings, state.frames = mask, settings.to_dict(), []
    every = settings.preview_every
    session = ed.session(points, config, mask=mask, w_plus=settings.latent_space == "W+", cancel=cancel,
                         preview_every=every)
    targets = [tuple(t) for t in points.targets.tolist()]
    made_from, clicks0 = state.input_id, list(state.clicks)

    def replaced() -> bool:  # Reset, Generate, import, or the points edited while dragging
        return state.input_id != made_from or list(state.clicks) != clicks0

    first = canvas_for(state)
    add_frame(state.frames, full_canvas(state))
    t0 = time.monotonic()
    yield View(state=state, canvas=first, status=f"Dragging: step 0 of at most {config.max_steps}",
               progress=progress_html("Dragging", 0, config.max_steps), download=None, animation=None)
    for rec in session.frames(every=every):
        if replaced():
            session.cancel = cancel if cancel is not None else CancelToken()
            session.cancel.cancel()
            yield View(status=DRAG_REPLACED_MESSAGE, progress="")
            return
        handles = rec.handles.tolist()
        state.w = ed.latent().cpu().numpy()
        if session.last_preview is not None:
            state.image = np.asarray(session.last_preview)
        trail = [t.tolist() for t in session.trajectory]
        add_frame(state.frames, full_canvas(state, handles=handles, trail=trail))
        frame = canvas_for(state, handles=handles, trail=trail)
        if progress is not None:
            progress((rec.step, config.max_steps), desc="Dragging")
        stable = settings.method == "stabledrag"  # the baseline's nearest-neighbour tracker has no confidence
        per_handle = handle_lines(handles, targets, getattr(rec, "confidence", None) if stable else None,
                                  getattr(rec, "template_used", None) if stable else None)
        yield View(state=state, canvas=frame, progress=progress_html("Dragging", rec.step, config.max_steps),
                   status=f"Dragging: step {rec.step} of at most {config.max_steps} "
                          f"({time_text(time.monotonic() - t0, rec.step, config.max_steps)}). "
                          f"Handles (tracker's estimate): {per_handle}.")
    result = session.result()
    if replaced():
        yield View(status=DRAG_REPLACED_MESSAGE, progress="")
        return
    state.w = ed.latent().cpu().numpy()
    state.image = ed.image()
    state.clicks = clicks_from_pairs(result.handles.tolist(), targets)
    state.trail = [t.tolist() for t in result.trajectory]
    final = canvas_for(state, trail=state.trail)
    add_frame(state.frames, full_canvas(state, trail=state.trail))
    state.last_result = summarize_result(result, targets, settings.method)
    how = status_words(result.status)
    if result.status in ("max_steps", "cancelled"):
        how += " (press Start to continue)"
    yield View(state=state, canvas=final, result=drawing.enlarge(state.image, state.scale), progress="",
               points_text=clicks_to_text(state.clicks),
               status=f"{how} after {result.steps} steps in {time.monotonic() - t0:.0f} s. "
                      f"Handles: {state.last_result['text']}. {DISTANCE_NOTE}",
               download=_download(state),
               animation=save_gif(state.frames, "stabledrag-gan-drag"))


def summarize_result(result: Any, targets: list, method: str) -> dict[str, Any]:
    """The numbers of a finished drag `result` (a `DragResult`, image px) that the page shows
    (see `compare.drag_numbers`)."""
    conf = result.confidences[-1].tolist() if len(result.confidences) else None
    return drag_numbers(result.handles.tolist(), targets, result.status, result.steps, method, conf,
                        getattr(result, "template_used", None))


def run_compare(state: GanState, editor_value_: Any, settings: GanSettings, generator: Any,
                cancel: Optional[CancelToken] = None, progress: Optional[Callable[..., Any]] = None,
                recommended: Optional[dict[str, Any]] = None, model: Optional[str] = None) -> Iterator[View]:
    """Drag the same points from the same latent with StableDrag, then with the baseline (every
    other setting equal), streaming both; the last View shows the two results side by side and
    their numbers (`compare.run_compare`). The tab's own image, latent and points are left as they were.
    model: as in `run_drag`."""
    require_image(state.image, state.NO_IMAGE)
    check_same_model(state, model)
    cancel = cancel if cancel is not None else CancelToken()

    def start(method: str) -> tuple[GanState, Iterator[View]]:
        work = dataclasses.replace(state, clicks=list(state.clicks), start_clicks=list(state.start_clicks),
                                   frames=[], trail=[], last_result=None)
        return work, run_drag(work, editor_value_, dataclasses.replace(settings, method=method), generator,
                              cancel=cancel, progress=progress, recommended=recommended, model=model)

    def outcome(work: GanState) -> Optional[CompareRun]:
        if work.last_result is None:
            return None
        return CompareRun(image=work.image, clicks=work.clicks, mask=work.mask, handles=None, trail=work.trail,
                          numbers=work.last_result)

    methods = [(m, method_label(m)) for m in COMPARE_METHODS]
    yield from compare.run_compare(state, methods, start, outcome, cancel)


def reset(state: GanState) -> View:
    """Back to the generated image and the points as first placed."""
    if state.image0 is None or state.w0 is None:
        raise UserError(state.NO_IMAGE)
    state.w, state.image = state.w0.copy(), state.image0
    state.input_id += 1
    if state.start_clicks:
        state.clicks = list(state.start_clicks)
    state.frames, state.trail, state.last_result = [], [], None
    return View(state=state, canvas=canvas_for(state), result=drawing.enlarge(state.image, state.scale),
                points_text=clicks_to_text(state.clicks),
                download=_download(state), animation=None,
                status=("Back to the projected photo. " if state.projection else "Back to the generated image. ")
                + click_status(state.clicks, state.RUN_BUTTON, state.mask))


def export_session(state: GanState, settings: GanSettings) -> View:
    """Write model, seed, latents, points, region and settings to a session zip."""
    if state.image0 is None or state.image is None:
        raise UserError("Nothing to export yet: generate an image first.")
    latents = {"latent0": state.w0, "latent": state.w} if state.w0 is not None else {}
    gan: dict[str, Any] = {"model": state.model, "seed": state.seed, "psi": state.psi}
    if state.projection:
        gan.update(projected=True, crop=state.crop, projection=state.projection)
    data = SessionData(engine="gan", image=state.image0, clicks=list(state.clicks), mask=state.mask,
                       result=state.image, settings=settings.to_dict(), latents=latents, gan=gan,
                       weight_delta=dict(state.weight_delta), photo=state.photo)
    path = write_session(data, new_output_path("stabledrag-gan-session", ".zip"))
    return View(state=state, session_file=str(path), status="Session exported: download the .zip below.")


def _projected_session(new: GanState, data: SessionData, model: str) -> View:
    """Fill `new` with a projected photo's session parts (photo, crop, weight delta, metrics); the
    latents and images are set by the caller. Returns the View to complete."""
    crop = data.gan.get("crop")
    if data.photo is not None and (not isinstance(crop, list) or len(crop) != 7):
        raise UserError("The session's crop box is damaged.")
    new.model, new.seed, new.psi = model, 0, 0.7
    new.photo, new.crop = data.photo, crop if data.photo is not None else None
    new.weight_delta = dict(data.weight_delta)
    new.projection = data.gan.get("projection") if isinstance(data.gan.get("projection"), dict) else {"pti": False}
    return View(state=new, seed=KEEP, animation=None)


def import_session(state: GanState, blob: Optional[bytes], models: list[str],
                   get_generator: Callable[[str], Any]) -> View:
    """Restore a GAN session: the model must be on this app's menu; the latents are used when they
    fit it, else the image is regenerated from the seed."""
    if not blob:
        raise UserError("Choose a session .zip file to import.")
    data = read_session(blob, expect_engine="gan")
    model = str(data.gan.get("model", ""))
    if model not in models:
        raise UserError(f"The session used the model {model!r}, which this app does not offer "
                        f"(available: {', '.join(models) or 'none'}).")
    try:
        seed, psi = int(data.gan.get("seed", 0)), float(data.gan.get("psi", 0.7))
    except (TypeError, ValueError):
        raise UserError("The session's seed or truncation is damaged.") from None
    generator = get_generator(model)
    new = GanState()  # filled completely before it replaces the tab's state, so a failure loses nothing
    w0, w = data.latents.get("latent0"), data.latents.get("latent")
    projected = bool(data.gan.get("projected"))
    if projected:
        if w0 is None or w is None:
            raise UserError("The session is of a projected photo but holds no latents; it cannot be restored.")
        view = _projected_session(new, data, model)
    else:
        view = generate(new, model, seed, psi, generator)
    if w0 is not None and w is not None:
        try:
            ed = _editor(generator, new)
        except UserError as e:
            raise UserError(f"The session's tuned weights do not fit the model {model!r}: {e}") from None
        import torch

        try:
            ed.set_latent(torch.from_numpy(w0), as_reference=True)
            w0_full, image0 = ed.latent().cpu().numpy(), ed.image()
            ed.set_latent(torch.from_numpy(w), as_reference=False)
        except UserError as e:
            raise UserError(f"The session's latents do not fit the model {model!r}: {e}") from None
        new.w0, new.image0 = w0_full, image0
        new.w, new.image = ed.latent().cpu().numpy(), ed.image()
    size = (new.image.shape[1], new.image.shape[0])
    if (data.image.shape[1], data.image.shape[0]) != size:
        raise UserError("The session's image size does not match the model's; was it made with another model?")
    new.clicks, new.start_clicks = list(data.clicks), list(data.clicks)
    new.mask = data.mask
    new.zoom, new.zoom_centre = state.zoom, state.zoom_centre  # the page's zoom controls keep their values
    settings = GanSettings.from_values({**GanSettings().to_dict(), **GanSettings.upgrade(data.settings)})
    view.canvas, view.editor = canvas_for(new), editor_value(new.image, new.mask, new.scale)
    view.result, view.points_text = drawing.enlarge(new.image, new.scale), clicks_to_text(new.clicks)
    view.download = _download(new)
    view.model, view.settings = model, settings.ui_values()
    what = "a projected photo" if projected else f"seed {seed}"
    view.status = f"Session imported: {model}, {what}, {len(new.clicks) // 2} drag pair(s)."
    new.input_id = state.input_id + 1
    state.__dict__.update(vars(new))
    view.state = state
    return view
