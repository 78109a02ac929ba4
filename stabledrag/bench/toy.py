"""`python -m stabledrag bench toy --backend gan|diffusion`: ground-truth drag benchmark on the
toy-faces world.

Each source image is a face whose parts the colour detector finds (`stabledrag.toy.detect`): a GAN
sample (seeds from `seed` on; the GAN was trained on procedural faces, not on seeds) or, for the
diffusion backend, a procedurally rendered face from a dataset seed never used in training. For
each image a set of drags is made from the detected parts:

- eye_short / eye_long: an eye moved 5 / 11 px in a random direction;
- mouth_corner: a mouth corner moved 6 px (outwards and up: a smile);
- head: the head centre moved 10 px, roughly towards the image centre (the whole face moves;
  everything is editable). The head's centre is flat yellow, so the points dragged are four on its
  outline plus the eyes and the mouth, all by the same offset; the head's centroid is scored;
- eye_distractor: the left eye moved towards the right eye until they are 5 px apart (at most 55 %
  of the way), so its look-alike ends right beside it;
- eye_far: an eye moved 15-20 px (a long drag: the handle crosses several tracking windows);
- eye_twin_band: an eye moved towards its twin until only the least valid gap is left (4 px between
  the discs at 128 px), with the band around both eyes as the editable region, so the look-alike
  sits inside the region and may itself move;
- mouth_stretch: a mouth corner moved 7 px straight away from the mouth's centre (the mouth gets
  longer: the corner's look changes as it moves).

Every target leaves a valid toy face (the part inside the head, clear of the other parts; the head
inside the image): a drag that asks for an impossible face measures nothing. A direction is
redrawn until that holds.

The editable region is a capsule (radius 14 px) around the handle-target segment (for
eye_twin_band: around the segment joining the two eyes' starting centres, radius eye + 6 px; the
whole image for "head"). Scores: the detected position of the dragged part after the edit vs its
target (distance px; success if <= 3 px), PSNR / SSIM between input and output *outside* the
editable region, time per edit and optimiser steps that pushed, for each method side by side.

Tracking error: the distance between where the tracker believes a handle is and where the detector
finds its part in the image of the same state, for every dragged handle that is a detector
keypoint (an eye, a mouth corner or centre). The GAN engine measures it at every step (the
finished image of each step's latent) and at the end; the diffusion engine at the end (its
intermediate latents are noisy, so the detector cannot read them).
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

from ..toy.detect import MOUTH, classify, detect, head_region

log = logging.getLogger(__name__)

SUCCESS_PX = 3.0
EDIT_RADIUS_PX = 14.0
METHODS = ("stabledrag", "baseline")
KINDS = ("eye_short", "eye_long", "eye_far", "mouth_corner", "mouth_stretch", "head", "eye_distractor",
         "eye_twin_band")
# Kinds where a look-alike is near the handle's path, and long drags (reported as groups).
LOOKALIKE_KINDS = ("eye_distractor", "eye_twin_band")
LONG_KINDS = ("eye_long", "eye_far")


@dataclass
class ToyCase:
    """One drag: move `part` (a detector keypoint name) from `handle` to `target` (x, y px).

    `companions`: more (handle, target) pairs dragged at the same time (the head case moves the
    eyes and the mouth with it); only `part` is scored. `drag_part`: False when the part's own
    point is not dragged (the head's centroid is flat yellow: nothing there to track).
    """

    image_id: int
    kind: str
    part: str
    handle: tuple[float, float]
    target: tuple[float, float]
    companions: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = ()
    drag_part: bool = True
    companion_parts: tuple[Optional[str], ...] = ()
    band: Optional[tuple[tuple[float, float], tuple[float, float], float]] = None

    def pairs(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """The (handle, target) pairs to drag: the scored part's first (if dragged), then the companions."""
        return ([(self.handle, self.target)] if self.drag_part else []) + list(self.companions)

    def pair_parts(self) -> list[Optional[str]]:
        """Per pair of `pairs()`, the detector keypoint its handle sits on (None: a head-outline point)."""
        comp = list(self.companion_parts) + [None] * (len(self.companions) - len(self.companion_parts))
        return ([self.part] if self.drag_part else []) + comp


def _valid_targets(det, image: np.ndarray) -> dict[str, Callable[[np.ndarray], bool]]:
    """Per part kind, whether a target position (x, y) leaves a valid toy face - the part inside
    the head and clear of the other parts, the head inside the image - so every case asks for a
    face that the toy world (and so a model trained on it) can show."""
    from scipy import ndimage

    size = image.shape[0]
    s = size / 128.0
    head = head_region(image)
    if head is None:
        return {}
    r_eye = math.sqrt(max(det.left_eye_area, det.right_eye_area) / math.pi)
    eyes = {"left_eye": np.array(det.left_eye), "right_eye": np.array(det.right_eye)}
    ys, xs = np.nonzero(classify(image) == MOUTH)
    mouth_px = np.stack([xs, ys], axis=1).astype(np.float64)

    def inside(mask: np.ndarray, p: np.ndarray, inset: float) -> bool:
        eroded = ndimage.binary_erosion(mask, iterations=max(1, int(round(inset))))
        x, y = int(round(p[0])), int(round(p[1]))
        return 0 <= x < size and 0 <= y < size and bool(eroded[y, x])

    def eye_ok(part: str) -> Callable[[np.ndarray], bool]:
        other = eyes["right_eye" if part == "left_eye" else "left_eye"]

        def ok(t: np.ndarray) -> bool:
            near_mouth = len(mouth_px) and np.min(np.hypot(*(mouth_px - t).T)) < r_eye + 3 * s
            return (inside(head, t, r_eye + 2 * s) and float(np.linalg.norm(t - other)) >= 2 * r_eye + 4 * s
                    and not near_mouth)
        return ok

    def corner_ok(t: np.ndarray) -> bool:
        return inside(head, t, 3 * s) and all(float(np.linalg.norm(t - e)) >= r_eye + 4 * s for e in eyes.values())

    ys, xs = np.nonzero(head)
    box = (xs.min(), xs.max(), ys.min(), ys.max())

    def head_ok(t: np.ndarray) -> bool:
        dx, dy = t - np.array(det.head)
        m = 3 * s
        return (box[0] + dx >= m and box[1] + dx <= size - 1 - m and box[2] + dy >= m and box[3] + dy <= size - 1 - m)

    return {"left_eye": eye_ok("left_eye"), "right_eye": eye_ok("right_eye"), "mouth_left": corner_ok,
            "mouth_right": corner_ok, "head": head_ok}


def _head_edge_points(head: np.ndarray, centre: tuple[float, float], inset: float) -> tuple[tuple[float, float], ...]:
    """Points `inset` px inside the head's outline, straight left, right, above and below `centre`
    (x, y), on the filled head mask `head` (`H x W` bool)."""
    cx, cy = int(round(centre[0])), int(round(centre[1]))
    h, w = head.shape
    out = []
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        x, y = cx, cy
        while 0 <= x + dx < w and 0 <= y + dy < h and head[y + dy, x + dx]:
            x, y = x + dx, y + dy
        out.append((float(x - dx * inset), float(y - dy * inset)))
    return tuple(out)


def make_cases(det, image_id: int, rng: np.random.Generator, image: np.ndarray) -> list[ToyCase]:
    """Drag cases for one image (`H x W x 3` uint8) from its detection `det` (an incomplete
    detection gives none). Each case's target keeps the face valid (`_valid_targets`); a
    direction is redrawn up to 24 times to find one, and a kind is skipped when none is found."""
    if not det.complete:
        return []
    valid = _valid_targets(det, image)
    if not valid:
        return []
    cases: list[ToyCase] = []
    centre = (image.shape[1] - 1) / 2.0

    def add(kind: str, part: str, length, angles, companions: tuple[str, ...] = (),
            extra_points: tuple[tuple[float, float], ...] = (), band=None) -> None:
        h = np.array(det.keypoints()[part], dtype=np.float64)
        lengths = length if isinstance(length, (list, tuple)) else [length] * len(angles)
        for ang, ln in zip(angles, lengths):
            step = ln * np.array([math.cos(ang), math.sin(ang)])
            t = h + step
            if valid[part](t):
                points = [det.keypoints()[c] for c in companions] + list(extra_points)
                extra = tuple(((float(p[0]), float(p[1])), (float(p[0] + step[0]), float(p[1] + step[1])))
                              for p in points)
                cases.append(ToyCase(image_id, kind, part, (float(h[0]), float(h[1])), (float(t[0]), float(t[1])),
                                     extra, drag_part=not companions,
                                     companion_parts=tuple(companions) + (None,) * len(extra_points), band=band))
                return

    def random_angles(n: int = 24) -> list[float]:
        return list(rng.uniform(0, 2 * math.pi, n))

    eye = "left_eye" if rng.random() < 0.5 else "right_eye"
    add("eye_short", eye, 5.0, random_angles())
    add("eye_long", eye, 11.0, random_angles())
    corner = "mouth_left" if rng.random() < 0.5 else "mouth_right"
    add("mouth_corner", corner, 6.0, [math.atan2(-1.0, -1.0 if corner == "mouth_left" else 1.0)])  # outwards and up
    # The head moves 10 px, within 60 degrees of the way to the image centre (faces stay framed).
    # Its centre is flat yellow, with nothing to track, so - as a user would - points on its
    # outline (left, right, top, bottom, 2 px inside the edge) and on the eyes and the mouth are
    # dragged by the same offset instead; the head's centroid is scored.
    to_centre = math.atan2(centre - det.head[1], centre - det.head[0])
    edges = _head_edge_points(head_region(image), det.head, inset=2.0 * image.shape[0] / 128.0)
    add("head", "head", 10.0, list(to_centre + rng.uniform(-math.pi / 3, math.pi / 3, 24)),
        companions=("left_eye", "right_eye", "mouth"), extra_points=edges)
    # The left eye moves towards the right one until they are 5 px apart (at most 55 % of the way):
    # its look-alike ends up right beside it.
    le, re_ = np.array(det.left_eye), np.array(det.right_eye)
    d = float(np.linalg.norm(re_ - le))
    r_eye = math.sqrt(max(det.left_eye_area, det.right_eye_area) / math.pi)
    move = min(0.55 * d, d - 2 * r_eye - 5.0 * image.shape[0] / 128.0)
    if move >= 4.0:
        add("eye_distractor", "left_eye", move, [math.atan2(*(re_ - le)[::-1])])
    s = image.shape[0] / 128.0
    # Long drags: 15-20 px in any direction that keeps the face valid (48 tries).
    add("eye_far", eye, list(rng.uniform(15.0, 20.0, 48)), random_angles(48))
    # A corner pulled straight out of the mouth: the mouth gets longer, the corner's look changes.
    mc = np.array(det.mouth, dtype=np.float64)
    out = np.array(det.keypoints()[corner]) - mc
    add("mouth_stretch", corner, 7.0 * s, [math.atan2(out[1], out[0])])
    # The other eye towards its twin until only the least valid gap is left, with the band around
    # both eyes editable (the twin may move too).
    twin_move = d - (2 * r_eye + 4.0 * s) - 0.5
    if twin_move >= 6.0 * s:
        band = ((float(re_[0]), float(re_[1])), (float(le[0]), float(le[1])), r_eye + 6.0 * s)
        add("eye_twin_band", "right_eye", twin_move, [math.atan2(*(le - re_)[::-1])], band=band)
    return cases


def edit_mask(case: ToyCase, size: int) -> Optional[np.ndarray]:
    """`size x size` bool, True = editable: a capsule around the drag segment (radius 14 px at
    128 px), or the case's `band`; None for 'head'."""
    if case.kind == "head":
        return None
    if case.band is not None:
        a, b, radius = case.band
        return _capsule(size, a, b, radius)
    return _capsule(size, case.handle, case.target, EDIT_RADIUS_PX * size / 128.0)


def _capsule(size: int, a, b, radius: float) -> np.ndarray:
    """`size x size` bool: pixels within `radius` px of the segment a-b ((x, y) px)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    h, t = np.array(a, np.float32), np.array(b, np.float32)
    d = t - h
    u = np.clip(((xs - h[0]) * d[0] + (ys - h[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    dist = np.hypot(xs - (h[0] + u * d[0]), ys - (h[1] + u * d[1]))
    return dist <= radius


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


def tracking_error(case: ToyCase, handles, image: np.ndarray) -> Optional[float]:
    """Mean distance (px) between the tracker's handles (`N x 2` image px, in `case.pairs()` order)
    and the detector's keypoints in `image` (`H x W x 3` uint8), over the handles that sit on a
    keypoint; None when there is none or the detector lost them all."""
    kps = detect(image).keypoints()
    errs = [math.dist((float(h[0]), float(h[1])), kps[part])
            for h, part in zip(np.asarray(handles, dtype=np.float64), case.pair_parts())
            if part is not None and kps.get(part) is not None]
    return round(float(np.mean(errs)), 3) if errs else None


def score(case: ToyCase, src: np.ndarray, out: np.ndarray, seconds: float, status: str,
          outcome: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Detector-based scores of one edit. `outcome` (from an engine runner) may add the final
    tracker handles (`handles`, image px), per-step tracking errors (`step_tracking_error_px`),
    `steps` and `pushed_steps`."""
    det = detect(out)
    found = det.keypoints().get(case.part)
    dist = None if found is None else float(math.dist(found, case.target))
    start = float(math.dist(case.handle, case.target))
    outcome = outcome or {}
    steps_err = outcome.get("step_tracking_error_px")
    steps_err = None if steps_err is None else [e for e in steps_err if e is not None]
    return {
        "image": case.image_id, "kind": case.kind, "part": case.part,
        "handle": [round(v, 2) for v in case.handle], "target": [round(v, 2) for v in case.target],
        "start_distance_px": round(start, 2),
        "final_distance_px": None if dist is None else round(dist, 2),
        "success": dist is not None and dist <= SUCCESS_PX,
        "face_complete": det.complete,
        "parts_ok": det.parts_ok,
        **outside_fidelity(src, out, edit_mask(case, src.shape[0])),
        "seconds": round(seconds, 3), "status": status,
        "steps": outcome.get("steps"), "pushed_steps": outcome.get("pushed_steps"),
        "tracking_error_px": (None if outcome.get("handles") is None
                              else tracking_error(case, outcome["handles"], out)),
        "mean_step_tracking_error_px": round(float(np.mean(steps_err)), 3) if steps_err else None,
        "step_tracking_error_px": outcome.get("step_tracking_error_px"),
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
        "parts_ok_rate": round(float(np.mean([r["parts_ok"] for r in rows])), 3),
        "mean_start_distance_px": mean([r["start_distance_px"] for r in rows]),
        "psnr_outside": mean([r["psnr"] for r in rows]),
        "ssim_outside": mean([r["ssim"] for r in rows]),
        "seconds_per_edit": mean([r["seconds"] for r in rows]),
        "mean_steps": mean([r.get("steps") for r in rows]),
        "mean_pushed_steps": mean([r.get("pushed_steps") for r in rows]),
        "tracking_error_px": mean([r.get("tracking_error_px") for r in rows]),
        "step_tracking_error_px": mean([r.get("mean_step_tracking_error_px") for r in rows]),
    }


def toy_bench(backend: str, cases: Optional[int] = None, seed: int = 10_000, device: Optional[str] = None,
              sheet: Optional[str] = None, model: Optional[str] = None,
              overrides: Optional[dict[str, Any]] = None, methods: tuple[str, ...] = METHODS,
              kinds: Optional[tuple[str, ...]] = None, step_tracking: Optional[bool] = None) -> dict[str, Any]:
    """Run the benchmark on the registered engine `backend` (`stabledrag.engine`: its `toy_runner`
    gives the source images and runs each case); `cases` caps the number of drag cases (default: the
    engine's `default_cases`, 40 GAN / 24 diffusion).
    `model`: a GAN checkpoint / diffusers folder (default: the bundled toy model); `overrides`:
    drag settings (`DragConfig` fields) applied to every method's defaults; `methods`: the drag
    methods compared (each engine's presets); `kinds`: only these case kinds (default all of
    `KINDS`); `step_tracking`: measure the tracking error at every step (default: GAN only).
    Writes an example sheet PNG to `sheet` if given. Returns a JSON-ready dict.
    Raises ValueError for an unknown kind."""
    torch.manual_seed(0)
    overrides = dict(overrides or {})
    unknown = set(kinds or ()) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown case kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    from ..engine import get

    engine = get(backend)
    n_cases = cases or engine.default_cases
    source, run, meta = engine.toy_runner(device, model, overrides,
                                          step_tracking=engine.step_tracking if step_tracking is None
                                          else step_tracking)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    examples = []
    skipped, i, t_all = 0, 0, time.perf_counter()
    done = 0
    while done < n_cases and i < 20 * n_cases:
        src = source(i, seed)
        det = detect(src)
        image_cases = [c for c in make_cases(det, seed + i, rng, src) if kinds is None or c.kind in kinds]
        if not image_cases:
            skipped += 1
        for case in image_cases:
            if done >= n_cases:
                break
            outs = {}
            for method in methods:
                t0 = time.perf_counter()
                out, status, outcome = run(src, case, method)
                rows[method].append(score(case, src, out, time.perf_counter() - t0, status, outcome))
                outs[method] = out
            done += 1
            if len(examples) < 10 and (not examples or examples[-1][0].kind != case.kind):
                examples.append((case, src, outs))
            log.info("case %d/%d %s", done, n_cases, case.kind)
        i += 1

    seen = sorted({r["kind"] for m in methods for r in rows[m]})
    groups = {"lookalike": LOOKALIKE_KINDS, "long": LONG_KINDS}
    result = {
        "benchmark": "toy", "backend": backend, **meta,
        "settings": {"cases": done, "seed": seed, "success_px": SUCCESS_PX, "edit_radius_px": EDIT_RADIUS_PX,
                     "images_without_complete_face": skipped, "drag_overrides": overrides,
                     "methods": list(methods), "kinds": list(kinds or KINDS)},
        "overall": {m: summarise(rows[m]) for m in methods},
        "by_kind": {k: {m: summarise([r for r in rows[m] if r["kind"] == k]) for m in methods} for k in seen},
        "by_group": {g: {m: summarise([r for r in rows[m] if r["kind"] in ks]) for m in methods}
                     for g, ks in groups.items()},
        "cases": rows,
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": device or ("cuda" if torch.cuda.is_available() else "cpu")},
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    if sheet and examples:
        _write_sheet(sheet, examples, methods)
        result["sheet"] = sheet
    return result


def _write_sheet(path: str, examples: list, methods: tuple[str, ...] = METHODS) -> None:
    from ..visualize import draw_points, grid

    rows = []
    for case, src, outs in examples:
        handles, targets = zip(*case.pairs())
        row = [draw_points(src, list(handles), list(targets), numbers=False)]
        row += [draw_points(outs[m], list(targets), [], numbers=False) for m in methods]
        rows.append(row)
    big = [[im.resize((im.width * 2, im.height * 2)) for im in r] for r in rows]
    names = {"stabledrag": "StableDrag", "baseline": "baseline (NN + plain)"}
    grid(big, labels=["input + drag"] + [names.get(m, m) for m in methods]).save(path)
