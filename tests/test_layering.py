"""The core (drag loop, trackers, supervision, points, config, engine protocol) imports no engine,
no web app and no diffusers/gradio; the toy world's renderer imports neither its dataset nor its
detector (no import circle)."""

import json
import subprocess
import sys

CORE = ["stabledrag.drag", "stabledrag.tracking", "stabledrag.supervision", "stabledrag.points",
        "stabledrag.config", "stabledrag.engine", "stabledrag.overrides", "stabledrag.tensors", "stabledrag.paths"]


def _modules_after_import(names):
    code = ("import json, sys\n" + "".join(f"import {n}\n" for n in names)
            + "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout))


def test_the_core_imports_no_engine():
    mods = _modules_after_import(CORE)
    bad = sorted(m for m in mods if m.startswith(("stabledrag.diffusion", "stabledrag.gan", "stabledrag.webapp",
                                                  "stabledrag.bench", "stabledrag.toy", "lora_tuning",
                                                  "diffusers", "gradio")))
    assert bad == []


def test_the_toy_renderer_imports_neither_dataset_nor_detector():
    mods = _modules_after_import(["stabledrag.toy.render"])
    assert "stabledrag.toy.dataset" not in mods and "stabledrag.toy.detect" not in mods
