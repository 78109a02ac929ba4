"""`python -m stabledrag bench tracking`: nearest-neighbour vs discriminative tracking on synthetic
feature fields with known motion (see `stabledrag.bench.synthetic`), plus tracker cost on a
640 x 64 x 64 map with 5 handles (an SD up_blocks[2]-sized feature map)."""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from ..tracking import DiscriminativeTracker, NearestNeighbourTracker
from .synthetic import make_case

SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": dict(),
    "clean_drift": dict(drift=0.3),
    "distractor": dict(distractor=True),
    "distractor_drift": dict(distractor=True, drift=0.3),
    "distractor_strong_drift": dict(distractor=True, drift=0.5),
}


def _trackers(radius: float) -> dict[str, Any]:
    return {"nearest": NearestNeighbourTracker(radius), "discriminative": DiscriminativeTracker(radius)}


def accuracy(cases: int, seed: int, channels: int, size: int, radius: float = 3.0) -> dict[str, Any]:
    """Success rate (found within 1 px of the truth), mean error (px), mean confidence and the
    rate of landing on the look-alike, per scenario and tracker."""
    out: dict[str, Any] = {}
    for name, kwargs in SCENARIOS.items():
        g = torch.Generator().manual_seed(seed)
        stats = {k: {"hits": 0, "err": 0.0, "conf": 0.0, "on_distractor": 0} for k in _trackers(radius)}
        for _ in range(cases):
            case = make_case(g, channels=channels, size=size, **kwargs)
            for tname, tracker in _trackers(radius).items():
                tracker.fit(case.f0, case.handle)
                found, conf = tracker.track(case.f1, case.handle)
                err = float((found - case.truth).norm())
                s = stats[tname]
                s["hits"] += int(err <= 1.0)
                s["err"] += err
                s["conf"] += float(conf)
                if case.distractor is not None:
                    s["on_distractor"] += int(float((found - case.distractor).norm()) <= 1.0)
        out[name] = {
            t: {"success_rate": s["hits"] / cases, "mean_error_px": round(s["err"] / cases, 3),
                "mean_confidence": round(s["conf"] / cases, 3),
                **({"on_distractor_rate": s["on_distractor"] / cases} if kwargs.get("distractor") else {})}
            for t, s in stats.items()
        }
    return out


def cost(channels: int = 640, size: int = 64, handles: int = 5, repeats: int = 20) -> dict[str, Any]:
    """Median fit and track time (ms) of both trackers on a `channels x size x size` map."""
    g = torch.Generator().manual_seed(0)
    f0 = torch.randn(channels, size, size, generator=g)
    f1 = f0 + 0.1 * torch.randn(f0.shape, generator=g)
    pts = torch.rand(handles, 2, generator=g) * (size - 16) + 8
    res: dict[str, Any] = {}
    for name, tracker in _trackers(3.0).items():
        tracker.fit(f0, pts)
        tracker.track(f1, pts)  # warm-up
        fit_t, track_t = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tracker.fit(f0, pts)
            fit_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tracker.track(f1, pts)
            track_t.append(time.perf_counter() - t0)
        res[name] = {"fit_ms": round(sorted(fit_t)[len(fit_t) // 2] * 1e3, 3),
                     "track_ms": round(sorted(track_t)[len(track_t) // 2] * 1e3, 3)}
    return {"feature_map": [channels, size, size], "handles": handles, **res}


def run_tracking_bench(cases: int = 40, seed: int = 0, channels: int = 64, size: int = 64) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready dict."""
    t0 = time.perf_counter()
    return {
        "benchmark": "tracking",
        "settings": {"cases_per_scenario": cases, "seed": seed, "channels": channels, "size": size,
                     "search_radius": 3, "success": "found within 1 px of the true position",
                     "scenarios": {k: v for k, v in SCENARIOS.items()}},
        "accuracy": accuracy(cases, seed, channels, size),
        "cost": cost(),
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "seconds": round(time.perf_counter() - t0, 2),
    }
