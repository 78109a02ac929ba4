import json
import subprocess
import sys

import pytest

from stabledrag.cli import main, parse_overrides
from stabledrag.errors import UserError


def test_bench_tracking_prints_json(capsys, tmp_path):
    out = tmp_path / "t.json"
    assert main(["bench", "tracking", "--cases", "4", "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(out.read_text())
    acc = data["accuracy"]
    assert set(acc) >= {"clean", "distractor_strong_drift"}
    for scen in acc.values():
        for tracker in ("nearest", "discriminative"):
            assert 0.0 <= scen[tracker]["success_rate"] <= 1.0
    assert data["cost"]["discriminative"]["fit_ms"] > 0


def test_module_entry_point_and_user_errors_exit_2():
    r = subprocess.run([sys.executable, "-m", "stabledrag", "bench", "tracking", "--cases", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["benchmark"] == "tracking"


def test_parse_overrides():
    assert parse_overrides(["tau=0.5", "method=baseline", "r_p=4"]) == {"tau": 0.5, "method": "baseline", "r_p": 4}
    with pytest.raises(UserError):
        parse_overrides(["tau"])
