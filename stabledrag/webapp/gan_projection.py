"""The GAN tab's "Upload a photo" handlers: project a photo into the generator, then drag it.

Flow: upload a photo -> `project_photo` crops it to a square, projects it (W/Z, then W+, then
pivotal tuning) with a live preview per phase and shows PSNR/SSIM -> "More steps" refines it
(`more_steps`, continuing from the current projection) or "Accept" keeps it -> the drag runs as
on a generated sample (`gan_handlers.run_drag` uses the tuned weights) -> the download is the
edit pasted back into the full photo.

Handlers are plain functions over `GanState` returning `View`s (see `views`); the maths is the
GAN engine's (`stabledrag.engine.PhotoProjector`, reached through `engine.get("gan")`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Optional

import numpy as np

from .. import engine as engines
from ..engine import PhotoProjector, Projection
from ..errors import UserError
from ..progress import CancelToken, Cancelled, Progress
from . import drawing
from .gan_handlers import check_same_model
from .masks import editor_value
from .state import GanState
from .views import View, canvas_for, click_status, progress_html, save_png

log = logging.getLogger(__name__)

PHASE_LABELS = {"project_w": "Projecting (coarse)", "project_wplus": "Projecting (W+)", "pti": "Pivotal tuning",
                "refine": "Refining where it is still off"}
MAX_PHOTO_SIDE = 4096


def projector() -> PhotoProjector:
    """The GAN engine as a `PhotoProjector`. UserError when the registered engine cannot project photos."""
    eng = engines.get("gan")
    if not isinstance(eng, PhotoProjector):
        raise UserError("This app's GAN engine cannot project photos.")
    return eng


def projection_config(spec: Optional[str] = None, pti: bool = True, steps_scale: float = 1.0) -> Any:
    """The projection settings of the model at `spec` (`PhotoProjector.projection_config`: the
    defaults under the model's own recommended ones, e.g. the toy GAN's Z start) with the phase
    steps multiplied by `steps_scale`; `pti=False` skips pivotal tuning."""
    return projector().projection_config(spec, pti, steps_scale)


def quality_text(state: GanState) -> str:
    """Markdown line with the projection's PSNR / SSIM (empty for generated samples)."""
    m = state.projection
    if not m:
        return ""
    text = f"**Projection:** PSNR {m['psnr_before_pti']:.2f} dB, SSIM {m['ssim_before_pti']:.3f} (latent alone)"
    if m.get("pti"):
        text += f" · **with pivotal tuning:** PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}"
    return text


def download_image(state: GanState) -> np.ndarray:
    """What "Download" gives: the current image, pasted back into the uploaded photo when there is one."""
    if state.photo is not None and state.crop is not None and state.image is not None:
        return projector().paste_back(state.photo, state.image, state.crop)
    return state.image


def _read_photo(photo: Any) -> np.ndarray:
    """The uploaded photo as `H x W x 3` uint8: file bytes (the page's upload) are decoded by
    `stabledrag.imageio` (format allow-list, size limits, EXIF, 16-bit, alpha); arrays are checked."""
    if photo is None:
        raise UserError("Choose a photo to upload first.")
    if isinstance(photo, (bytes, bytearray)):
        from ..imageio import read_image_array

        photo = read_image_array(bytes(photo), "photo")
    arr = np.asarray(photo)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 8:
        raise UserError("That file is not a usable photo (it should be an RGB image of at least 8x8 pixels).")
    if max(arr.shape[:2]) > MAX_PHOTO_SIDE:
        raise UserError(f"The photo is too large ({arr.shape[1]}x{arr.shape[0]}); use one under "
                        f"{MAX_PHOTO_SIDE} px a side.")
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))


def _run(state: GanState, generator: Any, image: np.ndarray, crop: list[int], config: Any,
         start: Optional[Projection], cancel: Optional[CancelToken], progress: Optional[Callable[..., Any]],
         labels: Optional[dict[str, str]] = None) -> Iterator[View]:
    """Run `PhotoProjector.project` in a thread, yielding a live View after each reported preview
    (phases named by `labels`, default `PHASE_LABELS`); the last View holds the finished projection
    (state filled) or, when cancelled, leaves the state as it was."""
    labels = PHASE_LABELS if labels is None else labels
    import queue
    import threading

    eng = projector()

    reports: "queue.Queue[Any]" = queue.Queue()
    box: dict[str, Any] = {}
    cancel = cancel if cancel is not None else CancelToken()  # also stops the work if the page goes away

    def work() -> None:
        try:
            box["result"] = eng.project(generator, image, config, crop, start=start, progress=reports.put,
                                        cancel=cancel, preview_every=10)
        except BaseException as e:  # handed to the page thread below
            box["error"] = e
        finally:
            reports.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    scale = drawing.display_scale(image.shape[1], image.shape[0])
    finished = False
    try:
        while True:
            p: Optional[Progress] = reports.get()
            if p is None:
                finished = True
                break
            label = labels.get(p.phase, p.phase)
            if progress is not None and p.total:
                progress((p.step, p.total), desc=label)
            if p.preview is not None or p.step == 0:
                frame = drawing.enlarge(p.preview if p.preview is not None else image, scale)
                yield View(canvas=frame, progress=progress_html(label, p.step, p.total or 1),
                           status=f"{label}: {p.step}/{p.total}")
    finally:
        if not finished:  # the caller stopped listening (page closed): stop the work too
            cancel.cancel()
    thread.join()
    if "error" in box:
        if isinstance(box["error"], Cancelled):
            yield View(progress="", status="Projection stopped; the previous image is kept.")
            return
        raise box["error"]
    res: Projection = box["result"]
    state.w0 = res.latent
    state.w = state.w0.copy()
    state.image0 = state.image = res.image
    state.weight_delta = dict(res.weight_delta)
    state.projection = res.metrics
    state.clicks, state.start_clicks, state.mask, state.frames = [], [], None, []
    state.seed = 0
    yield View(state=state, canvas=canvas_for(state), editor=editor_value(state.image, None, state.scale),
               result=drawing.enlarge(state.image, state.scale), points_text="", progress="", animation=None,
               download=save_png(download_image(state), "stabledrag-gan-photo"),
               status=f"Projected the photo. {quality_text(state).replace('**', '')}. Press 'More steps' to refine, "
                      "or click points and Start to drag. " + click_status([]))


def project_photo(state: GanState, model: str, photo: Any, generator: Any, pti: bool = True,
                  cancel: Optional[CancelToken] = None, progress: Optional[Callable[..., Any]] = None,
                  spec: Optional[str] = None) -> Iterator[View]:
    """Crop `photo` (`H x W x 3/4` uint8 array, any size) to a centred square at the generator's
    resolution and project it (with pivotal tuning when `pti`) with the settings of the model at
    `spec` (menu label `model`); live Views, then the result."""
    arr = _read_photo(photo)
    aligned, crop = projector().align_photo(generator, arr)
    new = GanState(model=model, photo=arr, crop=crop)
    views = _run(new, generator, aligned, crop, projection_config(spec, pti), None, cancel, progress)
    for view in views:
        if view.state is not None and view.state is new:
            state.__dict__.update(vars(new))  # only a finished projection replaces the tab's image
            view.state = state
        yield view


def more_steps(state: GanState, generator: Any, cancel: Optional[CancelToken] = None,
               progress: Optional[Callable[..., Any]] = None, spec: Optional[str] = None,
               model: Optional[str] = None) -> Iterator[View]:
    """Refine the current projection from where it is, with half the default steps (of the model
    at `spec`) again: more pivotal tuning when it had PTI, else more W+ steps; the drag on it (if
    any) is dropped. model: the menu's label for `generator`; UserError when the photo was
    projected into another model (`gan_handlers.check_same_model`)."""
    if state.photo is None or state.crop is None or state.w0 is None or not state.projection:
        raise UserError("Upload a photo first: 'More steps' refines a projected photo.")
    check_same_model(state, model)
    eng = projector()
    aligned, crop = eng.align_photo(generator, state.photo, state.crop)
    pti = bool(state.projection.get("pti"))
    # continue gently from where it is (`PhotoProjector.refine_config`)
    cfg = eng.refine_config(projection_config(spec, pti, steps_scale=0.5), pti)
    start = Projection(latent=state.w0, image=state.image0, weight_delta=dict(state.weight_delta),
                       metrics=dict(state.projection))
    new = GanState(model=state.model, photo=state.photo, crop=state.crop)
    # a press's tuning is shown as what it is: refining where the image is still off
    labels = {**PHASE_LABELS, "pti": PHASE_LABELS["refine"]} if pti else PHASE_LABELS
    for view in _run(new, generator, aligned, crop, cfg, start, cancel, progress, labels):
        if view.state is not None and view.state is new:
            state.__dict__.update(vars(new))
            view.state = state
        yield view


def accept(state: GanState) -> View:
    """Keep the projection as it is: a status that says what to do next."""
    if not state.projection:
        raise UserError("There is no projected photo to accept: upload one first.")
    return View(status="Projection accepted: click a handle, then its target, and press Start. "
                       + quality_text(state).replace("**", ""))
