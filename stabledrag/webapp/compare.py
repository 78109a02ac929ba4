"""Compare, written once for both tabs: StableDrag and the baseline (nearest-neighbour tracking and
plain supervision, every other setting equal) run one after the other from the same input and
points; the page then shows both results side by side, each with its handle trajectory, and a
table of their numbers (per handle: distance to the target as the tracker estimates it, in image
px; the last confidence; the steps the template supervised).

A tab supplies two functions: `start(method)` begins one run on a *copy* of its state and returns
`(copy, views)`, the tab's own streamed run (`gan_handlers.run_drag`, `diff_handlers.run_edit`);
`outcome(copy)` reads the finished copy as a `CompareRun` (None when the run produced no result).
The tab's own state (image, latent, points, result) is left as it was, except the region read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..progress import CancelToken
from . import drawing
from .views import View, canvas_for, handle_lines, status_words

#: The methods Compare runs, in order (keys of `stabledrag.config.METHODS`).
COMPARE_METHODS = ("stabledrag", "baseline")
CHANGED_MESSAGE = ("The comparison was stopped because the image or the points changed while it ran; nothing of it "
                   "was kept. Press Compare to run it again.")
STOPPED_MESSAGE = "Compare stopped; your image, points and result are unchanged."


@dataclass
class CompareRun:
    """One method's finished run: `image` (`H x W x 3` uint8), the clicks it ran on (image px),
    the region `mask` (`H x W` bool or None), the final `handles` (`N x 2` image px; None = the
    clicks' handles already are), the handle `trail` (`S x N x 2` image px) and its `numbers`
    (see `drag_numbers`)."""

    image: np.ndarray
    clicks: list
    mask: Optional[np.ndarray]
    handles: Optional[list]
    trail: list
    numbers: dict[str, Any]


def drag_numbers(handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]], status: str, steps: int,
                 method: str, confidence: Optional[Sequence[float]] = None,
                 template_used: Optional[Sequence[Sequence[bool]]] = None) -> dict[str, Any]:
    """The numbers of a finished drag that the page shows. handles / targets: `N x 2` image px
    (handles as the tracker estimates them). confidence: the last step's per-handle confidence
    (shown for StableDrag only: the baseline's nearest-neighbour tracker has none). template_used:
    per step and handle, whether the template supervised it. Returns `{"method", "status",
    "steps", "distances" (px, rounded to 0.01), "confidence" (or None), "template_steps" (per
    handle), "text" (one line)}`."""
    handles = [list(map(float, h)) for h in handles]
    conf = list(map(float, confidence)) if confidence is not None and method == "stabledrag" else None
    used = template_used or []
    counts = [sum(1 for step in used if n < len(step) and step[n]) for n in range(len(handles))]
    text = handle_lines(handles, targets, conf)
    if any(counts):
        supervised = ", ".join(f"#{n + 1} at {c} step(s)" for n, c in enumerate(counts) if c)
        text += f" (template supervised {supervised})"
    distances = [round(float(np.hypot(h[0] - float(t[0]), h[1] - float(t[1]))), 2) for h, t in zip(handles, targets)]
    return {"method": method, "status": status, "steps": int(steps), "distances": distances,
            "confidence": conf, "template_steps": counts, "text": text}


def compare_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A Markdown table of each method's numbers (`(label, drag_numbers(...))` per column)."""
    n = max(len(r["distances"]) for _, r in rows)
    head = "| | " + " | ".join(label for label, _ in rows) + " |\n|---|" + "---|" * len(rows) + "\n"
    lines = ["| outcome | " + " | ".join(f"{status_words(r['status']).split(':')[0]}, {r['steps']} steps"
                                         for _, r in rows) + " |"]
    for i in range(n):
        cells = []
        for _, r in rows:
            cell = f"{r['distances'][i]:.1f} px" if i < len(r["distances"]) else "–"
            if r.get("confidence") and i < len(r["confidence"]):
                cell += f", confidence {r['confidence'][i]:.2f}"
            if i < len(r["template_steps"]) and r["template_steps"][i]:
                cell += f", template at {r['template_steps'][i]} step(s)"
            cells.append(cell)
        lines.append(f"| handle {i + 1} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n\nDistances: the tracker's estimate of each handle's distance to its target."


def run_compare(state: Any, methods: Sequence[tuple[str, str]],
                start: Callable[[str], tuple[Any, Iterator[View]]], outcome: Callable[[Any], Optional[CompareRun]],
                cancel: CancelToken, live: Sequence[str] = ("canvas", "progress"),
                restore: Optional[Callable[[], dict[str, Any]]] = None) -> Iterator[View]:
    """Run each `(method, label)` of `methods` with `start`, streaming its Views (only the fields
    named in `live`, and its status prefixed "Compare, run k of n (label)"), then yield the final
    View: `compare` (the results side by side, trajectories drawn, labels below) and
    `compare_table` (Markdown), the canvas redrawn and the fields of `restore()` (the tab's own
    result shown again). Stops early, keeping nothing, when `cancel` is set (Stop) or the tab's
    image or points change meanwhile (`state.input_id` / `state.clicks`)."""
    made_from, clicks0 = state.input_id, list(state.clicks)
    runs: list[tuple[str, CompareRun]] = []
    n = len(methods)
    for k, (method, label) in enumerate(methods, start=1):
        work, views_ = start(method)
        last: Optional[View] = None
        for view in views_:
            if state.input_id != made_from or list(state.clicks) != clicks0:
                cancel.cancel()
                for _ in views_:  # let the run end cleanly (it sees the cancel at its next step)
                    pass
                yield View(status=CHANGED_MESSAGE, progress="")
                return
            last = view
            fields = {name: getattr(view, name) for name in live}
            status = view.status if isinstance(view.status, str) else ""
            yield View(state=state, status=f"Compare, run {k} of {n} ({label}): {status}", **fields)
        if cancel.cancelled:
            yield View(state=state, canvas=canvas_for(state), progress="", status=STOPPED_MESSAGE,
                       **(restore() if restore else {}))
            return
        run = outcome(work)
        if run is None:
            why = last.status if last is not None and isinstance(last.status, str) else "it gave no result"
            yield View(state=state, progress="", status=f"Compare stopped: the {label} run ended without a "
                                                        f"result ({why}).")
            return
        runs.append((label, run))
    scale = state.scale
    panels = [drawing.draw_points(r.image, r.clicks, scale, mask=r.mask, handles=r.handles, trail=r.trail)
              for _, r in runs]
    image = drawing.side_by_side(panels, [label for label, _ in runs])
    table = compare_table([(label, r.numbers) for label, r in runs])
    summary = "; ".join(f"{label}: {r.numbers['text']}" for label, r in runs)
    state.mask = runs[0][1].mask
    yield View(state=state, canvas=canvas_for(state), progress="", compare=image, compare_table=table,
               status=f"Compared from the same image and points. {summary}. Your own image and result are "
                      f"unchanged; press {getattr(state, 'RUN_BUTTON', 'Run')} to edit it.",
               **(restore() if restore else {}))
