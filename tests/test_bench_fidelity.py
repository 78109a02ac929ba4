"""`bench fidelity` and `stabledrag.toy.fidelity`: scores that move when the image changes, and the
bench end to end on a tiny model folder with its own settings file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stabledrag.toy.dataset import ToyFaces
from stabledrag.toy.fidelity import compare, psnr, summarise_fidelity


def test_compare_sees_colour_shifts_moved_parts_and_grown_eyes():
    img, geo, _ = ToyFaces(seed=11)[2]
    same = compare(img, img.copy())
    assert same["psnr"] == 99.0 and same["colour_error"] == 0 and same["max_keypoint_error"] == 0
    assert same["parts_ok"]
    shifted = np.clip(img.astype(int) + [6, 0, 0], 0, 255).astype(np.uint8)  # +6/255 on red
    c = compare(img, shifted)
    assert 5.0 < c["colour_error"] <= 6.0 and c["psnr"] == pytest.approx(psnr(img, shifted))
    moved = np.roll(img, 3, axis=1)  # everything 3 px right
    m = compare(img, moved)
    assert m["keypoint_error"]["left_eye"] == pytest.approx(3.0, abs=0.3)
    s = summarise_fidelity([same, m])
    assert s["n"] == 2 and s["all_keypoints_within_1.5px"] == 0.5 and s["parts_ok_rate"] == 1.0
    with pytest.raises(ValueError):
        compare(img, img[:10])


def test_fidelity_bench_runs_on_a_model_folder_with_its_settings(tmp_path):
    from stabledrag.bench.fidelity import fidelity_bench
    from stabledrag.diffusion.recommended import SETTINGS_FILE
    from stabledrag.diffusion.tiny import build_tiny_pipeline

    folder = tmp_path / "tiny"
    build_tiny_pipeline(seed=0, image_size=64).save_pretrained(str(folder), safe_serialization=True)
    (folder / SETTINGS_FILE).write_text(json.dumps(
        {"edit": {"lora.steps": 1, "lora.batch_size": 1, "inversion.num_steps": 4, "max_steps": 2}}))
    res = fidelity_bench(model=str(folder), device="cpu", vae_faces=2, round_trip_faces=1, timing_images=1,
                         overrides={"tau": 0.5})
    assert res["model_settings"]["lora.steps"] == 1
    cfg = res["settings"]
    assert (cfg["lora"]["steps"], cfg["inversion"]["num_steps"], cfg["drag"]["max_steps"], cfg["drag"]["tau"]) \
        == (1, 4, 2, 0.5)
    assert res["vae"]["n"] == 2 and res["round_trip"]["n"] == 1
    assert math.isfinite(res["vae"]["psnr_db_mean"]) and set(res["round_trip"]["seconds"]) == {
        "lora", "inversion", "denoise"}
    edits = res["timing"]["edits"]
    if edits:  # the source face is a render, so its parts are found
        assert edits[0]["second_drag"]["cached"] == {"lora": True, "inversion": True}
        assert edits[0]["first_edit"]["cached"] == {"lora": False, "inversion": False}
    json.dumps(res)
