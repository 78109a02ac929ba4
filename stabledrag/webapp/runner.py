"""Run blocking engine work in a thread and stream its progress reports to a generator.

The diffusion editor reports progress through a callback while it works; a Gradio event handler
wants to `yield` updates. `stream_work` bridges the two: it starts `work(callback)` in a thread
and yields each `Progress` as it arrives (the latest preview wins when several queue up), then a
`Finished` carrying the work's return value. An exception in the work is re-raised in the
consumer. If the consumer stops early (the page was closed, the event cancelled), the cancel
token is set and the thread is given time to stop, so the next job does not share the device.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from ..progress import CancelToken, Progress, ProgressCallback

#: Seconds to wait for a worker to notice a cancel before giving up on it.
JOIN_TIMEOUT_S = 30.0


@dataclass
class Finished:
    """The work's return value."""

    value: Any


_DONE = object()


def stream_work(work: Callable[[ProgressCallback], Any], cancel: Optional[CancelToken] = None,
                poll_s: float = 0.05) -> Iterator[Progress | Finished]:
    """Run `work(progress_callback)` in a daemon thread; yield its `Progress` reports, then
    `Finished(return value)`. Reports without a preview that arrive together are merged (only the
    newest per phase is kept) so a slow consumer never falls behind."""
    q: "queue.Queue[Any]" = queue.Queue()
    outcome: dict[str, Any] = {}

    def callback(p: Progress) -> None:
        q.put(p)

    def target() -> None:
        try:
            outcome["value"] = work(callback)
        except BaseException as e:  # handed to the consumer, which re-raises it
            outcome["error"] = e
        finally:
            q.put(_DONE)

    thread = threading.Thread(target=target, name="stabledrag-job", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            try:
                item = q.get(timeout=poll_s)
            except queue.Empty:
                continue
            batch = [item]
            while True:  # drain what is already waiting
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            done = any(x is _DONE for x in batch)
            for p in _coalesce([x for x in batch if x is not _DONE]):
                yield p
            if done:
                break
        thread.join()
        finished = True
        if "error" in outcome:
            raise outcome["error"]
        yield Finished(outcome.get("value"))
    finally:
        if not finished:
            if cancel is not None:
                cancel.cancel()
            thread.join(JOIN_TIMEOUT_S)


def _coalesce(items: list[Progress]) -> list[Progress]:
    """Keep every report with a preview and the last report of each run of preview-less ones."""
    out: list[Progress] = []
    for p in items:
        if out and p.preview is None and out[-1].preview is None and out[-1].phase == p.phase:
            out[-1] = p
        else:
            out.append(p)
    return out
