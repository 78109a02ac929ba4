"""`python -m stabledrag bench gpu --small`: the GPU check script's CPU dry run produces its JSON.

The per-phase and GAN parts reuse `diffusion_speed` / `speed_gan.measure` (tested in their own
files) and are stubbed here; the whole / repeat / no-LoRA edit part runs for real on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from stabledrag.bench import gpu
from stabledrag.errors import UserError


def test_small_dry_run_reports_edits_lora_cost_and_gan(monkeypatch, tmp_path):
    import stabledrag.bench.speed_diffusion as sd
    import stabledrag.bench.speed_gan as sg

    calls = {}
    monkeypatch.setattr(sd, "diffusion_speed", lambda **kw: calls.setdefault("diffusion", kw) and {"stub": True})
    monkeypatch.setattr(sg, "measure", lambda r, d, **kw: calls.setdefault("gan", (r, kw)) and {"resolution": r})
    out = gpu.gpu_check(small=True, steps=1)
    assert calls["diffusion"]["tiny"] is True and calls["diffusion"]["size"] == 64
    assert calls["gan"][0] == 64 and calls["gan"][1]["config"].img_resolution == 64
    edit = out["diffusion_edit"]
    runs = edit["runs"]
    assert runs["first"]["cached"] == {"lora": False, "inversion": False}
    assert runs["repeat"]["cached"] == {"lora": True, "inversion": True}  # the repeat edit reuses both
    assert runs["repeat"]["timings"]["lora"] < runs["first"]["timings"]["lora"]
    assert set(edit["lora_cost"]) == {"inversion", "drag_step", "denoise"}
    assert all(v is None or v > 0 for v in edit["lora_cost"].values())
    assert out["device"] == "cpu" and out["dtype"] == "float32"
    json.dumps(out)  # JSON-ready


def test_full_check_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="--small"):
        gpu.gpu_check(small=False, device="cpu")
