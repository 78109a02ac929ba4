"""The GAN speed benchmark runs end to end and returns JSON-ready numbers (tiny resolution)."""

from __future__ import annotations

import json

from stabledrag.bench.speed_gan import gan_speed, official_config


def test_official_architecture_widths():
    cfg = official_config(1024)
    assert cfg.num_ws == 18 and cfg.channels(128) == 256 and cfg.channels(8) == 512
    assert official_config(512).num_ws == 16 and official_config(512).drag_feature_res == 128


def test_gan_speed_runs_and_is_json_ready():
    out = gan_speed(resolutions=[8], steps=1, device="cpu", methods=("baseline",))
    json.dumps(out)
    (res,) = out["results"]
    assert res["resolution"] == 8 and res["device"] == "cpu" and res["feature_res"] == 8
    step = res["methods"]["baseline"]
    assert step["timed_steps"] == 1 and step["drag_step_s"] > 0
    assert res["forward_image_s"] > 0 and (res["peak_memory_mb"] is None or res["peak_memory_mb"] > 0)
