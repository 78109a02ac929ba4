"""The README's two set-up commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    head = text.split("## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", head, flags=re.S)


def test_readme_opens_with_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert cmds[0].endswith("python app.py")
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci.splitlines()


def test_pyproject_declares_the_package_and_the_console_script():
    import importlib
    import tomllib

    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, func = doc["project"]["scripts"]["stabledrag"].split(":")
    main = getattr(importlib.import_module(module), func)
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    reqs = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert doc["project"]["dependencies"] == reqs  # one list of dependencies, written twice in sync
    assert "line-length" in doc["tool"]["ruff"]


def test_no_script_or_cli_inside_library_modules():
    """Scripts (training, screenshots, grids) live in scripts/; no library module has a `__main__`
    block: the package's one command line is `python -m stabledrag` (its `__main__.py`)."""
    for path in (ROOT / "stabledrag").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        assert 'if __name__ == "__main__"' not in path.read_text(), path
    for moved in ("screenshots.py", "abuse.py"):  # now scripts/screenshots.py, scripts/hostile_check.py
        assert not (ROOT / "stabledrag" / "webapp" / moved).exists()
    assert not list((ROOT / "stabledrag" / "toy").glob("train_*.py"))
