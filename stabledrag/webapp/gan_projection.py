"""The GAN tab's "Upload a photo" handlers: project a photo into the generator, then drag it.

Flow: upload a photo -> `project_photo` crops it to a square, projects it (W/Z, then W+, then
pivotal tuning) with a live preview per phase and shows PSNR/SSIM -> "More steps" refines it
(`more_steps`, continuing from the current projection) or "Accept" keeps it -> the drag runs as
on a generated sample (`gan_handlers.run_drag` uses the tuned weights) -> the download is the
edit pasted back into the full photo.

Handlers are plain functions over `GanState` returning `View`s (see `views`); the maths is in
`stabledrag.gan.projection`.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..errors import UserError
from ..progress import CancelToken, Cancelled, Progress
from . import drawing
from .masks import editor_value
from .state import GanState
from .views import View, canvas_for, click_status, progress_html, save_png

log = logging.getLogger(__name__)

PHASE_LABELS = {"project_w": "Projecting (coarse)", "project_wplus": "Projecting (W+)", "pti": "Pivotal tuning"}
MAX_PHOTO_SIDE = 4096


def projection_config(pti: bool = True, steps_scale: float = 1.0) -> Any:
    """The app's projection settings: the toy-tuned defaults (`TOY_PROJECTION`, Z start) with the
    phase steps multiplied by `steps_scale`; `pti=False` skips pivotal tuning."""
    from ..gan.projection import ProjectionConfig, TOY_PROJECTION

    values = dict(TOY_PROJECTION)
    for k in ("w_steps", "wplus_steps", "pti_steps"):
        values[k] = max(0, int(round(values[k] * steps_scale)))
    if not pti:
        values["pti_steps"] = 0
    return ProjectionConfig(**values)


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
    from ..gan.projection import CropBox, paste_back

    if state.photo is not None and state.crop is not None and state.image is not None:
        return paste_back(state.photo, state.image, CropBox.from_list(state.crop))
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


def _run(state: GanState, generator: Any, image: np.ndarray, crop: Any, config: Any, init: Any,
         cancel: Optional[CancelToken], progress: Optional[Callable[..., Any]]) -> Iterator[View]:
    """Run `project` in steps, yielding a live View after each reported preview; the last View
    holds the finished projection (state filled) or, when cancelled, leaves the state as it was."""
    import queue
    import threading

    from ..gan.projection import project

    reports: "queue.Queue[Any]" = queue.Queue()
    box: dict[str, Any] = {}
    cancel = cancel if cancel is not None else CancelToken()  # also stops the work if the page goes away

    def work() -> None:
        try:
            box["result"] = project(generator, image, config, crop=crop, progress=reports.put, cancel=cancel,
                                    preview_every=10, init=init)
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
            label = PHASE_LABELS.get(p.phase, p.phase)
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
    res = box["result"]
    state.w0 = res.ws.numpy()
    state.w = state.w0.copy()
    state.image0 = state.image = res.image
    state.weight_delta = {k: v.numpy() for k, v in res.weight_delta.items()}
    state.projection = res.metrics()
    state.clicks, state.start_clicks, state.mask, state.frames = [], [], None, []
    state.seed = 0
    yield View(state=state, canvas=canvas_for(state), editor=editor_value(state.image, None, state.scale),
               result=drawing.enlarge(state.image, state.scale), points_text="", progress="", animation=None,
               download=save_png(download_image(state), "stabledrag-gan-photo"),
               status=f"Projected the photo. {quality_text(state).replace('**', '')}. Press 'More steps' to refine, "
                      "or click points and Start to drag. " + click_status([]))


def project_photo(state: GanState, model: str, photo: Any, generator: Any, pti: bool = True,
                  cancel: Optional[CancelToken] = None, progress: Optional[Callable[..., Any]] = None
                  ) -> Iterator[View]:
    """Crop `photo` (`H x W x 3/4` uint8 array, any size) to a centred square at the generator's
    resolution and project it (with pivotal tuning when `pti`); live Views, then the result."""
    from ..gan.projection import align_image

    arr = _read_photo(photo)
    if generator.c_dim > 0:
        raise UserError("This generator is class-conditional; photos can be projected into unconditional models only.")
    aligned, crop = align_image(arr, generator.img_resolution)
    new = GanState(model=model, photo=arr, crop=crop.to_list())
    views = _run(new, generator, aligned, crop, projection_config(pti), None, cancel, progress)
    for view in views:
        if view.state is not None and view.state is new:
            state.__dict__.update(vars(new))  # only a finished projection replaces the tab's image
            view.state = state
        yield view


def more_steps(state: GanState, generator: Any, cancel: Optional[CancelToken] = None,
               progress: Optional[Callable[..., Any]] = None) -> Iterator[View]:
    """Refine the current projection from where it is, with half the default steps again: more
    pivotal tuning when it had PTI, else more W+ steps; the drag on it (if any) is dropped."""
    import torch

    from ..gan.projection import CropBox, align_image

    if state.photo is None or state.crop is None or state.w0 is None or not state.projection:
        raise UserError("Upload a photo first: 'More steps' refines a projected photo.")
    crop = CropBox.from_list(state.crop)
    aligned, _ = align_image(state.photo, crop.resolution, (crop.left, crop.top, crop.right, crop.bottom))
    pti = bool(state.projection.get("pti"))
    cfg = projection_config(pti, steps_scale=0.5)
    # Continue gently: with PTI only the weights are tuned further around the fixed pivot (moving
    # the latent would undo the tuning); without it W+ is refined at a quarter of the step size.
    # (The W phase is skipped whenever a projection continues from `init`.)
    if pti:
        cfg = dataclasses.replace(cfg, wplus_steps=0, w_steps=max(cfg.w_steps, 1), pti_lr=cfg.pti_lr * 0.5)
    else:
        cfg = dataclasses.replace(cfg, wplus_lr=cfg.wplus_lr * 0.25)
    init = types.SimpleNamespace(ws=torch.from_numpy(state.w0), w=torch.from_numpy(state.w0[:, 0]),
                                 weight_delta={k: torch.from_numpy(v) for k, v in state.weight_delta.items()})
    new = GanState(model=state.model, photo=state.photo, crop=state.crop)
    for view in _run(new, generator, aligned, crop, cfg, init, cancel, progress):
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
