"""Timing and peak memory for the speed benchmarks (`bench speed`, `bench gpu`), one way for all.

Timing (`timed`): wall-clock seconds (`time.perf_counter`) between two device syncs, so queued CUDA
work is counted, and this process's CPU seconds (`time.process_time`, all threads; on a shared CPU
the wall time also holds waiting for other processes).
Peak memory: CUDA: `torch.cuda.max_memory_allocated` (tensors only), reset with
`reset_peak_memory_stats`. CPU: the process's peak resident set (Linux `VmHWM` in
`/proc/self/status`), reset by writing 5 to `/proc/self/clear_refs` (Linux >= 4.0); where /proc is
missing, `ru_maxrss` (not resettable). Values in MiB, rounded to 0.1; None where nothing can be read.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on `device` (a no-op on the CPU), so that timings are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> tuple[float, float, Any]:
    """Call `fn` `repeats` times between two syncs of `device`; returns (mean wall seconds, mean
    process-CPU seconds, the last call's result; None when `repeats` < 1, then both times are the
    time of no call)."""
    out = None
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        out = fn()
    sync(device)
    n = max(1, repeats)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n, out


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window on `device` (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb(device: torch.device) -> Optional[float]:
    """Peak memory (MiB) on `device` since the last `reset_peak` (see the module docstring)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    except (ImportError, OSError):  # pragma: no cover - non-Unix
        return None
