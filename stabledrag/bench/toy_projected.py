"""`python -m stabledrag bench toy --backend gan --source rendered`: real-image GAN editing on the
toy world - faces drawn by the renderer (not by the generator) are projected into the GAN, then
dragged.

For each face (latent `z ~ N(0, I)` from `seed + i`, drawn by `render(face_from_z(z))`: the
toy GAN's face distribution, head roughly centred, as FFHQ photos are aligned before projection):

1. projection without PTI (phase 1 in Z or W, then W+; `stabledrag.gan.projection`), then pivotal
   tuning continued from it: PSNR / SSIM of both, and every detector keypoint (head, eyes, mouth,
   mouth corners) of each reconstruction against the rendered face's (px). A face "fits" when
   every part is within `PART_TOLERANCE_PX` (1.5 px).
2. drags on the PTI projection, as in `bench toy` (`stabledrag.bench.toy.make_cases` on the projected
   image's detection, the same success radius and editable capsule): eye cases by default.

Prints JSON: the projection summary (with and without PTI), per-kind drag summaries, every face
and case, settings and timings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
import time
import types
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..toy.detect import detect
from .toy import SUCCESS_PX, make_cases, score, summarise

log = logging.getLogger(__name__)

PART_TOLERANCE_PX = 1.5
DEFAULT_KINDS = ("eye_short", "eye_long")


def part_errors(reference: np.ndarray, image: np.ndarray) -> dict[str, Optional[float]]:
    """Distance (px) of each detector keypoint in `image` from the same keypoint in `reference`
    (both `H x W x 3` uint8); None for a part found in the reference but not in `image`."""
    ref, got = detect(reference).keypoints(), detect(image).keypoints()
    out: dict[str, Optional[float]] = {}
    for name, p in ref.items():
        if p is None:
            continue
        q = got.get(name)
        out[name] = None if q is None else round(float(math.dist(p, q)), 3)
    return out


def _fits(errors: dict[str, Optional[float]]) -> bool:
    return bool(errors) and all(e is not None and e <= PART_TOLERANCE_PX for e in errors.values())


def _max_error(errors: dict[str, Optional[float]]) -> Optional[float]:
    vals = list(errors.values())
    return None if not vals or any(v is None for v in vals) else max(vals)


def _mean(vals: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return round(float(np.mean(vals)), 3) if vals else None


def summarise_projection(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Summary of the faces' `key` ("no_pti" / "pti") projections: PSNR / SSIM (mean, min), part
    errors (mean of each face's worst part; a lost part counts as not fitting), the fit rate."""
    sub = [r[key] for r in rows]
    if not sub:
        return {"n": 0}
    return {
        "n": len(sub),
        "psnr_mean": _mean([s["psnr"] for s in sub]), "psnr_min": round(min(s["psnr"] for s in sub), 3),
        "psnr_at_least_30_rate": round(float(np.mean([s["psnr"] >= 30.0 for s in sub])), 3),
        "ssim_mean": _mean([s["ssim"] for s in sub]),
        "worst_part_px_mean": _mean([s["worst_part_px"] for s in sub]),
        "part_lost_rate": round(float(np.mean([s["worst_part_px"] is None for s in sub])), 3),
        "all_parts_within_tolerance_rate": round(float(np.mean([s["fits"] for s in sub])), 3),
    }


def _earlier_rows(jsonl: str, run_key: dict[str, Any]) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Faces of `jsonl` written by a run with the settings `run_key`: face index -> (row, drags).
    A missing file gives {}; unreadable lines are skipped with a warning."""
    out: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    try:
        lines = Path(jsonl).read_text().splitlines()
    except FileNotFoundError:
        return out
    key = json.loads(json.dumps(run_key))  # as it reads back (tuples -> lists)
    for n, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is not JSON; skipped", jsonl, n)
            continue
        if isinstance(data, dict) and data.get("run") == key and isinstance(data.get("face"), int):
            row = {k: v for k, v in data.items() if k not in ("drags", "run")}
            out[data["face"]] = (row, list(data.get("drags") or []))
    return out


def _append_line(path: str, line: str) -> None:
    """Append `line` to the file at `path` as a line of its own (a file left without its final
    newline by a process that died mid-write gets one first, so this row is not glued to it)."""
    p = Path(path)
    with open(p, "ab+") as f:
        f.seek(0, 2)
        if f.tell() > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((line + "\n").encode())


@dataclasses.dataclass
class _Tuned:
    """What the drags need of a face's projection: W+ (`1 x num_ws x w_dim`), the PTI weight delta
    (name -> tensor) and the tuned image (`R x R x 3` uint8)."""

    ws: torch.Tensor
    weight_delta: dict[str, torch.Tensor]
    image: np.ndarray


_DELTA = "delta/"


def _cache_file(cache: str, model_sha1: str, projection: dict[str, Any], seed: int, i: int) -> Path:
    """The projection cache's file for face `i` of `seed` projected with `projection` into the model
    of fingerprint `model_sha1` (a digest of all four in its name)."""
    key = {"model_sha1": model_sha1, "projection": projection, "seed": seed, "face": i}
    return Path(cache) / f"face_{seed}_{i}_{_digest(key)}.npz"


def _digest(data: Any) -> str:
    """16 hex digits of the SHA-1 of `data` as sorted JSON (cache file names)."""
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _save_projection(path: Path, row: dict[str, Any], tuned: Any) -> None:
    """Write a face's projection row and its `_Tuned` parts to `path` (npz, no pickles). A cache
    that cannot be written is logged, not fatal (the face's numbers are already computed)."""
    arrays = {"row": np.array(json.dumps(row)), "ws": tuned.ws.detach().cpu().numpy(), "image": tuned.image}
    arrays.update({_DELTA + k: v.detach().cpu().numpy() for k, v in tuned.weight_delta.items()})
    tmp = path.with_name(path.name + ".part.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)  # whole files only: a run stopped mid-write leaves no half entry
    except OSError as e:
        log.warning("could not write the projection cache %s: %s", path, e)


def _load_projection(path: Path) -> Optional[tuple[dict[str, Any], _Tuned]]:
    """(row, `_Tuned`) from `path`, or None when it is missing or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            delta = {k[len(_DELTA):]: torch.from_numpy(z[k]) for k in z.files if k.startswith(_DELTA)}
            return json.loads(str(z["row"])), _Tuned(torch.from_numpy(z["ws"]), delta, np.asarray(z["image"]))
    except Exception as e:  # numpy raises many error types for damaged files
        log.warning("projection cache %s unreadable (%s); projecting again", path, e)
        return None


def _rendered_face(G: Any, seed: int, i: int) -> np.ndarray:
    """Face `i` of `seed` as the renderer draws it at the generator's resolution (`R x R x 3` uint8):
    the "photo" the benchmark projects."""
    from ..toy.gan_model import face_from_z
    from ..toy.render import render

    z = np.random.default_rng([seed, i]).standard_normal(G.z_dim)
    return render(face_from_z(z), G.img_resolution)[0]


def _scores(src: np.ndarray, image: np.ndarray, psnr: float, ssim: float) -> dict[str, Any]:
    """A reconstruction's row entry: PSNR / SSIM (rounded) and every detector part's distance from
    the photo `src`'s, its worst, and whether all are within `PART_TOLERANCE_PX`."""
    errs = part_errors(src, image)
    return {"psnr": round(psnr, 3), "ssim": round(ssim, 4), "part_errors_px": errs,
            "worst_part_px": _max_error(errs), "fits": _fits(errs)}


def _project_face(G: Any, cfgs: tuple[Any, Any, Any], seed: int, i: int) -> tuple[dict[str, Any], _Tuned]:
    """Face `i`: render, project without then with PTI, score both. Returns (the face's row, its
    tuned projection)."""
    from ..gan.projection import project

    cfg_plain, cfg_tune, cfg_pti = cfgs
    src = _rendered_face(G, seed, i)
    t0 = time.perf_counter()
    plain = project(G, src, cfg_plain, use_cache=False)
    t1 = time.perf_counter()
    tuned = project(G, src, cfg_tune, init=plain, use_cache=False) if cfg_pti.pti_steps > 0 else plain
    t2 = time.perf_counter()
    row: dict[str, Any] = {"face": i, "z_seed": [seed, i], "seconds_no_pti": round(t1 - t0, 2),
                           "seconds_pti": round(t2 - t1, 2)}
    row["no_pti"] = _scores(src, plain.image_before_pti, plain.psnr_before_pti, plain.ssim_before_pti)
    row["pti"] = _scores(src, tuned.image, tuned.psnr, tuned.ssim)
    log.info("face %d: PSNR %.2f / %.2f dB (no PTI / PTI)", i, row["no_pti"]["psnr"], row["pti"]["psnr"])
    return row, _Tuned(tuned.ws, dict(tuned.weight_delta), tuned.image)


def _more_steps(G: Any, cfg_pti: Any, seed: int, i: int, row: dict[str, Any], tuned: _Tuned,
                presses: int, when: str, cache: Optional[Path]) -> tuple[dict[str, Any], _Tuned]:
    """What a user of the GAN tab does after projecting: press "More steps" (`projection.
    more_steps_config`, continuing from the tuned projection) up to `presses` times - while some
    part is not within `PART_TOLERANCE_PX` (detector; `when` "miss": what a user who sees a part
    missed does) or every time (`when` "always"). A face not pressed is returned as it is;
    otherwise the row's "pti" scores are the last press's, the first projection's move to
    "pti_first" and "more_steps" counts the presses. Each press's result is cached beside `cache`
    (its name + ".more<k>-" + a digest of the press's settings)."""
    from ..gan.projection import more_steps_config, project

    if (when == "miss" and row["pti"]["fits"]) or cfg_pti.pti_steps <= 0:
        return row, tuned
    cfg = more_steps_config(cfg_pti)
    press_digest = _digest(cfg.to_dict())
    src = None  # rendered only when a press is not in the cache
    first = row["pti"]
    for k in range(1, presses + 1):
        path = None if cache is None else cache.with_name(f"{cache.stem}.more{k}-{press_digest}.npz")
        hit = _load_projection(path) if path is not None else None
        if hit is not None:
            row, tuned = hit
        else:
            t0 = time.perf_counter()
            src = _rendered_face(G, seed, i) if src is None else src
            init = types.SimpleNamespace(ws=tuned.ws, w=tuned.ws[:, 0], weight_delta=tuned.weight_delta)
            res = project(G, src, cfg, init=init, use_cache=False)
            row = {**row, "pti_first": first, "more_steps": k,
                   "seconds_more_steps": round(row.get("seconds_more_steps", 0.0) + time.perf_counter() - t0, 2),
                   "pti": _scores(src, res.image, res.psnr, res.ssim)}
            tuned = _Tuned(res.ws, dict(res.weight_delta), res.image)
            if path is not None:
                _save_projection(path, row, tuned)
        log.info("face %d: 'More steps' press %d: worst part %s px", i, k, row["pti"]["worst_part_px"])
        if when == "miss" and row["pti"]["fits"]:
            break
    return row, tuned


def _face(G: Any, editor: Any, configs: dict[str, Any], cfgs: tuple[Any, Any, Any], seed: int, i: int,
          kinds: Sequence[str], drags: bool, cache: Optional[Path] = None, more_steps: int = 0,
          more_steps_when: str = "miss") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Face `i`: its projection (read from the `cache` file when there, else projected and written
    there), up to `more_steps` "More steps" presses (`_more_steps`), then its drag cases. Returns
    (the face's row, its drag rows each with "method")."""
    from ..gan.engine import drag_toy_case

    hit = _load_projection(cache) if cache is not None else None
    if hit is not None:
        row, tuned = hit
        log.info("face %d: projection read from %s", i, cache)
    else:
        row, tuned = _project_face(G, cfgs, seed, i)
        if cache is not None:
            _save_projection(cache, row, tuned)
    if more_steps:
        row, tuned = _more_steps(G, cfgs[2], seed, i, row, tuned, more_steps, more_steps_when, cache)
    face_drags: list[dict[str, Any]] = []
    if drags:
        editor.set_projection(tuned)
        start = tuned.image
        rng = np.random.default_rng([seed, i, 1])  # the face's own cases: independent of the others
        for case in make_cases(detect(start), i, rng, start):
            if case.kind not in kinds:
                continue
            for method, config in configs.items():
                t = time.perf_counter()
                out, status, outcome = drag_toy_case(editor, case, config, step_tracking=False)
                face_drags.append({"method": method, **score(case, start, out, time.perf_counter() - t,
                                                             status, outcome)})
    return row, face_drags


def projected_toy_bench(faces: int = 10, seed: int = 20_000, device: Optional[str] = None,
                        model: Optional[str] = None, projection: Optional[dict[str, Any]] = None,
                        overrides: Optional[dict[str, Any]] = None, kinds: Sequence[str] = DEFAULT_KINDS,
                        methods: Sequence[str] = ("stabledrag",), drags: bool = True,
                        jsonl: Optional[str] = None, shard: Optional[tuple[int, int]] = None,
                        projection_cache: Optional[str] = None, more_steps: int = 0,
                        more_steps_when: str = "miss") -> dict[str, Any]:
    """Run the benchmark on `faces` rendered faces; see the module docstring.

    projection: `ProjectionConfig` fields over the model's recommended ones
    (`projection.projection_config`; its `pti_steps` is the PTI run's).
    overrides: drag settings for `methods`' defaults (`stabledrag.config.METHODS` names; the CLI
    passes `--methods`, default all). kinds: drag case kinds to run (of `bench.toy.make_cases`);
    drags=False measures the projection only. jsonl: also append each face's row (with its drag
    scores and the run's settings) to this file as it finishes; a face already there from a run
    with the same settings is not run again but read back (resume after a stop; the summary
    covers it; "same settings": the model's weights, the projection settings and each method's
    resolved drag config). shard `(k, n)`: run only faces `i % n == k` (several processes or
    machines sharing one `jsonl`; the summary also covers the other shards' faces already in it, so
    a last run without `shard` summarises all). projection_cache: a folder keeping each face's
    projection (row, W+, weight delta, tuned image; one `.npz` per face, named by a digest of the
    model's weights, the projection settings, seed and face), so runs with other drag settings or
    kinds skip the projection (which is most of a face's time) and drag the very same start image.
    more_steps: up to this many presses of the GAN tab's "More steps" after the projection (0 =
    none, the projection alone is scored), `more_steps_when` "miss": only while a part is not within
    `PART_TOLERANCE_PX` (what a user who sees it missed does), "always": on every face
    (`_more_steps`). Every face's projection and drag cases depend only on `(seed, i)`. Returns a
    JSON-ready dict. Raises UserError for a bad shard or setting.
    """
    from ..gan import load_generator
    from ..gan.editor import GanEditor
    from ..gan.presets import recommended_overrides
    from ..errors import UserError
    from ..gan.projection import (model_fingerprint, more_steps_config, projection_config, pti_parameters,
                                  recommended_projection)
    from ..limits import checked_config

    torch.manual_seed(0)
    G = load_generator(model, device=device)
    cfg_pti = projection_config(model, "--project-set", **(projection or {}))
    cfg_plain = dataclasses.replace(cfg_pti, pti_steps=0, refine_passes=0)  # the latent alone
    # PTI continues from the plain projection (the W phase is skipped when continuing).
    cfg_tune = dataclasses.replace(cfg_pti, w_steps=1, wplus_steps=0)
    recommended = recommended_overrides(model, photo=True)  # the model's drag settings for photos
    editor = GanEditor(G, recommended=recommended)
    overrides = dict(overrides or {})
    # checked before any projection work, so a bad --set fails in a second, not after minutes
    configs = {m: checked_config(lambda: editor.default_config(m, **overrides), "--set") for m in methods}
    if cfg_pti.pti_steps > 0:  # a bad --project-set pti_min_res too
        pti_parameters(G.synthesis, cfg_pti.pti_min_res)
    if int(more_steps) < 0 or more_steps_when not in ("miss", "always"):
        raise UserError(f"more steps: N >= 0 presses, when 'miss' or 'always'; got {more_steps}, {more_steps_when!r}")
    if more_steps and cfg_pti.pti_steps <= 0:
        raise UserError("--more-steps presses continue pivotal tuning: it needs pti_steps > 0.")
    if shard is not None and not (0 <= shard[0] < shard[1]):
        raise UserError(f"shard (k, n) needs 0 <= k < n, got {shard}")
    # what decides a face's numbers: the model's weights, the projection and the drag settings as
    # resolved (so a changed default or a retrained model is not mistaken for this run)
    run_key = {"model_sha1": model_fingerprint(G), "seed": seed, "projection": cfg_pti.to_dict(),
               "drags": bool(drags), "kinds": list(kinds),
               "configs": {m: configs[m].to_dict() for m in methods}}
    press = more_steps_config(cfg_pti).to_dict() if more_steps else None
    if more_steps:  # (absent at 0: rows of runs without presses keep matching)
        run_key["more_steps"] = [int(more_steps), more_steps_when, press]
    earlier = {i: v for i, v in (_earlier_rows(jsonl, run_key) if jsonl else {}).items() if i < faces}
    if earlier:
        log.info("%s: %d face(s) of this run already done; reused", jsonl, len(earlier))
    face_rows: list[dict[str, Any]] = []
    drag_rows: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    t_all = time.perf_counter()
    for i in range(faces):
        if i in earlier:
            row, face_drags = earlier[i]
        elif shard is not None and i % shard[1] != shard[0]:
            continue
        else:
            cache = None if projection_cache is None else _cache_file(
                projection_cache, run_key["model_sha1"], run_key["projection"], seed, i)
            row, face_drags = _face(G, editor, configs, (cfg_plain, cfg_tune, cfg_pti), seed, i, kinds, drags,
                                    cache, int(more_steps), more_steps_when)
            if jsonl:
                _append_line(jsonl, json.dumps({**row, "drags": face_drags, "run": run_key}))
        face_rows.append(row)
        for d in face_drags:
            drag_rows[d["method"]].append({k: v for k, v in d.items() if k != "method"})

    kinds_seen = sorted({r["kind"] for rows in drag_rows.values() for r in rows})
    n_proj = max(1, len(face_rows))
    return {
        "benchmark": "toy_projected", "backend": "gan", "source": "rendered",
        "model": model or "bundled toy GAN", "model_settings": recommended,
        "model_projection_settings": recommended_projection(model),
        "settings": {"faces": faces, "seed": seed, "shard": None if shard is None else list(shard),
                     "part_tolerance_px": PART_TOLERANCE_PX,
                     "success_px": SUCCESS_PX, "projection": cfg_pti.to_dict(), "drag_overrides": overrides,
                     "more_steps": int(more_steps), "more_steps_when": more_steps_when, "more_steps_projection": press,
                     "kinds": list(kinds), "methods": list(methods)},
        "projection": {
            "without_pti": summarise_projection(face_rows, "no_pti"),
            "with_pti": summarise_projection(face_rows, "pti"),
            "with_pti_before_more_steps": summarise_projection(
                [{**r, "pti": r.get("pti_first", r["pti"])} for r in face_rows], "pti"),
            "more_steps_pressed": {str(r["face"]): r["more_steps"] for r in face_rows if r.get("more_steps")},
            "seconds_per_projection_no_pti": round(sum(r["seconds_no_pti"] for r in face_rows) / n_proj, 2),
            "seconds_per_pti": round(sum(r["seconds_pti"] for r in face_rows) / n_proj, 2),
        },
        "drags": {"overall": {m: summarise(drag_rows[m]) for m in methods},
                  "by_kind": {k: {m: summarise([r for r in drag_rows[m] if r["kind"] == k]) for m in methods}
                              for k in kinds_seen}},
        "faces": face_rows, "faces_reused": sorted(earlier),
        "cases": drag_rows,
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "device": device or ("cuda" if torch.cuda.is_available() else "cpu")},
        "seconds": round(time.perf_counter() - t_all, 1),
    }
