"""A fair share of Gradio's queue per browser session.

Gradio's queue has one global `max_size`: one client sending many Start/Run requests fills it,
and then every other user's actions, even placing or clearing points, are refused with "Queue is
full". `install` wraps the queue's `push` so that:

- GPU events (concurrency id `gpu`) may wait at most `max_gpu_waiting` in all, and at most
  `per_session_gpu` per session (the running one not counted);
- every other (cheap) event is never refused because of other sessions' GPU work, only when its
  own session already has `per_session_other` cheap events waiting.

Refusals carry a sentence for the person (Gradio shows it as the event's error). This relies on
`Blocks._queue.push(body, request, username)` and `Event.session_hash / concurrency_id` (Gradio
5-6); if those are missing the queue is left as it is and a warning is logged.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SESSION_BUSY = ("You already have {n} run(s) waiting; wait for them to finish (or press Stop) before "
                "starting another.")
GPU_FULL = "The server is busy with {n} waiting runs from other people; try again in a minute."
TOO_MANY_ACTIONS = "Too many of your actions are waiting ({n}); wait a moment and try again."


def install(demo: Any, gpu_concurrency_id: str, max_gpu_waiting: int, per_session_gpu: int = 2,
            per_session_other: int = 8) -> bool:
    """Wrap `demo`'s queue (call after `demo.queue(max_size=None, ...)`). Returns False (and
    changes nothing) when this Gradio's queue does not look as expected."""
    queue = getattr(demo, "_queue", None)
    original = getattr(queue, "push", None)
    if queue is None or original is None or not hasattr(queue, "event_queue_per_concurrency_id"):
        log.warning("fair queue not installed: unexpected Gradio queue")
        return False
    from gradio import route_utils

    async def push(body: Any, request: Any, username: Any = None):
        try:
            fn = route_utils.get_fn(queue.blocks, None, body)
            cid = getattr(fn, "concurrency_id", None)
        except Exception:  # let Gradio answer malformed requests itself
            return await original(body=body, request=request, username=username)
        session = getattr(body, "session_hash", None)
        waiting = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
        is_gpu = cid == gpu_concurrency_id
        same_kind = [e for e in waiting if (e.concurrency_id == gpu_concurrency_id) == is_gpu]
        mine = sum(1 for e in same_kind if session is not None and e.session_hash == session)
        if is_gpu:
            if mine >= per_session_gpu:
                return False, SESSION_BUSY.format(n=mine), "queue_full"
            if len(same_kind) >= max_gpu_waiting:
                return False, GPU_FULL.format(n=len(same_kind)), "queue_full"
        elif mine >= per_session_other:
            return False, TOO_MANY_ACTIONS.format(n=mine), "queue_full"
        return await original(body=body, request=request, username=username)

    queue.push = push
    queue.stabledrag_fair_share = {"max_gpu_waiting": max_gpu_waiting, "per_session_gpu": per_session_gpu,
                                   "per_session_other": per_session_other}
    return True
