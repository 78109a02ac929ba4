"""The toy-faces world: renderer geometry, colour detector, dataset determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from stabledrag.toy.dataset import ToyFaces, caption
from stabledrag.toy.detect import Detection, detect
from stabledrag.toy.render import (
    EXPRESSIONS,
    HEAD_COLOUR,
    MIN_BG_DISTANCE,
    PART_COLOURS,
    FaceGeometry,
    edit,
    render,
    render_background,
    sample_params,
)

N_FACES = 200
# Tolerances (pixels, 128 x 128 images): centroids of head and eyes within 1 px of the renderer's
# ground truth, mouth corners within 2 px, mouth area centroid within 1 px.
TOL_CENTROID = 1.0
TOL_CORNER = 2.0


def _errors(geo: FaceGeometry, det: Detection) -> dict[str, float]:
    return {
        "head": math.dist(geo.head_center, det.head),
        "left_eye": math.dist(geo.left_eye, det.left_eye),
        "right_eye": math.dist(geo.right_eye, det.right_eye),
        "mouth": math.dist(geo.mouth_centroid, det.mouth),
        "mouth_left": math.dist(geo.mouth_left, det.mouth_left),
        "mouth_right": math.dist(geo.mouth_right, det.mouth_right),
    }


def _check_errors(errors: dict[str, float], corner_tol: float = TOL_CORNER, where: str = "") -> None:
    for part in ("head", "left_eye", "right_eye", "mouth"):
        assert errors[part] <= TOL_CENTROID, f"{where}: {part} off by {errors[part]:.2f} px"
    for part in ("mouth_left", "mouth_right"):
        assert errors[part] <= corner_tol, f"{where}: {part} off by {errors[part]:.2f} px"


def test_detector_finds_every_part_on_random_faces() -> None:
    ds = ToyFaces(seed=2024)
    expressions = set()
    for i in range(N_FACES):
        image, geo, _ = ds[i]
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        det = detect(image)
        assert det.complete, f"face {i}: {det.reasons}"
        assert det.reasons == []
        _check_errors(_errors(geo, det), where=f"face {i}")
        expressions.add(ds.params(i).expression)
    assert expressions == set(EXPRESSIONS)  # every mouth shape was exercised


def test_detector_survives_blur_and_noise() -> None:
    """Generated images are soft: a Gaussian blur (sigma 1 px) plus noise must still be read."""
    ds = ToyFaces(seed=31)
    rng = np.random.default_rng(0)
    for i in range(40):
        image, geo, _ = ds[i]
        soft = ndimage.gaussian_filter(image.astype(np.float32), (1.0, 1.0, 0)) + rng.normal(0, 4, image.shape)
        det = detect(np.clip(soft, 0, 255).astype(np.uint8))
        assert det.complete, f"face {i}: {det.reasons}"
        _check_errors(_errors(geo, det), corner_tol=2.5, where=f"blurred face {i}")


def test_eyes_are_ordered_left_to_right() -> None:
    ds = ToyFaces(seed=5)
    for i in range(20):
        det = detect(ds[i][0])
        assert det.left_eye[0] < det.right_eye[0]
        assert det.mouth_left[0] < det.mouth_right[0]


def test_one_eye_erased_is_incomplete() -> None:
    params = sample_params(np.random.default_rng(3))
    image, geo = render(params)
    ys, xs = np.mgrid[0:128, 0:128]
    eye = np.hypot(xs - geo.left_eye[0], ys - geo.left_eye[1]) <= geo.left_eye_radius + 2.0
    image[eye] = np.array(HEAD_COLOUR, dtype=np.uint8)
    det = detect(image)
    assert not det.complete
    assert any("eye" in r for r in det.reasons)
    # What is left is still found: the head, the mouth, and the other eye (as the right one).
    assert det.head is not None and det.mouth is not None
    assert det.left_eye is None
    assert math.dist(det.right_eye, geo.right_eye) <= TOL_CENTROID


def test_no_mouth_is_incomplete() -> None:
    params = sample_params(np.random.default_rng(4))
    image, geo = render(params)
    red = np.linalg.norm(image.astype(float) - np.array(PART_COLOURS["mouth"]), axis=-1) < 120
    image[ndimage.binary_dilation(red, iterations=2)] = np.array(HEAD_COLOUR, dtype=np.uint8)
    det = detect(image)
    assert not det.complete and det.mouth is None
    assert any("mouth" in r for r in det.reasons)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_background_is_incomplete(seed: int) -> None:
    params = sample_params(np.random.default_rng(seed))
    det = detect(render_background(params))
    assert not det.complete
    assert det.head is None and det.left_eye is None and det.mouth is None
    assert any("head" in r for r in det.reasons)
    flat = np.full((128, 128, 3), 128, dtype=np.uint8)
    assert not detect(flat).complete


def test_background_keeps_its_distance_from_part_colours() -> None:
    rng = np.random.default_rng(11)
    parts = np.array(list(PART_COLOURS.values()))
    names = set()
    for _ in range(300):
        params = sample_params(rng)
        bg = render_background(params, size=32).reshape(-1, 3).astype(np.float64)
        d = np.linalg.norm(bg[:, None, :] - parts[None], axis=-1)
        # uint8 rounding moves a colour by at most sqrt(3) / 2
        assert d.min() >= MIN_BG_DISTANCE - 0.9, f"{params.bg_colours} comes within {d.min():.1f}"
        names.add(params.bg_name)
    assert len(names) >= 6  # the backgrounds vary


def test_dataset_is_deterministic_and_order_independent() -> None:
    forward = ToyFaces(seed=7)
    items = [forward[i] for i in range(6)]
    backward = ToyFaces(seed=7)
    for i in reversed(range(6)):
        image, geo, text = backward[i]
        assert np.array_equal(image, items[i][0])
        assert geo == items[i][1]
        assert text == items[i][2]
    assert not np.array_equal(items[0][0], items[1][0])
    assert not np.array_equal(ToyFaces(seed=8)[0][0], items[0][0])


def test_batch_is_a_float_tensor_in_minus_one_one() -> None:
    ds = ToyFaces(seed=3, size=64)
    batch = ds.batch([4, 0, 2])
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    expected = torch.from_numpy(ds[0][0]).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.allclose(batch[1], expected)
    # The detector reads the tensor form directly.
    det_t, det_a = detect(batch[1]), detect(ds[0][0])
    assert det_t.complete and math.dist(det_t.left_eye, det_a.left_eye) < 0.05


@pytest.mark.parametrize("expression,word", [("smile", "smiling"), ("frown", "frowning"),
                                             ("open", "open mouth"), ("neutral", "neutral")])
def test_captions_describe_the_face(expression: str, word: str) -> None:
    params = sample_params(np.random.default_rng(1), expression=expression)
    assert params.expression == expression
    text = caption(params)
    assert text.startswith("a cartoon face") and word in text
    assert f"on a {params.bg_name} background" in text
    assert params.gaze_direction in text or "straight ahead" in text
    assert detect(render(params)[0]).complete


def test_moving_the_left_eye_moves_only_the_left_eye() -> None:
    ds = ToyFaces(seed=99)
    for i in range(20):
        params = ds.params(i)
        before = detect(render(params)[0])
        moved_img, moved_geo = render(edit(params, left_eye=(5.0, 0.0)))
        after = detect(moved_img)
        assert after.complete
        dx, dy = np.subtract(after.left_eye, before.left_eye)
        assert abs(dx - 5.0) <= 1.0 and abs(dy) <= 1.0, (i, dx, dy)
        assert math.dist(after.right_eye, before.right_eye) <= 0.5
        assert math.dist(after.left_eye, moved_geo.left_eye) <= TOL_CENTROID


def test_moving_a_mouth_corner_and_the_head() -> None:
    ds = ToyFaces(seed=123)
    for i in range(15):
        params = ds.params(i)
        before = detect(render(params)[0])

        img, geo = render(edit(params, mouth_right=(4.0, -3.0)))
        after = detect(img)
        assert after.complete
        assert math.dist(after.mouth_right, geo.mouth_right) <= TOL_CORNER
        shift = np.subtract(after.mouth_right, before.mouth_right)
        assert np.abs(shift - (4.0, -3.0)).max() <= 1.5, (i, shift)
        assert math.dist(after.mouth_left, before.mouth_left) <= 1.0

        img, geo = render(edit(params, head=(-6.0, 4.0)))
        after = detect(img)
        for name in ("head", "left_eye", "right_eye", "mouth"):
            shift = np.subtract(after.keypoints()[name], before.keypoints()[name])
            assert np.abs(shift - (-6.0, 4.0)).max() <= 1.0, (i, name, shift)


def test_edits_accumulate_and_leave_the_original_alone() -> None:
    params = sample_params(np.random.default_rng(8))
    once = edit(edit(params, left_eye=(2.0, 1.0)), left_eye=(3.0, -1.0))
    geo0, geo1 = render(params)[1], render(once)[1]
    assert np.allclose(np.subtract(geo1.left_eye, geo0.left_eye), (5.0, 0.0))
    assert params.left_eye_offset == (0.0, 0.0)


@pytest.mark.parametrize("size", [64, 256])
def test_other_sizes_scale_the_geometry(size: int) -> None:
    params = sample_params(np.random.default_rng(21))
    geo128 = render(params, 128)[1]
    image, geo = render(params, size)
    assert image.shape == (size, size, 3)
    k = size / 128
    assert set(geo.keypoints()) == set(detect(image).keypoints())
    for name, p in geo.keypoints().items():
        q = geo128.keypoints()[name]
        # Laid-out points scale exactly (cell convention); the drawn mouth's centroid nearly so.
        tol = 0.25 if name == "mouth" else 1e-6
        assert np.allclose(p, ((q[0] + 0.5) * k - 0.5, (q[1] + 0.5) * k - 0.5), atol=tol), name
    det = detect(image)
    assert det.complete
    errors = _errors(geo, det)
    assert errors["left_eye"] <= k and errors["right_eye"] <= k and errors["head"] <= k
    assert errors["mouth_left"] <= 2 * k and errors["mouth_right"] <= 2 * k


def test_detector_counts_a_grown_third_eye_and_a_second_mouth() -> None:
    image, geo, _ = ToyFaces(seed=7)[3]
    det = detect(image)
    assert det.complete and det.parts_ok and (det.eye_count, det.mouth_count) == (2, 1)
    grown = image.copy()
    # paste a copy of the left eye's patch below it, inside the head
    x, y = (int(round(v)) for v in geo.left_eye)
    r = int(math.ceil(geo.left_eye_radius)) + 1
    patch = image[y - r:y + r + 1, x - r:x + r + 1].copy()
    dy = 2 * r + 3
    grown[y + dy - r:y + dy + r + 1, x - r:x + r + 1] = patch
    det3 = detect(grown)
    assert det3.complete and det3.eye_count == 3 and not det3.parts_ok  # complete alone does not notice
