"""How faithfully an image comes back from a model, measured on toy faces with the detector.

`compare(original, returned)` scores one pair of `H x W x 3` uint8 images: PSNR, the mean-colour
error and the distance between the detected parts; `summarise_fidelity` aggregates a list of them
into the numbers the VAE and round-trip gates use (`bench fidelity`, `python -m scripts.train_sd --stage eval`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .detect import detect

#: The detector keypoints compared (the mouth's centroid and both corners).
KEYPOINTS = ("head", "left_eye", "right_eye", "mouth", "mouth_left", "mouth_right")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, 8-bit peak 255) of two same-shape uint8 images; capped at 99 dB for equal images."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else min(99.0, 10 * math.log10(255.0 ** 2 / mse))


def compare(original: np.ndarray, returned: np.ndarray) -> dict[str, Any]:
    """Scores of `returned` against `original` (both `H x W x 3` uint8, same size):

    - `psnr` (dB);
    - `colour_error`: the largest per-channel |mean(returned) - mean(original)| over the image, in
      1/255 units (a background that changes hue shows here even when PSNR is high);
    - `keypoint_error`: per keypoint of `KEYPOINTS`, the distance (px) between the detector's
      positions in both images (inf when the part is lost in `returned`, None when the original
      has no such part), and `max_keypoint_error` over them;
    - `complete` / `parts_ok`: the detector's verdicts on `returned` (parts_ok: no grown or lost part).
    Raises ValueError when the shapes differ."""
    if original.shape != returned.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {returned.shape}")
    diff = returned.astype(np.float64) - original.astype(np.float64)
    d0, d1 = detect(original), detect(returned)
    k0, k1 = d0.keypoints(), d1.keypoints()
    errors: dict[str, float | None] = {}
    for k in KEYPOINTS:
        if k0[k] is None:
            errors[k] = None
        else:
            errors[k] = math.inf if k1[k] is None else math.dist(k0[k], k1[k])
    known = [e for e in errors.values() if e is not None]
    return {"psnr": psnr(original, returned), "colour_error": float(np.abs(diff.reshape(-1, 3).mean(0)).max()),
            "keypoint_error": errors, "max_keypoint_error": max(known) if known else math.inf,
            "complete": d1.complete, "parts_ok": d1.parts_ok}


def summarise_fidelity(scores: Sequence[dict[str, Any]], within_px: Sequence[float] = (1.5, 2.0)) -> dict[str, Any]:
    """Aggregate `compare` results: mean/min PSNR, mean/max colour error, the share of images whose
    every keypoint is within each of `within_px` (and whose parts are all there), the share with
    no grown or lost part, and the mean error per keypoint (lost parts left out; counted in the shares)."""
    if not scores:
        return {"n": 0}
    ps = [s["psnr"] for s in scores]
    ce = [s["colour_error"] for s in scores]
    out: dict[str, Any] = {
        "n": len(scores),
        "psnr_db_mean": round(float(np.mean(ps)), 2), "psnr_db_min": round(float(np.min(ps)), 2),
        "colour_error_255_mean": round(float(np.mean(ce)), 2), "colour_error_255_max": round(float(np.max(ce)), 2),
    }
    for px in within_px:
        out[f"all_keypoints_within_{px:g}px"] = round(float(np.mean(
            [s["parts_ok"] and s["max_keypoint_error"] <= px for s in scores])), 3)
    out["parts_ok_rate"] = round(float(np.mean([s["parts_ok"] for s in scores])), 3)
    per = {}
    for k in KEYPOINTS:
        vals = [s["keypoint_error"][k] for s in scores if s["keypoint_error"][k] is not None
                and math.isfinite(s["keypoint_error"][k])]
        per[k] = round(float(np.mean(vals)), 3) if vals else None
    out["mean_keypoint_error_px"] = per
    return out
