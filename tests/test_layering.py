"""The core (drag loop, trackers, supervision, points, config, engine protocol) imports no engine,
no web app and no diffusers/gradio; the toy world's renderer imports neither its dataset nor its
detector (no import circle); the library never imports the `lora_tuning` command package, so the
two top-level packages depend one way only (`lora_tuning -> stabledrag`)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module `path` imports (top-level, inside functions, relative ones
    resolved against `package`, the dotted package the file sits in)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def _top_level_imports(top: str) -> dict[str, set[str]]:
    """For every .py file under the top-level package `top`: the top-level packages it imports."""
    out = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        package = ".".join(rel.parts[:-1])  # the package a module (or an __init__) belongs to
        out[str(path.relative_to(ROOT))] = {m.split(".")[0] for m in _imported_modules(path, package)}
    return out


def test_the_library_never_imports_lora_tuning():
    offenders = sorted(f for f, tops in _top_level_imports("stabledrag").items() if "lora_tuning" in tops)
    assert offenders == []


def test_no_import_circle_between_the_top_level_packages():
    packages = ("stabledrag", "lora_tuning", "scripts")
    graph = {p: set() for p in packages}
    for p in packages:
        for tops in _top_level_imports(p).values():
            graph[p] |= (tops & set(packages)) - {p}
    assert "stabledrag" in graph["lora_tuning"]  # the command package is built on the library
    # depth-first search for a cycle in the package graph
    state = {}

    def cycle_from(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path + [nxt]
            if nxt not in state and (found := cycle_from(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    cycles = [c for p in packages if p not in state and (c := cycle_from(p, [p]))]
    assert cycles == []


def test_the_import_scanner_sees_relative_and_nested_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from ..x import y\nfrom . import z\ndef f():\n    import lora_tuning.cache\n")
    assert _imported_modules(f, "stabledrag.diffusion") == {"stabledrag.x", "stabledrag.diffusion",
                                                           "lora_tuning.cache"}



ENGINE_PACKAGES = ("stabledrag.gan", "stabledrag.diffusion")


def _imported_names(path: Path, package: str) -> set[str]:
    """`_imported_modules` plus, for every `from X import name`, `X.name` (`name` may be a module:
    `from .. import gan`)."""
    found = _imported_modules(path, package)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            else:
                base = node.module
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _engine_imports(webapp: Path) -> dict[str, list[str]]:
    """For every .py file under `webapp` (the folder of the `stabledrag.webapp` package): the
    engine modules (`ENGINE_PACKAGES` and below) it imports, by file name relative to `webapp`."""
    out = {}
    for path in sorted(webapp.rglob("*.py")):
        rel = path.relative_to(webapp)
        package = ".".join(("stabledrag", "webapp", *rel.parts[:-1]))
        bad = sorted(m for m in _imported_names(path, package)
                     if m in ENGINE_PACKAGES or m.startswith(tuple(p + "." for p in ENGINE_PACKAGES)))
        if bad:
            out[rel.as_posix()] = bad
    return out


def test_the_web_app_reaches_the_engines_only_through_the_registry():
    """`stabledrag/webapp/` imports nothing of `stabledrag.gan` / `stabledrag.diffusion` (top-level,
    inside functions, relative or absolute): it asks `stabledrag.engine.get(name)` for menus,
    models, editors, configs and photo projection."""
    webapp = ROOT / "stabledrag" / "webapp"
    assert (webapp / "ui.py").is_file() and (webapp / "models.py").is_file()
    assert _engine_imports(webapp) == {}


def test_the_web_app_import_check_sees_a_planted_engine_import(tmp_path):
    """The check above fails on each way of writing an engine import, planted in a copy of the package."""
    import shutil

    webapp = tmp_path / "webapp"
    shutil.copytree(ROOT / "stabledrag" / "webapp", webapp, ignore=shutil.ignore_patterns("__pycache__"))
    assert _engine_imports(webapp) == {}
    plants = {"a.py": "from ..gan.editor import GanEditor\n",
              "b.py": "def f():\n    from ..diffusion import editor\n",
              "c.py": "import stabledrag.diffusion.recommended\n",
              "d.py": "from .. import diffusion\n",
              "f.py": "from stabledrag import gan as g\n",
              "sub/e.py": "from ...gan import load_generator\n"}
    for name, code in plants.items():
        (webapp / name).parent.mkdir(exist_ok=True)
        (webapp / name).write_text(code)
    found = _engine_imports(webapp)
    assert sorted(found) == sorted(plants)
    assert found["d.py"] == ["stabledrag.diffusion"] and "stabledrag.gan" in found["sub/e.py"]
