"""`DiffusionEditor` end to end on a tiny SD-shaped pipeline: sizes, caching, paste-back, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lora_tuning import IdentityLoraConfig, active_lora
from stabledrag.diffusion.presets import diffusion_defaults
from stabledrag.diffusion.editor import DiffusionEditConfig, DiffusionEditor
from stabledrag.diffusion.images import to_rgb
from stabledrag.diffusion.inversion import InversionConfig
from stabledrag.diffusion.tiny import build_tiny_pipeline
from stabledrag.errors import ModelUnavailableError, UserError
from stabledrag.points import DragPoints, from_pairs
from stabledrag.progress import CancelToken, Cancelled


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    pipe = build_tiny_pipeline(seed=0, image_size=64)
    return DiffusionEditor(pipeline=pipe, lora_cache_dir=str(tmp_path_factory.mktemp("lora")))


def _config(**kw):
    base = dict(lora=IdentityLoraConfig(steps=2, batch_size=1, rank=4),
                inversion=InversionConfig(num_steps=10, strength=0.5),
                drag=diffusion_defaults("stabledrag", max_steps=3))
    base.update(kw)
    return DiffusionEditConfig(**base)


def _rgba_image(w=100, h=70):
    yy, xx = np.mgrid[:h, :w]
    arr = np.stack([xx * 2, yy * 3, 128 + 0 * xx, 200 + 0 * xx], -1).astype(np.uint8)
    arr[(xx - 40) ** 2 + (yy - 35) ** 2 < 150] = (250, 200, 40, 255)
    return Image.fromarray(arr, "RGBA")


def _mask(w=100, h=70):
    m = np.zeros((h, w), bool)
    m[10:60, 20:80] = True
    return m


POINTS = from_pairs([((40, 35), (55, 35))])


def test_edit_runs_end_to_end_and_keeps_the_input_size(editor):
    events = []
    res = editor.edit(_rgba_image(), POINTS, mask=_mask(), prompt="a face", config=_config(), progress=events.append)
    assert res.image.size == (100, 70) and res.image.mode == "RGB"
    assert res.model_size == (64, 64)
    phases = [e.phase for e in events]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == ["lora", "inversion", "drag", "denoise"]
    assert set(res.timings) >= {"lora", "inversion", "drag", "denoise", "total"}
    assert res.drag.steps >= 1 and res.cached == {"lora": False, "inversion": False}
    assert active_lora(editor.pipe) is not None  # the identity LoRA stays on the UNet
    report = json.loads(json.dumps(res.report))  # JSON-able
    traj = report["drag"]["trajectory"]
    assert traj[0] == [[40.0, 35.0]]  # input-image pixels, not model pixels
    assert report["drag"]["targets"] == [[55.0, 35.0]]
    assert report["config"]["inversion"] == {"num_steps": 10, "strength": 0.5}
    assert report["image_size"] == [100, 70] and report["timestep"] == 401  # 5 of 10 DDIM steps: 1, 101, ..., 401


def test_second_edit_on_same_image_skips_lora_and_inversion(editor):
    cfg = _config()
    image, mask = _rgba_image(), _mask()
    first = editor.edit(image, POINTS, mask=mask, prompt="a face", config=cfg)
    before = dict(editor.counters)
    events = []
    second = editor.edit(image, POINTS, mask=mask, prompt="a face", config=cfg, progress=events.append)
    assert {e.phase for e in events} == {"drag", "denoise"}
    assert editor.counters["lora"] == before["lora"] and editor.counters["inversion"] == before["inversion"]
    assert editor.counters["reference_reused"] == before["reference_reused"] + 1
    assert second.cached == {"lora": True, "inversion": True}
    # the cached inversion is the same latent: the drag retraces the same path
    assert torch.allclose(first.drag.trajectory, second.drag.trajectory)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    # another drag on the same image and settings also reuses them
    events.clear()
    editor.edit(image, from_pairs([((30, 20), (30, 30))]), prompt="a face", config=cfg, progress=events.append)
    assert {e.phase for e in events} == {"drag", "denoise"}
    # a new prompt needs a new LoRA and inversion
    events.clear()
    editor.edit(image, POINTS, mask=mask, prompt="a cat", config=cfg, progress=events.append)
    assert {"lora", "inversion"} <= {e.phase for e in events}
    assert editor.counters["inversion"] == before["inversion"] + 1


def test_paste_back_restores_pixels_outside_the_mask(editor):
    image, mask = _rgba_image(), _mask()
    res = editor.edit(image, POINTS, mask=mask, prompt="a face", config=_config(paste_back=True))
    out = np.asarray(res.image)
    src = np.asarray(to_rgb(image))  # transparency flattened as the model saw it
    assert np.array_equal(out[~mask], src[~mask])
    assert not np.array_equal(out[mask], src[mask])


@pytest.mark.parametrize("image", [
    _rgba_image(48, 90).convert("L"),
    Image.fromarray((np.arange(1200 * 1800).reshape(1800, 1200) % 60000).astype(np.uint16)),  # huge 16-bit
])
def test_any_mode_and_size_without_lora_or_rlc(editor, image):
    w, h = image.size
    res = editor.edit(image, from_pairs([((w * 0.4, h * 0.45), (w * 0.55, h * 0.45))]),
                      config=_config(lora=IdentityLoraConfig(steps=0), rlc_start_block=None))
    assert res.image.size == (w, h) and res.image.mode == "RGB"
    assert active_lora(editor.pipe) is None
    assert res.report["drag"]["trajectory"][0] == [[round(w * 0.4, 3), round(h * 0.45, 3)]]


@pytest.mark.parametrize("points, mask, match", [
    (DragPoints(torch.zeros(0, 2), torch.zeros(0, 2)), None, "No drag points"),
    (from_pairs([((40, 35), (140, 35))]), None, "outside"),
    (POINTS, np.zeros((70, 100), bool), "nothing as editable"),
    (POINTS, np.ones((10, 10), bool), "same image"),
])
def test_bad_inputs_give_user_errors(editor, points, mask, match):
    with pytest.raises(UserError, match=match):
        editor.edit(_rgba_image(), points, mask=mask, config=_config())


def test_bad_block_names_are_user_errors(editor):
    with pytest.raises(UserError, match="up_blocks"):
        editor.edit(_rgba_image(), POINTS, config=_config(feature_block="up_blocks.7"))
    with pytest.raises(UserError, match="rlc_start_block"):
        editor.edit(_rgba_image(), POINTS, config=_config(rlc_start_block="decoder"))


def test_missing_model_says_what_to_do(tmp_path):
    ed = DiffusionEditor(model=str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(ModelUnavailableError, match="not found"):
        ed.edit(_rgba_image(), POINTS)


def test_cancel_during_drag_raises_cancelled(editor):
    token = CancelToken()

    def on_progress(p):
        if p.phase == "drag":
            token.cancel()

    with pytest.raises(Cancelled):
        editor.edit(_rgba_image(), POINTS, prompt="a face", config=_config(), progress=on_progress, cancel=token)


def test_config_overrides():
    cfg = DiffusionEditConfig().with_overrides({"tau": 0.3, "lora.steps": 5, "inversion.strength": 0.6,
                                                "paste_back": True, "method": "baseline"})
    assert cfg.drag.tau == 0.3 and cfg.drag.tracker == "nearest" and cfg.lora.steps == 5
    assert cfg.inversion.strength == 0.6 and cfg.paste_back is True
    assert DiffusionEditConfig().drag.max_steps == 80 and DiffusionEditConfig().inversion.inverse_steps == 35
    json.dumps(cfg.to_dict())
    with pytest.raises(UserError, match="unknown setting"):
        DiffusionEditConfig().with_overrides({"nope": 1})
    with pytest.raises(UserError, match="bad setting"):
        DiffusionEditConfig().with_overrides({"inversion.strength": 2.0})


def test_a_models_own_settings_come_under_the_users(tmp_path):
    """`stabledrag_settings.json` beside the weights: the editor, the CLI and the bench start from it."""
    import argparse

    from stabledrag.diffusion.cli import build_config
    from stabledrag.diffusion.recommended import SETTINGS_FILE

    (tmp_path / SETTINGS_FILE).write_text(json.dumps(
        {"about": "test", "edit": {"lr": 0.03, "inversion.num_steps": 12, "lora.steps": 5, "max_steps": 9}}))
    ed = DiffusionEditor(model=str(tmp_path))
    cfg = ed.default_config("baseline")
    assert (cfg.drag.lr, cfg.inversion.num_steps, cfg.lora.steps, cfg.drag.max_steps) == (0.03, 12, 5, 9)
    assert cfg.drag.tracker == "nearest"  # the method's preset stays
    assert ed.default_config("stabledrag", {"lr": 0.2}).drag.lr == 0.2  # the user's settings win
    assert DiffusionEditor(pipeline=object()).recommended_overrides() == {}  # a pipeline without a folder

    args = argparse.Namespace(method="stabledrag", paste_back=False, seed=None, drag_steps=None, lora_steps=7,
                              set=["inversion.num_steps=30"], model=str(tmp_path))
    cli = build_config(args)
    assert (cli.drag.lr, cli.lora.steps, cli.inversion.num_steps, cli.drag.max_steps) == (0.03, 7, 30, 9)
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(UserError, match=SETTINGS_FILE):
        ed.default_config()


def test_reconstruct_is_the_edit_without_a_drag_and_shares_its_cache(editor):
    img = _rgba_image(80, 60).convert("RGB")
    cfg = _config()
    before = dict(editor.counters)
    out, timings = editor.reconstruct(img, "a face", cfg)
    assert out.size == img.size and set(timings) == {"lora", "inversion", "denoise"}
    assert editor.counters["inversion"] == before["inversion"] + 1
    # an edit of the same image and settings reuses the LoRA and the inversion
    res = editor.edit(img, from_pairs([((30, 30), (36, 30))]), prompt="a face", config=cfg)
    assert res.cached == {"lora": True, "inversion": True}
    assert editor.counters["inversion"] == before["inversion"] + 1
    with pytest.raises(UserError):
        editor.reconstruct(np.zeros((4, 4, 3), np.uint8))
