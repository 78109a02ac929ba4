"""The GAN tab's "Upload a photo" controls and their wiring (handlers in `gan_projection`).

`build_photo_controls()` is called inside the tab's layout (beside Generate); `wire_photo_controls`
connects them once the tab's outputs exist. Kept apart from `ui` so the tab's layout can change
without touching projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import gradio as gr

from . import gan_projection as gp
from .gan_handlers import check_same_model
from .state import GanState


@dataclass
class PhotoControls:
    """The components: photo upload, PTI switch, More steps / Accept / Stop buttons, quality line."""

    photo: Any
    pti: Any
    more: Any
    accept: Any
    stop: Any
    quality: Any


def build_photo_controls() -> PhotoControls:
    """Create the controls (inside the caller's current Blocks context)."""
    with gr.Accordion("Upload a photo (project it into the generator, then drag it)", open=False,
                      elem_id="gan_photo_panel"):
        # Bytes, decoded by stabledrag.imageio like every other upload (not by Gradio's Image.open).
        photo = gr.File(label="Photo (PNG, JPEG, WebP; a centred square is used)", file_types=["image"],
                        type="binary", height=120, elem_id="gan_photo")
        pti = gr.Checkbox(value=True, label="Pivotal tuning (fine-tune the generator on the photo: sharper)",
                          elem_id="gan_photo_pti")
        with gr.Row():
            more = gr.Button("More steps", size="sm", elem_id="gan_photo_more")
            accept = gr.Button("Accept", size="sm", elem_id="gan_photo_accept")
            stop = gr.Button("Stop projecting", size="sm", variant="stop", elem_id="gan_photo_stop")
        quality = gr.Markdown("", elem_id="gan_photo_quality")
    return PhotoControls(photo, pti, more, accept, stop, quality)


def wire_photo_controls(c: PhotoControls, *, state: Any, model: Any, outputs: Any, call: Callable, stream: Callable,
                        generator: Callable[[str], Any], spec: Callable[[str], Optional[str]], tokens: Any,
                        queue_id: str,
                        gpu: Optional[Callable] = None) -> None:
    """Connect the controls: upload -> project (live), More steps, Accept, Stop.

    outputs: the tab's `ui.Outputs`; call / stream: `ui._call` / `ui._stream`; generator(label) ->
    the loaded model; spec(label) -> its path (for its recommended projection settings); tokens:
    the app's per-session `CancelTokens`; queue_id: the GPU queue id.
    """
    outs = outputs.all + [c.quality]

    def st(s: Optional[GanState]) -> GanState:
        return s if s is not None else GanState()

    def with_quality(values: list[Any], s: GanState) -> list[Any]:
        return values + [gp.quality_text(s)]

    def on_photo(s, label, photo, pti, request: gr.Request, progress=gr.Progress()):
        if photo is None:
            return
        token = tokens.begin(request, "gan_photo")  # this projection's own Stop token
        s = st(s)
        try:
            for values in stream(outputs, lambda: gp.project_photo(s, label, photo, generator(label), bool(pti),
                                                                   cancel=token, progress=progress,
                                                                   spec=spec(label))):
                yield with_quality(values, s)
        finally:
            tokens.end(request, "gan_photo", token)

    def on_more(s, label, request: gr.Request, progress=gr.Progress()):
        token = tokens.begin(request, "gan_photo")
        s = st(s)

        def more():
            check_same_model(s, label)  # before loading the menu's model for nothing
            return gp.more_steps(s, generator(label), cancel=token, progress=progress, spec=spec(label), model=label)

        try:
            for values in stream(outputs, more):
                yield with_quality(values, s)
        finally:
            tokens.end(request, "gan_photo", token)

    def on_accept(s):
        s = st(s)
        return with_quality(call(outputs, gp.accept, s), s)

    def on_stop(request: gr.Request):
        tokens.stop(request, "gan_photo")

    if gpu is not None:
        on_photo, on_more = gpu(duration=120)(on_photo), gpu(duration=120)(on_more)
    c.photo.upload(on_photo, [state, model, c.photo, c.pti], outs, api_name="gan_project",
                   concurrency_id=queue_id, concurrency_limit=1, show_progress="hidden")
    c.more.click(on_more, [state, model], outs, api_name="gan_project_more", concurrency_id=queue_id,
                 concurrency_limit=1, show_progress="hidden")
    c.accept.click(on_accept, [state], outs, api_name="gan_project_accept", show_progress="hidden")
    c.stop.click(on_stop, None, None, queue=False, api_visibility="private")
