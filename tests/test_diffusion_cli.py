"""`python -m stabledrag edit --backend diffusion` on a saved tiny SD-shaped diffusers folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stabledrag.cli import main
from stabledrag.diffusion.tiny import save_tiny_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd") / "model", seed=1, image_size=64)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("STABLEDRAG_CACHE", str(tmp_path / "cache"))  # LoRA cache inside the test
    yy, xx = np.mgrid[:60, :90]
    arr = np.stack([xx * 2, yy * 3, 100 + 0 * xx, 255 - yy], -1).astype(np.uint8)
    arr[(xx - 30) ** 2 + (yy - 30) ** 2 < 120] = (30, 40, 120, 255)
    Image.fromarray(arr, "RGBA").save(tmp_path / "in.png")
    mask = np.zeros((60, 90), np.uint8)
    mask[5:55, 10:70] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (tmp_path / "broken.png").write_text("not an image")
    return tmp_path


FAST = ["--lora-steps", "2", "--drag-steps", "3", "--set", "inversion.num_steps=10", "--set", "inversion.strength=0.5",
        "--set", "lora.batch_size=1", "--set", "lora.rank=4", "--device", "cpu"]


def test_cli_edits_a_diffusers_folder_and_writes_report(model_dir, files, capsys):
    out, rep = files / "out.png", files / "report.json"
    code = main(["edit", "--backend", "diffusion", "--model", model_dir, "--image", str(files / "in.png"),
                 "--drag", "30,30:42,30", "--mask", str(files / "mask.png"), "--prompt", "a face",
                 "--method", "baseline", "--seed", "3", "--out", str(out), "--report", str(rep), "--paste-back",
                 "--set", "tau=0.4", *FAST])
    assert code == 0, capsys.readouterr().err
    result = Image.open(out)
    assert result.size == (90, 60)
    report = json.loads(rep.read_text())
    assert report["config"]["drag"]["method"] == "baseline" and report["config"]["drag"]["tau"] == 0.4
    assert report["config"]["drag"]["max_steps"] == 3 and report["config"]["lora"]["steps"] == 2
    assert report["config"]["seed"] == 3 and report["config"]["paste_back"] is True
    drag = report["drag"]
    assert drag["trajectory"][0] == [[30.0, 30.0]] and len(drag["final_distances"]) == 1
    assert len(drag["confidences"]) == drag["steps"]
    assert set(report["timings"]) >= {"lora", "inversion", "drag", "denoise"}
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--drag", "30,30:200,30"], "outside"),
    ([], "No drag given"),
    (["--drag", "30,30-42,30"], "Could not read the drag"),
])
def test_cli_bad_points(model_dir, files, capsys, argv, message):
    code = main(["edit", "--backend", "diffusion", "--model", model_dir, "--image", str(files / "in.png"),
                 "--out", str(files / "o.png"), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_bad_files(model_dir, files, capsys):
    base = ["edit", "--backend", "diffusion", "--drag", "30,30:42,30", "--out", str(files / "o.png")]
    assert main([*base, "--model", model_dir, "--image", str(files / "broken.png")]) == 2
    assert "The image is not a PNG, JPEG" in capsys.readouterr().err
    assert main([*base, "--model", model_dir, "--image", str(files / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--model", str(files / "no_model"), "--image", str(files / "in.png"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no_model" in err and "not found" in err and "Traceback" not in err
    assert main([*base, "--model", model_dir, "--image", str(files / "in.png"), "--set", "bogus=1"]) == 2
    assert "unknown setting" in capsys.readouterr().err
    assert not (files / "o.png").exists()


@pytest.mark.parametrize("bad, says", [({"lr": 1e9}, "lr must be a number between 0 and 1"),
                                       ({"lr": "wide"}, "lr must be a number, got 'wide'"),
                                       ({"lora.bogus": 1}, "bogus")])
def test_a_bad_value_in_the_models_settings_file_is_one_line_naming_the_file(model_dir, files, capsys, bad, says):
    """As on the GAN engine: a value the config or the limits refuse, in a model folder's
    `stabledrag_settings.json`, is refused where the file is read, naming the file, in `edit` (exit 2)."""
    import json
    import shutil

    from stabledrag.model_settings import SETTINGS_FILE

    folder = files / "model_with_settings"
    shutil.copytree(model_dir, folder)
    (folder / SETTINGS_FILE).write_text(json.dumps({"edit": bad}))
    argv = ["edit", "--backend", "diffusion", "--model", str(folder), "--image", str(files / "in.png"),
            "--drag", "30,30:42,30", "--out", str(files / "o.png"), *FAST]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Bad drag setting in ") and SETTINGS_FILE in err and says in err
    assert err.count("\n") == 1 and not (files / "o.png").exists()
