import json
import subprocess
import sys

import pytest

from stabledrag.cli import main, parse_overrides
from stabledrag.errors import UserError


def test_bench_tracking_prints_json(capsys, tmp_path):
    out = tmp_path / "t.json"
    plot = tmp_path / "sweep.png"
    assert main(["bench", "tracking", "--cases", "4", "--out", str(out), "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(out.read_text())
    acc = data["accuracy"]
    assert set(acc) >= {"clean", "distractor_strong_drift", "near_lookalike_2px_drift"}
    assert acc["clean"]["discriminative"]["success_rate"] == 1.0
    assert acc["clean"]["nearest"]["success_rate"] == 1.0
    sweep = data["lookalike_sweep"]
    assert [float(k) for k in sweep] == data["settings"]["sweep"]["distances"]
    # far look-alikes are easy for the learned filter; the 1 px one is not (both near copies)
    assert sweep["6.0"]["discriminative"]["success_rate"] == 1.0
    from PIL import Image
    assert Image.open(plot).size == (420, 260)
    assert data["cost"]["discriminative"]["fit_ms"] > 0
    gan = data["gan_step"]["wall"]
    assert gan["step_ms"] > 0 and gan["fit_plus_track_over_step"] == pytest.approx(
        (gan["fit_ms"] + gan["track_ms"]) / gan["step_ms"], rel=0.02)


def test_module_entry_point_and_user_errors_exit_2(tmp_path):
    """`edit --help` exits 0; `python -m stabledrag` passes main's exit code to the shell: 2 and one line
    (no traceback) for a user error, found before any model is loaded."""
    with pytest.raises(SystemExit) as e:
        main(["edit", "--help"])
    assert e.value.code == 0
    r = subprocess.run([sys.executable, "-m", "stabledrag", "edit", "--backend", "gan", "--prompt", "p",
                        "--drag", "1,1:2,2", "--out", str(tmp_path / "o.png")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr == "error: --prompt is for --backend diffusion; drop it with --backend gan.\n"
    assert not (tmp_path / "o.png").exists()


def test_parse_overrides():
    assert parse_overrides(["tau=0.5", "method=baseline", "r_p=4"]) == {"tau": 0.5, "method": "baseline", "r_p": 4}
    with pytest.raises(UserError):
        parse_overrides(["tau"])
