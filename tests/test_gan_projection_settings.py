"""A GAN model folder carries its recommended *projection* settings (the `project` entry of
`stabledrag_settings.json`): the CLI's `project`, the GAN tab's photo upload and
`bench toy --source rendered` all use them, under the user's own; a single-file model gets the
defaults; a bad entry is refused naming the file."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stabledrag import model_settings
from stabledrag.cli import main
from stabledrag.errors import UserError
from stabledrag.gan.engine import GanEngine
from stabledrag.gan.projection import ProjectionConfig, projection_config, recommended_projection
from stabledrag.paths import TOY_GAN_DIR
from stabledrag.testing import save_tiny_gan

#: Distinctive values: far from the defaults (150 / 150 / 150, W start).
PROJECT = {"w_steps": 3, "wplus_steps": 2, "pti_steps": 8, "init_candidates": 4, "w_avg_samples": 16}


@pytest.fixture
def gan_folder(tmp_path) -> Path:
    """A tiny 32 px native GAN folder whose settings file has a `project` entry."""
    folder = Path(save_tiny_gan(tmp_path / "models_src", resolution=32))
    (folder / model_settings.SETTINGS_FILE).write_text(json.dumps({"edit": {"r_p": 5.0}, "project": PROJECT}))
    return folder


def test_the_toy_gan_projects_from_z_with_its_own_settings_and_other_models_get_the_defaults(tmp_path):
    data = json.loads((TOY_GAN_DIR / model_settings.SETTINGS_FILE).read_text())
    assert recommended_projection(None) == data["project"] and data["project"]["start_space"] == "z"
    cfg = projection_config(None)
    assert cfg.start_space == "z" and cfg.pti_steps == data["project"]["pti_steps"] != ProjectionConfig().pti_steps
    (tmp_path / "g.pkl").write_bytes(b"x")
    assert recommended_projection(tmp_path / "g.pkl") == {}
    assert projection_config(tmp_path / "g.pkl") == ProjectionConfig()
    assert projection_config(None, pti_steps=5).pti_steps == 5  # the user's setting wins


def test_the_cli_and_the_app_use_the_models_projection_settings_under_the_users(gan_folder, tmp_path):
    cfg = projection_config(gan_folder)
    assert (cfg.w_steps, cfg.wplus_steps, cfg.pti_steps) == (3, 2, 8) and cfg.start_space == "w"
    # the web app's settings (the engine's PhotoProjector): the model's, steps scaled for "More steps"
    app = GanEngine().projection_config(str(gan_folder), pti=True, steps_scale=0.5)
    assert (app.w_steps, app.wplus_steps, app.pti_steps) == (2, 1, 4)
    assert GanEngine().projection_config(str(gan_folder), pti=False).pti_steps == 0

    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(tmp_path / "p.png")

    def project(*extra):
        rep = tmp_path / "rep.json"
        rc = main(["project", "--backend", "gan", "--model", str(gan_folder), "--image", str(tmp_path / "p.png"),
                   "--out", str(tmp_path / "l.npz"), "--quiet", "--report", str(rep), *extra])
        return rc, json.loads(rep.read_text())["config"] if rc == 0 else None

    rc, used = project()
    assert rc == 0 and {k: used[k] for k in PROJECT} == PROJECT
    rc, used = project("--pti-steps", "1", "--set", "w_steps=2")
    assert rc == 0 and (used["w_steps"], used["wplus_steps"], used["pti_steps"]) == (2, 2, 1)


@pytest.mark.parametrize("entry, words", [({"pti_steps": -1}, "pti_steps must be >= 0"),
                                          ({"nope": 1}, "nope"), ([1, 2], "expected")])
def test_a_bad_project_entry_is_refused_naming_the_file(gan_folder, tmp_path, capsys, entry, words):
    path = gan_folder / model_settings.SETTINGS_FILE
    path.write_text(json.dumps({"project": entry}))
    with pytest.raises(UserError) as e:
        recommended_projection(gan_folder)
    assert str(path) in str(e.value) and words in str(e.value)
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(tmp_path / "p.png")
    rc = main(["project", "--backend", "gan", "--model", str(gan_folder), "--image", str(tmp_path / "p.png"),
               "--out", str(tmp_path / "l.npz"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and str(path) in err and err.count("\n") == 1


def test_the_gan_tabs_photo_upload_projects_with_the_chosen_models_settings(gan_folder):
    from stabledrag.gan.checkpoints import load_generator
    from stabledrag.gan.projection import clear_cache
    from stabledrag.webapp import gan_projection as gp
    from stabledrag.webapp.state import GanState

    clear_cache()
    G = load_generator(str(gan_folder), "cpu")
    photo = np.full((40, 48, 3), 90, np.uint8)
    s = GanState()
    views = list(gp.project_photo(s, "tiny", photo, G, spec=str(gan_folder)))
    assert views[-1].state is s
    used = s.projection["config"]
    assert {k: used[k] for k in PROJECT} == PROJECT  # the folder's `project` entry, not the defaults
    more = list(gp.more_steps(s, G, spec=str(gan_folder)))
    assert more[-1].state is s and s.projection["config"]["pti_steps"] == 4  # half of the model's 8 again
