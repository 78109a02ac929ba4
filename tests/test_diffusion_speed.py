"""The diffusion speed benchmark runs end to end (on the tiny architecture, for speed)."""

from __future__ import annotations

import json
import math


from stabledrag.bench.speed_diffusion import diffusion_speed


def test_speed_benchmark_reports_every_phase():
    res = diffusion_speed(size=64, steps=1, device="cpu", tiny=True)
    json.dumps(res)
    phases = res["phases_s"]
    for key in ("lora_step_s", "inversion_step_s", "drag_step_cut_s", "drag_step_full_s", "drag_step_mask_s",
                "tracker_fit_s", "tracker_track_s", "denoise_step_s", "vae_encode_s", "vae_decode_s"):
        assert phases[key] > 0 and math.isfinite(phases[key]), key
    assert res["feature_map"][1:] == [32, 32]
    assert res["ratios"]["cut_vs_full_drag_step"] > 0
    assert res["peak_memory_mb"]["after_denoise"] > 0
