"""`python -m stabledrag bench toy --backend gan|diffusion`: ground-truth drag benchmark on the
toy-faces world.

Each source image is a face whose parts the colour detector finds (`stabledrag.toy.detect`): a GAN
sample (seeds from `seed` on; the GAN was trained on procedural faces, not on seeds) or, for the
diffusion backend, a procedurally rendered face from a dataset seed never used in training. For
each image a set of drags is made from the detected parts:

- eye_short / eye_long: an eye moved 5 / 11 px in a random direction;
- mouth_corner: a mouth corner moved 6 px (outwards and up: a smile);
- head: the head centre moved 10 px (the whole face moves; everything is editable);
- eye_distractor: the left eye moved 55 % of the way towards the right eye, whose look-alike sits
  inside the tracking window.

The editable region is a capsule (radius 14 px) around the handle-target segment (the whole image
for "head"). Scores: the detected position of the dragged part after the edit vs its target
(distance px; success if <= 3 px), PSNR / SSIM between input and output *outside* the editable
region, and time per edit; for `stabledrag` and `baseline` side by side.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..points import from_pairs
from ..toy.detect import detect

log = logging.getLogger(__name__)

SUCCESS_PX = 3.0
EDIT_RADIUS_PX = 14.0
METHODS = ("stabledrag", "baseline")


@dataclass
class ToyCase:
    """One drag: move `part` (a detector keypoint name) from `handle` to `target` (x, y px)."""

    image_id: int
    kind: str
    part: str
    handle: tuple[float, float]
    target: tuple[float, float]


def make_cases(det, image_id: int, rng: np.random.Generator, size: int) -> list[ToyCase]:
    """Drag cases for one image from its detection (an incomplete detection gives none)."""
    if not det.complete:
        return []
    cases = []

    def add(kind: str, part: str, offset: tuple[float, float]) -> None:
        h = det.keypoints()[part]
        t = (h[0] + offset[0], h[1] + offset[1])
        if 4 <= t[0] <= size - 5 and 4 <= t[1] <= size - 5:
            cases.append(ToyCase(image_id, kind, part, (float(h[0]), float(h[1])), (float(t[0]), float(t[1]))))

    ang = rng.uniform(0, 2 * math.pi)
    eye = "left_eye" if rng.random() < 0.5 else "right_eye"
    add("eye_short", eye, (5 * math.cos(ang), 5 * math.sin(ang)))
    ang = rng.uniform(0, 2 * math.pi)
    add("eye_long", eye, (11 * math.cos(ang), 11 * math.sin(ang)))
    corner = "mouth_left" if rng.random() < 0.5 else "mouth_right"
    sign = -1.0 if corner == "mouth_left" else 1.0
    add("mouth_corner", corner, (sign * 6 / math.sqrt(2), -6 / math.sqrt(2)))
    ang = rng.uniform(0, 2 * math.pi)
    add("head", "head", (10 * math.cos(ang), 10 * math.sin(ang)))
    le, re_ = np.array(det.left_eye), np.array(det.right_eye)
    off = 0.55 * (re_ - le)
    add("eye_distractor", "left_eye", (float(off[0]), float(off[1])))
    return cases


def edit_mask(case: ToyCase, size: int) -> Optional[np.ndarray]:
    """`size x size` bool, True = editable: a capsule around the drag segment; None for 'head'."""
    if case.kind == "head":
        return None
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    h, t = np.array(case.handle, np.float32), np.array(case.target, np.float32)
    d = t - h
    u = np.clip(((xs - h[0]) * d[0] + (ys - h[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    dist = np.hypot(xs - (h[0] + u * d[0]), ys - (h[1] + u * d[1]))
    return dist <= EDIT_RADIUS_PX


def outside_fidelity(src: np.ndarray, out: np.ndarray, editable: Optional[np.ndarray]) -> dict[str, Optional[float]]:
    """PSNR (dB) and SSIM between `src` and `out` (H x W x 3 uint8) on the non-editable pixels.

    SSIM is averaged only where its 7 x 7 window lies wholly outside the editable region, so a
    change inside the edit does not count against the pixels next to it.
    """
    if editable is None or editable.all():
        return {"psnr": None, "ssim": None}
    from scipy.ndimage import binary_dilation
    from skimage.metrics import structural_similarity

    keep = ~editable
    a, b = src.astype(np.float64), out.astype(np.float64)
    mse = float(((a - b) ** 2)[keep].mean())
    psnr = float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    _, smap = structural_similarity(src, out, channel_axis=2, data_range=255, full=True)
    far = ~binary_dilation(editable, iterations=3)
    ssim = float(smap.mean(axis=2)[far].mean()) if far.any() else None
    return {"psnr": round(min(psnr, 99.0), 3), "ssim": None if ssim is None else round(ssim, 4)}


def score(case: ToyCase, src: np.ndarray, out: np.ndarray, seconds: float, status: str) -> dict[str, Any]:
    """Detector-based scores of one edit."""
    det = detect(out)
    found = det.keypoints().get(case.part)
    dist = None if found is None else float(math.dist(found, case.target))
    start = float(math.dist(case.handle, case.target))
    return {
        "image": case.image_id, "kind": case.kind, "part": case.part,
        "handle": [round(v, 2) for v in case.handle], "target": [round(v, 2) for v in case.target],
        "start_distance_px": round(start, 2),
        "final_distance_px": None if dist is None else round(dist, 2),
        "success": dist is not None and dist <= SUCCESS_PX,
        "face_complete": det.complete,
        **outside_fidelity(src, out, edit_mask(case, src.shape[0])),
        "seconds": round(seconds, 3), "status": status,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean distance (a lost part counts as its start distance), success rate, fidelity, time."""
    if not rows:
        return {"n": 0}

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return round(float(np.mean(vals)), 3) if vals else None

    return {
        "n": len(rows),
        "mean_distance_px": mean([r["final_distance_px"] if r["final_distance_px"] is not None
                                  else r["start_distance_px"] for r in rows]),
        "success_rate": round(float(np.mean([r["success"] for r in rows])), 3),
        "part_lost_rate": round(float(np.mean([r["final_distance_px"] is None for r in rows])), 3),
        "face_complete_rate": round(float(np.mean([r["face_complete"] for r in rows])), 3),
        "mean_start_distance_px": mean([r["start_distance_px"] for r in rows]),
        "psnr_outside": mean([r["psnr"] for r in rows]),
        "ssim_outside": mean([r["ssim"] for r in rows]),
        "seconds_per_edit": mean([r["seconds"] for r in rows]),
    }


# -- engines -------------------------------------------------------------------------------------
def _gan_runner(device: Optional[str]) -> tuple[Callable, Callable, dict[str, Any]]:
    from ..gan import load_generator
    from ..gan.editor import GanEditor

    editor = GanEditor(load_generator(None, device=device))

    def source(i: int, seed: int) -> np.ndarray:
        return editor.generate(seed + i, truncation_psi=0.7)

    def run(src: np.ndarray, case: ToyCase, method: str) -> tuple[np.ndarray, str]:
        editor.reset()
        pts = from_pairs([(case.handle, case.target)])
        sess = editor.session(pts, editor.default_config(method), mask=edit_mask(case, src.shape[0]))
        res = sess.run()
        return editor.image(), res.status

    return source, run, {"model": "bundled toy GAN", "truncation_psi": 0.7}


def _diffusion_runner(device: Optional[str]) -> tuple[Callable, Callable, dict[str, Any]]:
    from PIL import Image

    from ..diffusion.editor import DiffusionEditConfig, DiffusionEditor
    from ..toy.dataset import ToyFaces

    editor = DiffusionEditor(model=None, device=device)
    faces = ToyFaces(seed=987_654)  # a dataset seed the bundled model never saw
    prompt = {"text": ""}  # the caption of the current source image

    def source(i: int, seed: int) -> np.ndarray:
        img, _, prompt["text"] = faces[seed + i]
        return img

    def run(src: np.ndarray, case: ToyCase, method: str) -> tuple[np.ndarray, str]:
        from ..config import diffusion_defaults

        cfg = DiffusionEditConfig(drag=diffusion_defaults(method))
        pts = from_pairs([(case.handle, case.target)])
        res = editor.edit(Image.fromarray(src), pts, mask=edit_mask(case, src.shape[0]),
                          prompt=prompt["text"], config=cfg)
        return np.asarray(res.image.convert("RGB")), res.drag.status

    return source, run, {"model": "bundled toy SD", "dataset_seed": 987_654}


def toy_bench(backend: str, cases: Optional[int] = None, seed: int = 10_000, device: Optional[str] = None,
              sheet: Optional[str] = None) -> dict[str, Any]:
    """Run the benchmark; `cases` caps the number of drag cases (default 30 GAN / 15 diffusion).
    Writes an example sheet PNG to `sheet` if given. Returns a JSON-ready dict."""
    torch.manual_seed(0)
    n_cases = cases or (30 if backend == "gan" else 15)
    source, run, meta = _gan_runner(device) if backend == "gan" else _diffusion_runner(device)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    examples = []
    skipped, i, t_all = 0, 0, time.perf_counter()
    done = 0
    while done < n_cases and i < 20 * n_cases:
        src = source(i, seed)
        det = detect(src)
        image_cases = make_cases(det, seed + i, rng, src.shape[0])
        if not image_cases:
            skipped += 1
        for case in image_cases:
            if done >= n_cases:
                break
            outs = {}
            for method in METHODS:
                t0 = time.perf_counter()
                out, status = run(src, case, method)
                rows[method].append(score(case, src, out, time.perf_counter() - t0, status))
                outs[method] = out
            done += 1
            if len(examples) < 10 and (not examples or examples[-1][0].kind != case.kind):
                examples.append((case, src, outs))
            log.info("case %d/%d %s", done, n_cases, case.kind)
        i += 1

    kinds = sorted({r["kind"] for r in rows["stabledrag"]})
    result = {
        "benchmark": "toy", "backend": backend, **meta,
        "settings": {"cases": done, "seed": seed, "success_px": SUCCESS_PX, "edit_radius_px": EDIT_RADIUS_PX,
                     "images_without_complete_face": skipped},
        "overall": {m: summarise(rows[m]) for m in METHODS},
        "by_kind": {k: {m: summarise([r for r in rows[m] if r["kind"] == k]) for m in METHODS} for k in kinds},
        "cases": rows,
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": device or ("cuda" if torch.cuda.is_available() else "cpu")},
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    if sheet and examples:
        _write_sheet(sheet, examples)
        result["sheet"] = sheet
    return result


def _write_sheet(path: str, examples: list) -> None:
    from ..visualize import draw_points, grid

    rows = []
    for case, src, outs in examples:
        row = [draw_points(src, [case.handle], [case.target], numbers=False)]
        row += [draw_points(outs[m], [case.target], [], numbers=False) for m in METHODS]
        rows.append(row)
    big = [[im.resize((im.width * 2, im.height * 2)) for im in r] for r in rows]
    grid(big, labels=["input + drag", "StableDrag", "baseline (DragGAN/DragDiffusion)"]).save(path)
