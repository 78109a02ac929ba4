"""One progress-report type for every long phase (LoRA, inversion, drag, denoise, training).

The library reports through a `ProgressCallback`; the CLI maps it to a terminal bar, the web
app to `gr.Progress` and live frames. Cancellation is cooperative through `CancelToken`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class Progress:
    """One progress report.

    phase: short name of the phase ("lora", "inversion", "drag", "denoise", "train", ...).
    step: steps done in this phase (1-based once a step finished; 0 at phase start).
    total: planned number of steps, or None when unknown.
    info: phase-specific numbers (e.g. loss, handles, confidences) for logs and UIs.
    preview: optional H x W x 3 uint8 image to show live.
    """

    phase: str
    step: int
    total: Optional[int] = None
    info: dict[str, Any] = field(default_factory=dict)
    preview: Any = None

    @property
    def fraction(self) -> Optional[float]:
        """Fraction done in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.step / self.total))


ProgressCallback = Callable[[Progress], None]


def report(callback: Optional[ProgressCallback], *args: Any, **kwargs: Any) -> None:
    """Send `Progress(*args, **kwargs)` to `callback` if there is one."""
    if callback is not None:
        callback(Progress(*args, **kwargs))


class Cancelled(Exception):
    """Raised inside a long phase when its `CancelToken` was set."""


class CancelToken:
    """A thread-safe flag that asks long work to stop at the next step boundary."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop."""
        self._event.set()

    def reset(self) -> None:
        """Clear the flag so the token can be reused."""
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise `Cancelled` if the flag is set."""
        if self._event.is_set():
            raise Cancelled()


class TerminalProgress:
    """A `ProgressCallback` that draws one tqdm bar per phase on stderr (for the CLI)."""

    def __init__(self, disable: bool = False) -> None:
        self._bar = None
        self._phase: Optional[str] = None
        self._disable = disable

    def __call__(self, p: Progress) -> None:
        from tqdm.auto import tqdm

        if p.phase != self._phase:
            self.close()
            self._phase = p.phase
            self._bar = tqdm(total=p.total, desc=p.phase, disable=self._disable, leave=True)
        assert self._bar is not None
        if p.total is not None and self._bar.total != p.total:
            self._bar.total = p.total
        self._bar.n = p.step
        postfix = {k: v for k, v in p.info.items() if isinstance(v, (int, float, str))}
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._phase = None
