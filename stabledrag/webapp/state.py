"""Per-user session state of the two tabs, kept in `gr.State` (one object per browser session).

Only plain data lives here (numpy arrays, lists, dicts), so a state can be copied, exported and
sent to a ZeroGPU worker. Clicks are image pixels `(x, y)`, alternating handle, target, handle, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from ..errors import UserError
from ..points import parse_drags
from .drawing import Window, display_scale, zoom_window

Click = tuple[int, int]
#: Point edits remembered for Undo (older ones are forgotten).
MAX_UNDO = 100
#: Zoom factors the point canvas offers.
ZOOM_FACTORS = (1, 2, 4, 8)


@dataclass
class PointHistory:
    """Undo / Redo of point edits (placing, moving, deleting, clearing, points as text).

    undo / redo: earlier / undone click lists (`[h1, t1, ...]` image px), newest last.
    input_id / clicks: the tab's `input_id` and clicks right after the last recorded edit; when
    either has changed since (a new image, a drag that moved the handles, Reset, an import) the
    history belongs to something else and is forgotten.
    """

    undo: list[list[Click]] = field(default_factory=list)
    redo: list[list[Click]] = field(default_factory=list)
    input_id: int = -1
    clicks: list[Click] = field(default_factory=list)

    def valid_for(self, input_id: int, clicks: Sequence[Click]) -> bool:
        """True when the history was recorded on this input and these clicks."""
        return self.input_id == input_id and [*map(_click, clicks)] == self.clicks


@dataclass
class PointEditing:
    """What both tab states add for editing points: the Undo/Redo history, the marker selected
    for moving (index into `clicks`, or None) and the canvas zoom (`zoom`: one of `ZOOM_FACTORS`;
    `zoom_centre`: `(x, y)` as fractions 0..1 of the image's width and height)."""

    history: PointHistory = field(default_factory=PointHistory)
    selected: Optional[int] = None
    zoom: int = 1
    zoom_centre: tuple[float, float] = (0.5, 0.5)


class _ImageCanvas:
    """What both tab states derive from their `image`: its size and the canvas enlargement."""

    image: Optional[np.ndarray]
    NO_IMAGE: ClassVar[str]

    @property
    def size(self) -> tuple[int, int]:
        """`(W, H)` of the tab's image (UserError with `NO_IMAGE` when there is none)."""
        img = require_image(self.image, self.NO_IMAGE)
        return int(img.shape[1]), int(img.shape[0])

    @property
    def scale(self) -> int:
        """Canvas enlargement of the tab's image (without zoom)."""
        return display_scale(*self.size)

    @property
    def window(self) -> Window:
        """The part of the image the point canvas shows, and its enlargement (zoom included)."""
        return zoom_window(self.size, self.scale, getattr(self, "zoom", 1),
                           getattr(self, "zoom_centre", (0.5, 0.5)))


@dataclass
class DiffState(PointEditing, _ImageCanvas):
    """StableDrag-Diff tab.

    image: `H x W x 3` uint8 input. name: where it came from (shown in the status line).
    clicks: `[h1, t1, h2, t2, ...]` image px. mask: last editable region read (`H x W` bool) or None.
    result: last edited image (`H x W x 3` uint8). report: the engine's JSON report of it.
    frames: drag animation frames (canvas images with markers, shrunk). settings: last run's settings.
    paused: a drag stopped by Stop, which Run continues while nothing else changed:
      {"key", "latent" (z_t float32), "handles" (input px), "steps"}; None otherwise.
    input_id: bumped whenever the image is replaced (upload, example, import), so a run that
    started on another image never stores its result here.
    history / selected / zoom / zoom_centre: point editing (see `PointEditing`).
    """

    NO_IMAGE: ClassVar[str] = "No image yet: upload one or pick an example."
    RUN_BUTTON: ClassVar[str] = "Run"
    image: Optional[np.ndarray] = None
    name: str = ""
    clicks: list[Click] = field(default_factory=list)
    mask: Optional[np.ndarray] = None
    result: Optional[np.ndarray] = None
    report: Optional[dict[str, Any]] = None
    frames: list[np.ndarray] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    paused: Optional[dict[str, Any]] = None
    input_id: int = 0


@dataclass
class GanState(PointEditing, _ImageCanvas):
    """StableDrag-GAN tab.

    model: label of the generator in the model menu. seed / psi: what generated `w0`.
    w0: generated W+ latent (`1 x num_ws x w_dim` float32); w: the current (dragged) one.
    image0 / image: their renders (`H x W x 3` uint8).
    clicks: current points; handles move with the drag so Start continues from where it stopped.
    start_clicks: the points as placed before the first drag since Generate/Reset.
    mask: flexible region (`H x W` bool) or None. frames: animation of the last drag.
    input_id: bumped by Generate, Reset and import, so a running drag notices that what it works
    on was replaced and stops without writing its state here.
    Projected photos (issue 16; all empty for generated samples): photo: the uploaded photo
    (`H' x W' x 3` uint8, for paste-back); crop: `CropBox.to_list()` of where the image came from;
    weight_delta: PTI's tuned - original weights (`{state-dict name: float32 array}`, empty without
    PTI); projection: its metrics (PSNR/SSIM with and without PTI, config, seconds).
    trail: handle positions per step of the last drag (`S x N x 2` image px), drawn on the canvas.
    last_result: the numbers of the last drag (see `compare.drag_numbers`).
    history / selected / zoom / zoom_centre: point editing (see `PointEditing`).
    """

    NO_IMAGE: ClassVar[str] = "No image yet: pick a model and press Generate (or upload a photo)."
    RUN_BUTTON: ClassVar[str] = "Start"
    model: str = ""
    seed: int = 0
    psi: float = 0.7
    w0: Optional[np.ndarray] = None
    w: Optional[np.ndarray] = None
    image0: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None
    clicks: list[Click] = field(default_factory=list)
    start_clicks: list[Click] = field(default_factory=list)
    mask: Optional[np.ndarray] = None
    frames: list[np.ndarray] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    input_id: int = 0
    photo: Optional[np.ndarray] = None
    crop: Optional[list[int]] = None
    weight_delta: dict[str, np.ndarray] = field(default_factory=dict)
    projection: Optional[dict[str, Any]] = None
    trail: list = field(default_factory=list)
    last_result: Optional[dict[str, Any]] = None


def require_image(image: Optional[np.ndarray],
                  message: str = "No image yet: upload one or pick an example.") -> np.ndarray:
    """`image`, or UserError(`message`) when it is None."""
    if image is None:
        raise UserError(message)
    return image


def add_click(clicks: Sequence[Click], xy: Click, size: tuple[int, int]) -> list[Click]:
    """`clicks` plus `xy` (image px), checked: inside the `size = (W, H)` image, and a target not on
    its own handle. Returns a new list; raises UserError otherwise."""
    w, h = size
    x, y = int(xy[0]), int(xy[1])
    if not (0 <= x < w and 0 <= y < h):
        raise UserError(f"The point ({x}, {y}) is outside the {w}x{h} image; click on the image.")
    if len(clicks) % 2 == 1 and tuple(clicks[-1]) == (x, y):
        raise UserError("The target is on its handle: click where the handle should move to.")
    return [*map(_click, clicks), (x, y)]


def move_click(clicks: Sequence[Click], index: int, xy: Click, size: tuple[int, int]) -> list[Click]:
    """`clicks` with point `index` (0-based into `[h1, t1, h2, ...]`) moved to `xy` (image px),
    checked: inside the `size = (W, H)` image and not onto its partner (a target on its own
    handle). Returns a new list; raises UserError otherwise."""
    w, h = size
    x, y = int(xy[0]), int(xy[1])
    if not (0 <= x < w and 0 <= y < h):
        raise UserError(f"The point ({x}, {y}) is outside the {w}x{h} image; click on the image.")
    out = [*map(_click, clicks)]
    if not 0 <= index < len(out):
        raise UserError("That point no longer exists; click a marker again.")
    partner = index + 1 if index % 2 == 0 else index - 1
    if partner < len(out) and out[partner] == (x, y):
        raise UserError("A target cannot sit on its own handle: click somewhere else.")
    out[index] = (x, y)
    return out


def as_clicks(clicks: Sequence[Sequence[float]]) -> list[Click]:
    """`clicks` as a new list of whole-pixel `(x, y)` tuples."""
    return [*map(_click, clicks)]


def _click(c: Sequence[float]) -> Click:
    return int(round(float(c[0]))), int(round(float(c[1])))


def clicks_to_text(clicks: Sequence[Click]) -> str:
    """`"hx,hy:tx,ty ..."` (the CLI's `--drag` form); a handle still waiting for its target ends
    the text as `"hx,hy:?"`."""
    parts = []
    for i in range(0, len(clicks), 2):
        h = clicks[i]
        t = clicks[i + 1] if i + 1 < len(clicks) else None
        parts.append(f"{h[0]},{h[1]}:" + (f"{t[0]},{t[1]}" if t is not None else "?"))
    return " ".join(parts)


def clicks_from_text(text: str, size: tuple[int, int]) -> list[Click]:
    """Parse `"hx,hy:tx,ty ..."` into clicks for an image of `size = (W, H)` (checked); an empty
    text gives no clicks. Raises UserError naming what is wrong."""
    if not text or not text.strip():
        return []
    from ..points import validate

    pts = validate(parse_drags([text]), size)
    out: list[Click] = []
    for h, t in pts.to_list():
        out += [_click(h), _click(t)]
    return out


def clicks_from_pairs(handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]]) -> list[Click]:
    """Interleave handle and target lists back into clicks (rounded to whole pixels)."""
    out: list[Click] = []
    for h, t in zip(handles, targets):
        out += [_click(h), _click(t)]
    return out
