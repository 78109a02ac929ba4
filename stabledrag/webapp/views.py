"""What a handler returns: a `View` naming the outputs it changes (others stay as they are),
plus the handlers both tabs share (clicks, moving a marker by selecting or dragging it, Undo /
Redo, clear, delete a pair, zoom, points as text, region refresh) and the files handed to the browser (result PNG,
animation GIF, session zip).

Handlers are plain functions over plain values, so tests call them directly; `ui` turns a
`View` into Gradio outputs (a field left at `KEEP` becomes `gr.skip()`).
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from ..errors import UserError
from ..limits import LIMITS, check_point_count
from . import drawing
from .masks import mask_from_editor
from .state import (MAX_UNDO, ZOOM_FACTORS, add_click, as_clicks, clicks_from_text, clicks_to_text, move_click,
                    require_image)


class _Keep:
    """Marker: leave this output unchanged."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


@dataclass
class View:
    """Outputs of one handler call; each field is a new value or `KEEP`.

    state: the tab's state object. canvas: the point canvas (`H x W x 3`, markers drawn).
    editor: the region editor's background (the enlarged image; resets the painting) or None.
    result: Diff: `(before, after)` for the slider; GAN: the current image.
    points_text / status: texts. progress: HTML of the per-phase progress bar ("" hides it).
    download / animation / session_file: file paths or None.
    prompt / seed / model: values for those inputs. settings: `{name: value}` for settings inputs.
    compare / compare_table: the side-by-side comparison image and its Markdown numbers (both tabs).
    """

    state: Any = KEEP
    canvas: Any = KEEP
    editor: Any = KEEP
    result: Any = KEEP
    points_text: Any = KEEP
    status: Any = KEEP
    progress: Any = KEEP
    download: Any = KEEP
    animation: Any = KEEP
    session_file: Any = KEEP
    prompt: Any = KEEP
    seed: Any = KEEP
    model: Any = KEEP
    compare: Any = KEEP
    compare_table: Any = KEEP
    settings: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def names() -> list[str]:
        """Field names in output order (without `settings`)."""
        return [f.name for f in fields(View) if f.name != "settings"]


# -- shared point handling ------------------------------------------------------------------------


def canvas_for(state: Any, handles: Optional[Sequence[Sequence[float]]] = None,
               image: Optional[np.ndarray] = None, trail: Optional[Sequence] = None) -> np.ndarray:
    """The point canvas of a tab state as the page shows it: `image` (default `state.image`) with
    its clicks, mask, selected marker and zoom (`state.window`); clicks on it map back through
    `state.window`. `full_canvas` is the same without zoom, for animations and comparisons."""
    img = require_image(state.image, state.NO_IMAGE) if image is None else image
    return drawing.draw_points(img, state.clicks, mask=state.mask, handles=handles, trail=trail,
                               window=state.window, selected=selection(state))


def full_canvas(state: Any, handles: Optional[Sequence[Sequence[float]]] = None,
                image: Optional[np.ndarray] = None, trail: Optional[Sequence] = None) -> np.ndarray:
    """The whole image (default `state.image`) enlarged by `state.scale`, with the state's clicks
    and mask, `handles` and `trail` (no zoom, no selection): a frame of the drag animation."""
    img = require_image(state.image, state.NO_IMAGE) if image is None else image
    return drawing.draw_points(img, state.clicks, state.scale, mask=state.mask, handles=handles, trail=trail)


def points_view(state: Any, status: Optional[str] = None) -> View:
    """The View after the clicks changed: canvas, points text and a status line (default: what to
    do next, see `click_status`)."""
    if status is None:
        status = click_status(state.clicks, getattr(state, "RUN_BUTTON", "Run"), state.mask)
    return View(state=state, canvas=canvas_for(state), points_text=clicks_to_text(state.clicks), status=status)


def click_status(clicks: Sequence, run_button: str = "Run", mask: Optional[np.ndarray] = None) -> str:
    """What to do next, given the clicks so far (`run_button`: the tab's button that starts a drag).
    With a painted region `mask` (`H x W` bool), a handle outside it is warned about at once."""
    n = len(clicks)
    if n == 0:
        return "Click a handle (red) on the image, then where it should go (blue)."
    warning = handles_outside_region(clicks, mask)
    if n % 2 == 1:
        return f"Handle {n // 2 + 1} placed at {tuple(clicks[-1])}: now click its target." + warning
    hint = "" if mask is not None else " No region painted: the rest of the image may move too."
    return (f"{n // 2} drag pair(s) ready. Add more, or press {run_button} (to move a marker, drag it, or "
            "click it and then its new place).") + (warning or hint)


def handles_outside_region(clicks: Sequence, mask: Optional[np.ndarray]) -> str:
    """" Warning: handle k ... is outside the painted region ..." (with a leading space) or ""."""
    if mask is None:
        return ""
    out = [n // 2 + 1 for n in range(0, len(clicks), 2)
           if 0 <= int(clicks[n][1]) < mask.shape[0] and 0 <= int(clicks[n][0]) < mask.shape[1]
           and not mask[int(clicks[n][1]), int(clicks[n][0])]]
    if not out:
        return ""
    which = ", ".join(map(str, out))
    return (f" Warning: handle {which} is outside the painted region and cannot move; paint over it "
            "or clear the painting.")


def _point_name(index: int) -> str:
    return f"{'handle' if index % 2 == 0 else 'target'} {index // 2 + 1}"


def marker_at(state: Any, index: Sequence[float]) -> Optional[int]:
    """The index into `state.clicks` of the marker drawn under the canvas position `index`
    (`(column, row)` of the canvas as shown, zoom included), the nearest when markers overlap
    (the first placed on a tie); None when the click is on no marker."""
    window = state.window
    w, h = window.w * window.scale, window.h * window.scale
    r = drawing.marker_radius(w, h)
    best, best_d = None, r
    for i, p in enumerate(state.clicks):
        cx, cy = window.to_canvas(p)
        d = math.hypot(float(index[0]) - cx, float(index[1]) - cy)
        if d <= r and (best is None or d < best_d):
            best, best_d = i, d
    return best


def _history(state: Any) -> Any:
    """The state's point history, emptied first when it was recorded on another input or other
    clicks (a new image, Reset, an import, a drag that moved the handles)."""
    history = state.history
    if not history.valid_for(state.input_id, state.clicks):
        history.undo, history.redo, state.selected = [], [], None
        history.input_id, history.clicks = state.input_id, as_clicks(state.clicks)
    return history


def selection(state: Any) -> Optional[int]:
    """The index into `state.clicks` of the marker selected for moving, or None (also when the
    points changed since it was selected)."""
    sel = getattr(state, "selected", None)
    if sel is None or not state.history.valid_for(state.input_id, state.clicks) or not 0 <= sel < len(state.clicks):
        return None
    return sel


def _record_edit(state: Any, clicks: list) -> None:
    """Make `clicks` the state's points, remembering the previous ones for Undo (Redo is cleared)."""
    history = _history(state)
    history.undo = [*history.undo, as_clicks(state.clicks)][-MAX_UNDO:]
    history.redo = []
    state.clicks = as_clicks(clicks)
    history.clicks, state.selected = as_clicks(state.clicks), None


def add_point(state: Any, where: Any) -> View:
    """A click on the canvas: `where` is a `gr.SelectData` (its `index` is `[column, row]` of the
    canvas as shown, zoom included) or that `(column, row)` itself.

    With every handle paired, a click on a marker selects it (ringed in yellow); the next click
    moves the selected point there (a click on the same marker keeps it in place). Otherwise the
    click adds a handle or its target. Each placement and move can be undone."""
    img = require_image(state.image, state.NO_IMAGE)
    size = (img.shape[1], img.shape[0])
    index = where if isinstance(where, (list, tuple)) else getattr(where, "index", where)
    if not isinstance(index, (list, tuple)) or len(index) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in index):
        raise UserError("That click did not land on the image; click inside the picture.")
    xy = state.window.to_image(index)
    selected = selection(state)
    if selected is not None:
        if marker_at(state, index) == selected:
            state.selected = None
            return points_view(state, f"{_point_name(selected).capitalize()} stays where it is. "
                               + click_status(state.clicks, getattr(state, "RUN_BUTTON", "Run"), state.mask))
        clicks = move_click(state.clicks, selected, xy, size)
        _record_edit(state, clicks)
        return points_view(state, f"Moved {_point_name(selected)} to {xy}. "
                           + click_status(state.clicks, getattr(state, "RUN_BUTTON", "Run"), state.mask))
    if len(state.clicks) % 2 == 0:
        hit = marker_at(state, index)
        if hit is not None:
            _history(state)
            state.selected = hit
            return points_view(state, f"Selected {_point_name(hit)} at {tuple(state.clicks[hit])}: click where it "
                               "should go (or click it again to leave it).")
        check_point_count(len(state.clicks) // 2 + 1)
    _record_edit(state, add_click(state.clicks, xy, size))
    return points_view(state)


def _canvas_position(value: Any) -> Optional[tuple[float, float]]:
    """`(column, row)` from `[c, r]` / `(c, r)` / `"c,r"` when both are finite numbers, else None."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        c, r = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (c, r) if math.isfinite(c) and math.isfinite(r) else None


def parse_marker_drag(drag: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """The press and release positions of a mouse drag on the canvas: `drag` is the page script's
    text `"c0,r0:c1,r1"` or a pair `((c0, r0), (c1, r1))`, in pixels of the canvas as shown (zoom
    included; the positions an Image select event gives). UserError for anything else."""
    parts = drag.split(":") if isinstance(drag, str) else drag
    ends = [_canvas_position(p) for p in parts] if isinstance(parts, (list, tuple)) and len(parts) == 2 else []
    if len(ends) != 2 or None in ends:
        raise UserError("That drag did not come through as two canvas positions; drag the marker again, or click "
                        "it and then its new place.")
    return ends[0], ends[1]


def drag_marker(state: Any, drag: Any) -> View:
    """A marker dragged with the mouse (the page's script sends where the button went down and up,
    see `parse_marker_drag` and `marker_drag.MARKER_DRAG_JS`): the marker under the press moves to
    the image pixel under the release (`state.window.to_image`, so zoom is taken into account),
    checked as a click move is (`move_click`); Undo takes it back. A press on no marker is the
    click the browser would have sent without the script: `add_point` at the release position.
    The press picks the marker as `marker_at` does (the nearest within a marker's radius)."""
    img = require_image(state.image, state.NO_IMAGE)
    start, end = parse_marker_drag(drag)
    hit = marker_at(state, start)
    if hit is None:
        return add_point(state, end)
    xy = state.window.to_image(end)
    clicks = move_click(state.clicks, hit, xy, (img.shape[1], img.shape[0]))
    _record_edit(state, clicks)
    return points_view(state, f"Moved {_point_name(hit)} to {xy}. "
                       + click_status(state.clicks, getattr(state, "RUN_BUTTON", "Run"), state.mask))


def undo_point(state: Any) -> View:
    """Undo the last point edit (a placement, move, deletion, clear, or points given as text).
    Raises `UserError` when there is none."""
    return _step_history(state, back=True)


def redo_point(state: Any) -> View:
    """Redo the point edit last undone (until another edit is made). Raises `UserError` when
    there is none."""
    return _step_history(state, back=False)


def _step_history(state: Any, back: bool) -> View:
    """Undo (`back`) or Redo: the last points of one stack come back and the current points go
    onto the other (the Undo stack keeps at most `MAX_UNDO`)."""
    require_image(state.image, state.NO_IMAGE)
    history = _history(state)
    source = history.undo if back else history.redo
    if not source:
        raise UserError("There is no point edit to undo." if back else "There is nothing to redo.")
    current = as_clicks(state.clicks)
    if back:
        history.undo, history.redo = source[:-1], [*history.redo, current]
    else:
        history.undo, history.redo = [*history.undo, current][-MAX_UNDO:], source[:-1]
    state.clicks = source[-1]
    history.clicks, state.selected = list(state.clicks), None
    return points_view(state, ("Undone. " if back else "Redone. ")
                       + click_status(state.clicks, getattr(state, "RUN_BUTTON", "Run"), state.mask))


def clear_points(state: Any) -> View:
    """Remove every point (Undo brings them back)."""
    require_image(state.image, state.NO_IMAGE)
    _record_edit(state, [])
    return points_view(state)


def set_points_text(state: Any, text: str) -> View:
    """Replace the points by `"hx,hy:tx,ty ..."` (image px)."""
    img = require_image(state.image, state.NO_IMAGE)
    if isinstance(text, str) and text.count(":") > LIMITS.max_points:
        check_point_count(text.count(":"))  # before parsing a huge text
    clicks = clicks_from_text(text, (img.shape[1], img.shape[0]))
    check_point_count(len(clicks) // 2)
    _record_edit(state, clicks)
    return points_view(state)


def delete_pair(state: Any, number: Any) -> View:
    """Remove drag pair `number` (1-based, as drawn on the markers); the others keep their order."""
    require_image(state.image, state.NO_IMAGE)
    pairs = (len(state.clicks) + 1) // 2
    try:
        k = int(number)
    except (TypeError, ValueError):
        raise UserError("Give the number of the pair to delete (the number on its markers).") from None
    if not 1 <= k <= pairs:
        raise UserError(f"There is no pair {k}: the image has {pairs} pair(s)." if pairs else
                        "There are no points to delete.")
    _record_edit(state, list(state.clicks[: 2 * (k - 1)]) + list(state.clicks[2 * k:]))
    return points_view(state)


def set_zoom(state: Any, zoom: Any, centre_x: Any = 50, centre_y: Any = 50) -> View:
    """Zoom the point canvas `zoom` times (one of `ZOOM_FACTORS`, as a number or a label like
    "4×"; 1 = whole image) around `(centre_x, centre_y)` in percent of the image's width and
    height (clamped to 0..100). Clicks keep landing on the exact image pixel under the pointer; the
    markers keep their size, so small parts get room. Without an image the zoom is remembered for
    the next one. UserError for another factor or a non-finite centre."""
    try:
        z = int(str(zoom).strip().rstrip("×x").strip())
        cx, cy = float(centre_x), float(centre_y)
    except (TypeError, ValueError):
        z, cx, cy = 0, 0.0, 0.0
    if z not in ZOOM_FACTORS or not (math.isfinite(cx) and math.isfinite(cy)):
        raise UserError(f"Zoom must be one of {', '.join(f'{f}×' for f in ZOOM_FACTORS)}, with a centre in percent.")
    state.zoom, state.zoom_centre = z, (min(max(cx, 0.0), 100.0) / 100, min(max(cy, 0.0), 100.0) / 100)
    if state.image is None:
        return View(state=state)
    w = state.window
    status = ("Whole image shown." if z == 1 else
              f"Zoomed {z}×: image pixels x {w.x0}-{w.x0 + w.w - 1}, y {w.y0}-{w.y0 + w.h - 1} shown.")
    return View(state=state, canvas=canvas_for(state), status=status)


def refresh_region(state: Any, editor_value: Any, quiet_if_same: bool = False) -> View:
    """Read the painted region from the editor and show it on the canvas.

    quiet_if_same: the editor's own change event, which also fires when the app has just set the
    editor (an image or a restored session): an unchanged region then changes nothing on the page.
    The "Show painted region" button always says what it read.
    """
    img = require_image(state.image, state.NO_IMAGE)
    mask = mask_from_editor(editor_value, (img.shape[1], img.shape[0]))
    if quiet_if_same and _same_mask(mask, state.mask):
        return View(state=state)
    state.mask = mask
    return View(state=state, canvas=canvas_for(state),
                status=region_status(mask) + handles_outside_region(state.clicks, mask))


def region_status(mask: Optional[np.ndarray]) -> str:
    """One line describing the editable region (`H x W` bool or None)."""
    if mask is None:
        return "No region painted: the whole image may change (paint a region to keep the rest fixed)."
    return f"Editable region: {int(mask.sum())} of {mask.size} pixels (the dimmed area stays fixed)."


def _same_mask(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def check_handles_in_region(clicks: Sequence, mask: Optional[np.ndarray]) -> None:
    """UserError when a handle lies outside the painted editable region."""
    if mask is None:
        return
    for n in range(0, len(clicks) - 1, 2):
        x, y = clicks[n]
        if not mask[int(y), int(x)]:
            raise UserError(f"Handle {n // 2 + 1} at ({x}, {y}) is outside the painted region, so it could not "
                            "move: paint over it too, or clear the painting to let the whole image change.")


STATUS_WORDS = {
    "reached": "Reached the targets (by the tracker's estimate)",
    "max_steps": "Ran out of steps",
    "cancelled": "Stopped",
    "diverged": "Stopped: the optimisation diverged; the last good image is kept",
    "running": "Paused",
}


def status_words(status: str) -> str:
    """A drag's status key ("reached", "max_steps", ...) in words (never the internal name)."""
    return STATUS_WORDS.get(status, "Finished")


def handle_lines(handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]],
                 confidence: Optional[Sequence[float]] = None,
                 template_used: Optional[Sequence[bool]] = None) -> str:
    """Per handle: its distance to the target as the tracker estimates it (image px), the tracker's
    confidence (StableDrag's discriminative tracker: the peak score in [0, 1]) and whether the
    template supervised the step (confidence below tau). E.g. "#1 4.2 px, confidence 0.91"."""
    parts = []
    for n, (h, t) in enumerate(zip(handles, targets)):
        d = float(np.hypot(float(h[0]) - float(t[0]), float(h[1]) - float(t[1])))
        text = f"#{n + 1} {d:.1f} px"
        if confidence is not None and n < len(confidence):
            text += f", confidence {float(confidence[n]):.2f}"
        if template_used is not None and n < len(template_used) and template_used[n]:
            text += " (template)"
        parts.append(text)
    return "; ".join(parts)


def time_text(elapsed_s: float, step: int, total: Optional[int]) -> str:
    """"12 s, about 30 s left" from the elapsed time and the steps done of `total`."""
    text = f"{elapsed_s:.0f} s"
    if total and 0 < step < total:
        text += f", about {elapsed_s / step * (total - step):.0f} s left at most"
    return text


DISTANCE_NOTE = ("Distances are the tracker's estimate of where each handle now is (what the drag optimises), "
                 "not a measurement of the picture: check the result.")


def progress_html(label: str, step: int, total: Optional[int]) -> str:
    """A labelled progress bar (`step` of `total`; an unknown total shows a busy bar)."""
    import html

    text = html.escape(label) + (f" — {step}/{total}" if total else "")
    bar = f'<progress max="{total}" value="{min(step, total)}"></progress>' if total else "<progress></progress>"
    return f'<div class="sd-progress"><span>{text}</span>{bar}</div>'


# -- files for the browser ------------------------------------------------------------------------

#: Files the app writes for downloads are removed after this many seconds (`--cache-ttl`).
OUTPUT_TTL_S = 1800


def _outputs_root() -> Path:
    return Path(tempfile.gettempdir()) / "stabledrag-studio"


def outputs_dir() -> Path:
    """This process's folder for downloadable files (old files in it are pruned). Created on first
    use, removed when the process exits (see `clean_stale_output_dirs` for crashed processes)."""
    d = _outputs_root() / str(os.getpid())
    if not d.is_dir():
        d.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, d, True)
    now = time.time()
    for p in d.iterdir():
        try:
            if now - p.stat().st_mtime > OUTPUT_TTL_S:
                p.unlink()
        except OSError:
            pass
    return d


def own_gradio_cache() -> Optional[Path]:
    """Point Gradio's cache (uploads, streamed frames, downloads) into this process's outputs folder
    unless GRADIO_TEMP_DIR is set, so `sweep_outputs` and the exit / dead-process cleanup cover it.
    Returns the folder used, or None when the user chose one. Call before building the Blocks."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return None
    d = outputs_dir() / "gradio"
    d.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(d)
    return d


def sweep_outputs(ttl_s: float, root: Optional[Path] = None) -> int:
    """Delete files under `root` (default `outputs_dir()`, Gradio's cache included when it lives
    there) older than `ttl_s` seconds, and the folders they leave empty; returns files deleted."""
    root = root or outputs_dir()
    now, removed = time.time(), 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                if now - os.lstat(p).st_mtime > ttl_s:
                    os.remove(p)
                    removed += 1
            except OSError:
                pass
        if dirpath != str(root) and not os.listdir(dirpath) and os.path.basename(dirpath) != "gradio":
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    return removed


_sweeper_started = False


def start_sweeper(ttl_s: float) -> None:
    """Run `sweep_outputs(ttl_s)` every min(300, ttl_s / 2) seconds in a daemon thread (once per process)."""
    global _sweeper_started
    if _sweeper_started:
        return
    _sweeper_started = True
    import threading

    def loop() -> None:
        while True:
            time.sleep(max(2.0, min(300.0, ttl_s / 2)))
            try:
                sweep_outputs(OUTPUT_TTL_S)
            except OSError:
                pass

    threading.Thread(target=loop, name="stabledrag-temp-sweeper", daemon=True).start()


def clean_stale_output_dirs() -> int:
    """Remove the output folders of app processes that no longer run (killed, crashed); returns
    how many were removed. Folders of live processes are left alone."""
    removed = 0
    root = _outputs_root()
    if not root.is_dir():
        return 0
    for d in root.iterdir():
        if not d.is_dir() or not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            os.kill(int(d.name), 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, OSError):
            continue  # someone else's live process, or not a pid
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


def new_output_path(stem: str, suffix: str) -> Path:
    """A fresh file path in `outputs_dir()` named `stem-<random>.suffix`."""
    return outputs_dir() / f"{stem}-{uuid.uuid4().hex[:10]}{suffix}"


def save_png(image: np.ndarray, stem: str) -> str:
    """Write `image` as a PNG for download; returns its path."""
    path = new_output_path(stem, ".png")
    Image.fromarray(np.asarray(image)[..., :3].astype(np.uint8)).save(path)
    return str(path)


def save_gif(frames: Sequence[np.ndarray], stem: str) -> Optional[str]:
    """Write the drag animation (None when there are fewer than two frames); returns its path."""
    if len(frames) < 2:
        return None
    return str(drawing.save_animation(frames, new_output_path(stem, ".gif")))


#: Animation frames kept per drag, and their long side in pixels.
MAX_FRAMES = 60
FRAME_SIDE = 384


def add_frame(frames: list, canvas: np.ndarray) -> None:
    """Append a shrunk copy of `canvas` to `frames`, thinning them when there are too many."""
    frames.append(drawing.fit_long_side(canvas, FRAME_SIDE))
    if len(frames) > 2 * MAX_FRAMES:
        frames[:] = drawing.thin_frames(frames, MAX_FRAMES)
