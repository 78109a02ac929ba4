"""A GAN model folder carries its recommended drag settings (`stabledrag_settings.json`), read by
the same reader as the diffusion engine's (`stabledrag.model_settings`), and the CLI, `bench toy`
and the GAN tab apply them between the method's preset and the user's settings."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from stabledrag import model_settings
from stabledrag.errors import UserError
from stabledrag.gan.presets import gan_defaults, recommended_overrides
from stabledrag.paths import TOY_GAN_DIR
from stabledrag.testing import save_tiny_gan
from stabledrag.webapp import gan_handlers as gh
from stabledrag.webapp.args import parse_args
from stabledrag.webapp.models import Engines
from stabledrag.webapp.state import GanState

#: A distinctive r_p (the tiny 32 px GAN's preset is 2) and a setting the GAN tab has no field for.
MODEL_SETTINGS = {"r_p": 5.0, "stop_distance": 0.25}


@pytest.fixture
def gan_folder(tmp_path) -> Path:
    """A tiny 32 px native GAN folder carrying `MODEL_SETTINGS`."""
    folder = Path(save_tiny_gan(tmp_path / "models_src", resolution=32))
    (folder / model_settings.SETTINGS_FILE).write_text(json.dumps({"about": "test", "edit": MODEL_SETTINGS}))
    return folder


def test_one_reader_for_both_engines(tmp_path):
    from stabledrag.diffusion import recommended

    assert recommended.read_settings is model_settings.read_settings
    assert recommended.SETTINGS_FILE == model_settings.SETTINGS_FILE == "stabledrag_settings.json"
    assert model_settings.folder_overrides(tmp_path) == {} and model_settings.folder_overrides(None) == {}
    (tmp_path / "model.pkl").write_bytes(b"x")
    assert recommended_overrides(tmp_path / "model.pkl") == {}  # a single-file model has no folder to carry it
    (tmp_path / model_settings.SETTINGS_FILE).write_text('{"edit": {"r_m": 2}}')
    assert model_settings.folder_overrides(tmp_path) == {"r_m": 2} == recommended_overrides(tmp_path)
    assert recommended.recommended_overrides(tmp_path) == {"r_m": 2}  # the diffusion engine reads it alike


def test_the_bundled_toy_gan_carries_its_settings_and_they_differ_from_the_presets_by_r_m_only():
    """The file holds the presets' values at 128 px for every method except the motion radius:
    r_m 3 px (the presets' 1 px stretches an 8 px eye instead of moving it), for all three methods,
    shown in the GAN tab."""
    data = json.loads((TOY_GAN_DIR / model_settings.SETTINGS_FILE).read_text())
    assert "bench toy --backend gan" in data["about"]
    rec = recommended_overrides(None)  # None = the bundled toy GAN
    assert rec == data["edit"] and rec["r_p"] == 3.0 and rec["r_m"] == 3.0
    from stabledrag import engine

    assert engine.get("gan").recommended(str(TOY_GAN_DIR)) == rec
    for method in ("stabledrag", "baseline", "draggan"):
        assert gan_defaults(method, 128).r_m == 1.0
        assert gan_defaults(method, 128, **rec) == gan_defaults(method, 128, r_m=3.0), method
        before = dataclasses.replace(gh.GanSettings(), method=method)  # the tab without the file
        after = dataclasses.replace(gh.GanSettings.defaults_for("cpu", rec), method=method)
        assert (after.r_m, after.r_p) == (3.0, 3.0)  # shown in the tab instead of 0 = automatic
        assert after.edit_config((128, 128), rec) == dataclasses.replace(before.edit_config((128, 128)), r_m=3.0)


def test_the_cli_edit_and_the_bench_apply_the_models_settings_under_the_users(gan_folder, tmp_path, capsys):
    from stabledrag.cli import main
    from stabledrag.gan.engine import GanEngine

    def edit(*extra):
        report = tmp_path / "r.json"
        code = main(["edit", "--backend", "gan", "--model", str(gan_folder), "--seed", "3", "--device", "cpu",
                     "--drag", "12,14:16,14", "--steps", "1", "--quiet", "--out", str(tmp_path / "e.png"),
                     "--report", str(report), *extra])
        return code, (json.loads(report.read_text()) if code == 0 else None)

    code, report = edit()
    assert code == 0 and report["model_settings"] == MODEL_SETTINGS
    assert report["config"]["r_p"] == 5.0 and report["config"]["stop_distance"] == 0.25
    assert report["config"]["lr"] == gan_defaults("stabledrag", 32).lr  # what the file leaves alone: the preset
    code, report = edit("--set", "r_p=2.5")  # the user's setting wins
    assert code == 0 and report["config"]["r_p"] == 2.5 and report["config"]["stop_distance"] == 0.25

    _, _, meta = GanEngine().toy_runner("cpu", str(gan_folder), {"r_p": 4.0})
    assert meta["model_settings"] == MODEL_SETTINGS  # `bench toy --backend gan` reports and uses them
    from stabledrag.gan.checkpoints import load_generator
    from stabledrag.gan.editor import GanEditor

    ed = GanEditor(load_generator(str(gan_folder), "cpu"), recommended=MODEL_SETTINGS)
    assert ed.default_config("baseline", r_p=4.0).r_p == 4.0 and ed.default_config("baseline").r_p == 5.0
    assert ed.default_config("draggan").stop_distance == 0.25 and GanEditor(ed.G).default_config().r_p == 2.0

    (gan_folder / model_settings.SETTINGS_FILE).unlink()  # no file: the presets as they are
    code, report = edit()
    assert code == 0 and report["model_settings"] == {}
    assert report["config"]["r_p"] == gan_defaults("stabledrag", 32).r_p == 2.0
    capsys.readouterr()
    for bad, says in (('{"edit": ["r_p", 5]}', "expected"), ("{not json", "Could not read the model's settings"),
                      ('{"edit": {"lora.steps": 3}}', "'lora.steps' is not a drag setting")):
        (gan_folder / model_settings.SETTINGS_FILE).write_text(bad)
        assert edit()[0] == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and model_settings.SETTINGS_FILE in err
        assert err.count("\n") == 1  # one line, no traceback


def test_the_gan_tab_fills_its_settings_from_the_chosen_model_and_the_run_uses_them(gan_folder, tmp_path,
                                                                                      monkeypatch):
    from stabledrag.gan.editor import GanEditor

    engines = Engines(parse_args(["--gan-model", str(gan_folder), "--models-dir", str(tmp_path / "none"),
                                  "--device", "cpu"]))
    label = engines.labels("gan")[0]
    assert "(--gan-model)" in label
    rec = engines.recommended("gan", label)
    assert rec == MODEL_SETTINGS
    settings = gh.GanSettings.defaults_for("cpu", rec)
    assert settings.r_p == 5.0 and settings.r_m is None  # the file's r_p; r_m stays automatic
    assert gh.GanSettings.model_values("cpu", rec) == {"lr": 2e-3, "max_steps": 200, "r_m": 0, "r_p": 5.0}
    # picking this model changes only what its file sets (r_p); the step size and the steps per
    # Start, which no model's file sets, keep the person's values (500 steps stay 500)
    assert gh.GanSettings.model_change("cpu", rec, {}) == {"r_p": 5.0}
    assert gh.GanSettings.model_change("cpu", {}, rec) == {"r_p": 0}  # another model: back to automatic
    assert gh.GanSettings.model_change("cpu", {}, {}) == {}
    assert gh.GanSettings.model_change("cpu", {"max_steps": 300}, rec) == {"max_steps": 300, "r_p": 0}

    configs = []
    session = GanEditor.session

    def spy(self, points, config=None, **kw):
        configs.append(config)
        return session(self, points, config, **kw)

    monkeypatch.setattr(GanEditor, "session", spy)
    s = GanState()
    generator = engines.model("gan", label)
    gh.generate(s, label, 3, 0.7, generator)
    s.clicks = [(8, 8), (14, 8)]
    settings = dataclasses.replace(settings, max_steps=1, preview_every=1)
    list(gh.run_drag(s, None, settings, generator, recommended=rec))
    assert configs[-1].r_p == 5.0 and configs[-1].stop_distance == 0.25  # a key the tab has no field for too
    mine = gh.GanSettings.from_values({**settings.ui_values(), "r_p": 2.5})  # the person's own value wins
    list(gh.run_drag(s, None, mine, generator, recommended=rec))
    assert configs[-1].r_p == 2.5 and configs[-1].stop_distance == 0.25

    (gan_folder / model_settings.SETTINGS_FILE).write_text('{"edit": {"r_p": "wide"')
    assert engines.recommended("gan", label) == {}  # the page still opens (logged)
    with pytest.raises(UserError, match="Could not read the model's settings"):
        engines.recommended("gan", label, strict=True)  # a run says what is wrong


def test_the_gan_tab_widgets_follow_the_model(gan_folder, tmp_path):
    import gradio as gr

    from stabledrag.webapp import ui

    options = parse_args(["--gan-model", str(gan_folder), "--models-dir", str(tmp_path / "none"), "--device", "cpu"])
    with gr.Blocks() as demo:
        ui.build_gan_tab(Engines(options), options, ui.CancelTokens())
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    assert blocks["gan_r_p"].value == 5.0 and blocks["gan_r_m"].value == 0
    label = blocks["gan_model"].value
    (on_model,) = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_model"
                   and blocks["gan_r_p"] in f.outputs]
    names = [o.elem_id for o in on_model.outputs]
    # picked after a model without settings: only the file's r_p changes; the step size, the steps
    # per Start and r_m keep the person's values; the panel now shows this model's settings
    assert dict(zip(names, on_model.fn(label, None))) == {"gan_lr": gr.skip(), "gan_max_steps": gr.skip(),
                                                          "gan_r_m": gr.skip(), "gan_r_p": 5.0, None: label}


def test_a_model_pick_in_the_page_skips_the_settings_no_model_sets():
    """`ui._model_change`: the outputs of a model pick keep (gr.skip) what neither model recommends."""
    import gradio as gr

    from stabledrag.webapp import diff_handlers as dh
    from stabledrag.webapp.ui import _model_change

    class FakeEngines:
        device = type("Device", (), {"type": "cpu"})()

        def recommended(self, name, label):
            return {"with file": dict(MODEL_SETTINGS)}.get(label, {})

    followed = gh.GanSettings.followed_fields()
    out = _model_change(FakeEngines(), "gan", gh.GanSettings, "plain", "with file")
    assert len(out) == len(followed) + 1 and out[-1] == "plain"  # the new shown model
    values = dict(zip(followed, out))
    assert values["r_p"] == 0 and all(values[n] == gr.skip() for n in followed if n != "r_p")
    out = _model_change(FakeEngines(), "diffusion", dh.DiffSettings, "other plain", "plain")
    assert all(v == gr.skip() for v in out[:-1]) and out[-1] == "other plain"


@pytest.mark.parametrize("bad", ['{"edit": {"r_p": "wide"}}', '{"edit": {"tau": "high"}}', '{"edit": {"lr": 1e9}}',
                                 '{"edit": {"lr": null}}'])
def test_a_bad_value_in_the_models_settings_file_is_one_line_naming_the_file_in_edit_and_the_benches(
        gan_folder, tmp_path, capsys, bad):
    """Valid JSON with a value DragConfig or the limits refuse: `edit` names the file (not --set), and
    `bench toy` / `bench toy --source rendered` stop with the same line (exit 2) before any drag."""
    from stabledrag.cli import main

    (gan_folder / model_settings.SETTINGS_FILE).write_text(bad)
    for argv in (["edit", "--backend", "gan", "--model", str(gan_folder), "--seed", "3", "--device", "cpu",
                  "--drag", "12,14:16,14", "--max-steps", "1", "--quiet", "--out", str(tmp_path / "e.png")],
                 ["bench", "toy", "--backend", "gan", "--model", str(gan_folder), "--cases", "1",
                  "--methods", "stabledrag"],
                 ["bench", "toy", "--backend", "gan", "--source", "rendered", "--model", str(gan_folder),
                  "--cases", "1", "--methods", "stabledrag"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: Bad drag setting in ") and model_settings.SETTINGS_FILE in err
        assert "--set" not in err and err.count("\n") == 1


def test_a_bad_set_value_in_bench_toy_is_one_line_not_a_traceback(capsys):
    from stabledrag.cli import main

    for argv in (["bench", "toy", "--backend", "gan", "--cases", "1", "--methods", "stabledrag", "--set", "r_p=wide"],
                 ["bench", "toy", "--backend", "gan", "--cases", "1", "--methods", "stabledrag", "--set", "lr=1e9"],
                 ["bench", "toy", "--backend", "gan", "--source", "rendered", "--cases", "1", "--methods",
                  "stabledrag", "--set", "tau=2"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: Bad drag setting in --set: ") and err.count("\n") == 1
        if "r_p=wide" in argv:
            assert "r_p must be a number, got 'wide'" in err


def test_the_tabs_check_the_whole_config_and_name_the_models_file_for_its_bad_values(gan_folder, tmp_path):
    """A model's setting the tab has no field for (`stop_distance`, `sigma`) goes through the same
    limits as the CLI's (`check_drag_config`), and a bad one is blamed on the model's file."""
    from stabledrag.webapp import diff_handlers as dh

    for rec in ({"stop_distance": 1e9}, {"stop_distance": "far"}, {"sigma": float("nan")}):
        with pytest.raises(UserError, match=f"^Bad drag setting in the chosen model's {model_settings.SETTINGS_FILE}: "
                                            f"{list(rec)[0]}"):
            gh.GanSettings().edit_config((32, 32), rec)
    from_file = f"^Bad drag setting in the chosen model's {model_settings.SETTINGS_FILE}: "
    with pytest.raises(UserError, match=from_file + ".*sigma"):
        dh.DiffSettings().edit_config({"sigma": "wide"})
    with pytest.raises(UserError, match="^Bad drag setting in the tab's settings: stop_distance must be a number "
                                       "between 0 and 10000") as e:
        dh.DiffSettings(stop_distance=1e9).edit_config({"sigma": 1.0})  # the tab's own value: not the file's
    assert model_settings.SETTINGS_FILE not in str(e.value)
    assert gh.GanSettings().edit_config((32, 32), {"stop_distance": 0.5}).stop_distance == 0.5

    # through the tab: the model folder's file sets an out-of-range stop distance
    (gan_folder / model_settings.SETTINGS_FILE).write_text(json.dumps({"edit": {"stop_distance": 1e9}}))
    engines = Engines(parse_args(["--gan-model", str(gan_folder), "--models-dir", str(tmp_path / "none"),
                                  "--device", "cpu"]))
    label = engines.labels("gan")[0]
    s = GanState()
    generator = engines.model("gan", label)
    gh.generate(s, label, 3, 0.7, generator)
    s.clicks = [(8, 8), (14, 8)]
    with pytest.raises(UserError, match="stabledrag_settings.json.*stop_distance must be a number between 0"):
        list(gh.run_drag(s, None, gh.GanSettings(max_steps=1), generator,
                         recommended=engines.recommended("gan", label, strict=True)))


def test_a_projected_photo_gets_the_models_edit_photo_settings_over_its_edit_ones(gan_folder, tmp_path, capsys):
    """`edit_photo` applies over `edit` to a photo projected into the model (`edit --latent`, the
    projected-faces bench), not to the model's own samples; the user's settings still win, and a bad
    key there is refused naming the file."""
    from PIL import Image

    from stabledrag.cli import main
    from stabledrag.gan.checkpoints import load_generator
    from stabledrag.gan.editor import GanEditor

    path = gan_folder / model_settings.SETTINGS_FILE
    path.write_text(json.dumps({"edit": MODEL_SETTINGS, "edit_photo": {"max_steps": 7, "r_p": 4.0}}))
    assert recommended_overrides(gan_folder) == MODEL_SETTINGS
    assert recommended_overrides(gan_folder, photo=True) == {"r_p": 4.0, "stop_distance": 0.25, "max_steps": 7}
    single = tmp_path / "single"
    single.mkdir()
    (single / "model.pkl").write_bytes(b"x")
    (single / model_settings.SETTINGS_FILE).write_text(json.dumps({"edit_photo": {"max_steps": 7}}))
    assert recommended_overrides(single / "model.pkl", photo=True) == {}  # a single file: no settings

    engines = Engines(parse_args(["--gan-model", str(gan_folder), "--models-dir", str(tmp_path / "none"),
                                  "--device", "cpu"]))
    label = engines.labels("gan")[0]  # the GAN tab: a projected photo's drag gets the photo settings
    assert engines.recommended("gan", label) == MODEL_SETTINGS
    assert engines.recommended("gan", label, strict=True, photo=True) == {**MODEL_SETTINGS, "max_steps": 7, "r_p": 4.0}
    # in the tab the keys it has fields for (steps per Start, r_p, ...) stay the tab's; the others reach the drag
    assert gh.GanSettings().edit_config((32, 32), engines.recommended("gan", label, photo=True)).stop_distance == 0.25
    from stabledrag import engine

    assert engine.get("diffusion").recommended(str(tmp_path / "none"), photo=True) == {}  # ignored there

    G = load_generator(str(gan_folder), "cpu")
    Image.fromarray(GanEditor(G).generate(5)).save(tmp_path / "photo.png")
    lat = tmp_path / "lat.npz"
    assert main(["project", "--backend", "gan", "--model", str(gan_folder), "--image", str(tmp_path / "photo.png"),
                 "--out", str(lat), "--quiet", "--w-steps", "2", "--wplus-steps", "2", "--pti-steps", "2",
                 "--set", "init_candidates=4", "--set", "w_avg_samples=16"]) == 0

    def edit(*extra):
        report = tmp_path / "r.json"
        code = main(["edit", "--backend", "gan", "--device", "cpu", "--drag", "12,14:16,14", "--quiet",
                     "--out", str(tmp_path / "e.png"), "--report", str(report), *extra])
        return code, (json.loads(report.read_text()) if code == 0 else None)

    code, report = edit("--latent", str(lat))  # the model is the one the latent file names
    assert code == 0 and report["pti"] and report["config"]["max_steps"] == 7 and report["config"]["r_p"] == 4.0
    assert report["config"]["stop_distance"] == 0.25  # an `edit` entry it does not change
    assert report["model_settings"] == {**MODEL_SETTINGS, "max_steps": 7, "r_p": 4.0}
    code, report = edit("--latent", str(lat), "--max-steps", "2", "--set", "r_p=2.5")  # the user's win
    assert code == 0 and report["config"]["max_steps"] == 2 and report["config"]["r_p"] == 2.5
    code, report = edit("--model", str(gan_folder), "--seed", "3", "--steps", "1")  # a sample: `edit` only
    assert code == 0 and report["config"]["r_p"] == 5.0 and report["model_settings"] == MODEL_SETTINGS

    capsys.readouterr()
    path.write_text(json.dumps({"edit": MODEL_SETTINGS, "edit_photo": {"lora.steps": 3}}))
    assert edit("--latent", str(lat))[0] == 2
    err = capsys.readouterr().err
    assert "'lora.steps' is not a drag setting" in err and model_settings.SETTINGS_FILE in err
    assert recommended_overrides(gan_folder) == MODEL_SETTINGS  # a sample's edit does not read that entry
    code, report = edit("--model", str(gan_folder), "--seed", "3", "--steps", "1")
    assert code == 0 and report["config"]["r_p"] == 5.0
    np.save(tmp_path / "bare.npy", np.load(lat)["ws"])  # a bare W+ array is no projected photo
    path.write_text(json.dumps({"edit": MODEL_SETTINGS, "edit_photo": {"max_steps": 7}}))
    code, report = edit("--latent", str(tmp_path / "bare.npy"), "--model", str(gan_folder))
    assert code == 0 and report["config"]["max_steps"] == 300 and not report["pti"]


def test_the_bundled_toy_gan_gives_projected_photos_more_steps():
    """The toy GAN's `edit_photo` entry: 600 steps (a PTI-tuned generator moves an eye about half as
    fast), the rest as for its samples."""
    rec, photo = recommended_overrides(None), recommended_overrides(None, photo=True)
    assert photo == {**rec, "max_steps": 600} and "max_steps" not in rec
    assert gan_defaults("stabledrag", 128, **photo).max_steps == 600 > gan_defaults("stabledrag", 128, **rec).max_steps
