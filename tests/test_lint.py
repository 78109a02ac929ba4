"""`ruff check` (settings in pyproject.toml: pyflakes + pycodestyle, 120 columns) stays clean over
the whole repository: library, web app, lora_tuning, app.py, scripts and tests. CI installs ruff
from requirements-dev.txt."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    ruff = pytest.importorskip("ruff", reason="ruff is a dev requirement (requirements-dev.txt)")
    exe = ruff.find_ruff_bin() if hasattr(ruff, "find_ruff_bin") else "ruff"
    out = subprocess.run([exe, "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # the settings really apply: an undefined name in a scratch file is reported
    bad = subprocess.run([exe, "check", "--no-cache", "--stdin-filename", "stabledrag/_scratch.py", "-"],
                         cwd=ROOT, input="def f():\n    return undefined_name\n", capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "F821" in bad.stdout
