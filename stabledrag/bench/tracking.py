"""`python -m stabledrag bench tracking`: nearest-neighbour vs discriminative tracking on synthetic
feature fields with known motion (see `stabledrag.bench.synthetic`), a sweep over the distance of a
near look-alike (with the handle's look drifting by half its norm), tracker cost on a
640 x 64 x 64 map with 5 handles (an SD up_blocks[2]-sized feature map), and tracker cost as a
fraction of one drag step of the bundled toy GAN.

Success: the tracker lands within 1 px of the true position (in the sweep: within
min(1, d / 2) px of it and nearer to it than to the look-alike d px away, so that landing on a
look-alike 1-2 px away is never counted as success)."""

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
    "clean_strong_drift": dict(drift=0.5),
    "distractor": dict(distractor=True),
    "distractor_drift": dict(distractor=True, drift=0.3),
    "distractor_strong_drift": dict(distractor=True, drift=0.5),
    "near_lookalike_2px_drift": dict(distractor=True, drift=0.5, distractor_distance=2.0),
}
SWEEP_DISTANCES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
SWEEP_DRIFT = 0.5


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
                s["hits"] += int(_success(err, found, case, kwargs.get("distractor_distance")))
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


def _success(err: float, found: torch.Tensor, case, near: float | None) -> bool:
    """Within 1 px of the truth; with a near look-alike d px away, within min(1, d/2) px and
    nearer to the truth than to the look-alike."""
    if near is None:
        return err <= 1.0
    return err <= min(1.0, near / 2) and err < float((found - case.distractor).norm())


def sweep(cases: int, seed: int, channels: int, size: int, radius: float = 3.0,
          distances=SWEEP_DISTANCES, drift: float = SWEEP_DRIFT) -> dict[str, Any]:
    """Success rate and mean confidence per look-alike distance (feature px) for both trackers,
    the handle's look drifting by `drift` of its norm."""
    out: dict[str, Any] = {}
    for d in distances:
        g = torch.Generator().manual_seed(seed)
        hits = {k: 0 for k in _trackers(radius)}
        conf_sum = {k: 0.0 for k in _trackers(radius)}
        for _ in range(cases):
            case = make_case(g, channels=channels, size=size, distractor=True, drift=drift, distractor_distance=d)
            for tname, tracker in _trackers(radius).items():
                tracker.fit(case.f0, case.handle)
                found, conf = tracker.track(case.f1, case.handle)
                hits[tname] += int(_success(float((found - case.truth).norm()), found, case, d))
                conf_sum[tname] += float(conf)
        out[str(d)] = {t: {"success_rate": hits[t] / cases, "mean_confidence": round(conf_sum[t] / cases, 3)}
                       for t in hits}
    return out


def plot_sweep(result: dict[str, Any], path: str) -> None:
    """Success rate vs look-alike distance for both trackers as a small PNG line chart (Pillow)."""
    from PIL import Image, ImageDraw

    w, h, m = 420, 260, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [float(k) for k in result]
    x0, x1 = min(xs), max(xs)

    def px(x: float, y: float) -> tuple[float, float]:
        return (m + (x - x0) / max(x1 - x0, 1e-6) * (w - 2 * m), h - m - y * (h - 2 * m))

    d.line([px(x0, 0), px(x1, 0)], fill="black")
    d.line([px(x0, 0), px(x0, 1)], fill="black")
    for y in (0.0, 0.5, 0.9, 1.0):
        d.text((4, px(x0, y)[1] - 6), f"{y:.1f}", fill="black")
    for x in xs:
        d.text((px(x, 0)[0] - 8, h - m + 6), f"{x:g}", fill="black")
    d.text((w / 2 - 90, h - 16), "look-alike distance (feature px)", fill="black")
    for tname, colour in (("discriminative", (200, 30, 30)), ("nearest", (30, 60, 200))):
        pts = [px(float(k), v[tname]["success_rate"]) for k, v in result.items()]
        d.line(pts, fill=colour, width=2)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        d.text((w - m - 110, m - 30 + (0 if tname == "nearest" else 14)), tname, fill=colour)
    img.save(path)


def gan_step_ratio(steps: int = 10, resolution: int | None = None) -> dict[str, Any]:
    """Tracker cost against one drag step of a GAN (same handles and feature map): the bundled toy
    GAN (`resolution` None) or a random-weight StyleGAN2 of the official architecture at
    `resolution` px. Median wall and process-CPU time of a step (forward to the drag block, motion
    loss, backward, Adam) and of a discriminative fit / track, and their ratios."""
    from ..config import DragConfig
    from ..drag import DragSession
    from ..gan import load_generator
    from ..gan.editor import GanEditor
    from ..points import from_pairs

    if resolution is None:
        editor = GanEditor(load_generator(None))
    else:
        from ..gan.networks import Generator
        from .speed_gan import official_config

        torch.manual_seed(0)
        editor = GanEditor(Generator(official_config(resolution)))
    editor.generate(10_000)
    cfg = editor.default_config("baseline", max_steps=10 ** 6, stop_distance=0.0)
    s = editor.image_size[0] / 128.0
    pts = from_pairs([((50.0 * s, 50.0 * s), (60.0 * s, 50.0 * s)), ((70.0 * s, 60.0 * s), (75.0 * s, 66.0 * s))])
    sess = DragSession(editor.backend(), pts, cfg)
    sess.step()
    step_t, fit_t, track_t = [], [], []  # (wall s, process CPU s) pairs
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        sess.step()
        step_t.append((time.perf_counter() - t0, time.process_time() - c0))
    f0 = sess._f0
    train_radius = DragConfig(method="stabledrag", r_p=cfg.r_p).effective_train_radius
    disc = DiscriminativeTracker(cfg.r_p, train_radius=train_radius)
    ctx_t = []  # track with the context ring on for every handle (as if all sat inside a flat part)
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        disc.fit(f0, sess._p0)
        fit_t.append((time.perf_counter() - t0, time.process_time() - c0))
        t0, c0 = time.perf_counter(), time.process_time()
        disc.track(f0, sess._p0)
        track_t.append((time.perf_counter() - t0, time.process_time() - c0))
        flat = disc.flat_share
        disc.flat_share = torch.ones_like(flat)
        t0, c0 = time.perf_counter(), time.process_time()
        disc.track(f0, sess._p0)
        ctx_t.append((time.perf_counter() - t0, time.process_time() - c0))
        disc.flat_share = flat

    def med(v, k):
        return sorted(x[k] for x in v)[len(v) // 2]

    generator = "bundled toy GAN" if resolution is None else f"StyleGAN2 {resolution} px, random weights"
    out: dict[str, Any] = {"generator": generator,
                           "feature_map": list(f0.shape), "handles": len(pts), "threads": torch.get_num_threads()}
    for k, clock in ((0, "wall"), (1, "cpu")):
        step_s, fit_s, track_s, ctx_s = med(step_t, k), med(fit_t, k), med(track_t, k), med(ctx_t, k)
        out[clock] = {"step_ms": round(step_s * 1e3, 2), "fit_ms": round(fit_s * 1e3, 2),
                      "track_ms": round(track_s * 1e3, 2), "track_over_step": round(track_s / step_s, 4),
                      "fit_over_step": round(fit_s / step_s, 4),
                      "fit_plus_track_over_step": round((fit_s + track_s) / step_s, 4),
                      "track_context_ms": round(ctx_s * 1e3, 2),
                      "fit_plus_track_context_over_step": round((fit_s + ctx_s) / step_s, 4)}
    out["flat_share"] = [round(float(v), 3) for v in disc.flat_share]
    out["note"] = (f"fit runs once per drag, track once per step; medians of {steps}; cpu = process CPU time; "
                   "*_context: the context ring on for every handle (the handles' own flat_share says whether "
                   "it ran in track_ms)")
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


def run_tracking_bench(cases: int = 40, seed: int = 0, channels: int = 64, size: int = 64,
                       plot: str | None = None, gan_ratio: bool = True, gan_512: bool = False) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready dict; `plot`: PNG path for the look-alike sweep;
    `gan_ratio`: also time the trackers against a toy-GAN drag step; `gan_512`: and against a
    random-weight 512 px StyleGAN2 step (slow on a CPU: ~6 s of CPU per step)."""
    t0 = time.perf_counter()
    sw = sweep(cases, seed, channels, size)
    if plot:
        plot_sweep(sw, plot)
    return {
        "benchmark": "tracking",
        "settings": {"cases_per_scenario": cases, "seed": seed, "channels": channels, "size": size,
                     "search_radius": 3, "success": "found within 1 px of the true position (near "
                     "look-alike d px away: within min(1, d/2) px and nearer than to the look-alike)",
                     "scenarios": {k: v for k, v in SCENARIOS.items()},
                     "sweep": {"distances": list(SWEEP_DISTANCES), "drift": SWEEP_DRIFT}},
        "accuracy": accuracy(cases, seed, channels, size),
        "lookalike_sweep": sw,
        **({"plot": plot} if plot else {}),
        "cost": cost(),
        **({"gan_step": gan_step_ratio()} if gan_ratio else {}),
        **({"gan_step_512": gan_step_ratio(3, resolution=512)} if gan_512 else {}),
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "seconds": round(time.perf_counter() - t0, 2),
    }
