"""A third engine added from outside: the translating texture (`bench.synthetic`) registered as
`texture` runs through `python -m stabledrag edit` and `bench toy` without any other file knowing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stabledrag import engine as engines
from stabledrag.bench.synthetic import TranslatingTextureBackend
from stabledrag.cli import main
from stabledrag.config import DragConfig
from stabledrag.drag import drag
from stabledrag.engine import EditOutcome, Option
from stabledrag.paths import TOY_GAN_DIR


def _texture(image: np.ndarray, blur: int) -> torch.Tensor:
    """`H x W x 3` uint8 -> `3 x H x W` float features, box-blurred so that flat regions have gradients."""
    t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255
    return F.avg_pool2d(F.pad(t, (blur,) * 4, mode="replicate"), 2 * blur + 1, stride=1)[0]


def _drag(image: np.ndarray, pairs, method: str, max_steps: int, blur: int, poison: Optional[int] = None):
    from stabledrag.points import from_pairs

    cfg = DragConfig(method=method, r_m=2, r_p=3, lr=0.3, max_steps=max_steps, stop_distance=1.0, lambda_mask=0.0)
    res = drag(TranslatingTextureBackend(_texture(image, blur), poison_at_step=poison), from_pairs(pairs), cfg)
    dx, dy = (int(round(v)) for v in res.state.detach().tolist())
    return np.roll(image, shift=(dy, dx), axis=(0, 1)), res, (dx, dy)


class TextureEngine:
    name = "texture"
    help = "a test engine: the whole image moved by a learnt offset"
    default_cases = 2
    step_tracking = False
    options = (Option(("--texture-blur",), dict(type=int, default=None, help="texture: box blur radius (px)")),
               Option(("--texture-poison",), dict(type=int, default=None, help="texture: NaN features from this call")))

    def edit(self, args, progress) -> EditOutcome:
        from stabledrag.imageio import read_image_array
        from stabledrag.points import parse_drags, validate

        image = read_image_array(args.image)
        points = validate(parse_drags(args.drag), (image.shape[1], image.shape[0]))
        pairs = list(zip(points.handles.tolist(), points.targets.tolist()))
        out, res, offset = _drag(image, pairs, args.method, args.max_steps or 60, args.texture_blur or 2,
                                 args.texture_poison)
        return EditOutcome(image=out, status=res.status, steps=res.steps, final_distances=res.distances.tolist(),
                           report={"offset": list(offset), "config": res.config.to_dict()}, error=res.error)

    def toy_runner(self, device: Optional[str], model: Optional[str], overrides: dict[str, Any],
                   step_tracking: bool) -> Any:
        from stabledrag.toy.render import render, sample_params

        def source(i: int, seed: int) -> np.ndarray:
            return render(sample_params(np.random.default_rng(seed + i)))[0]

        def run(src: np.ndarray, case: Any, method: str):
            out, res, _ = _drag(src, case.pairs(), method, overrides.get("max_steps", 60), 2)
            return out, res.status, {"handles": res.handles.tolist(), "steps": res.steps,
                                     "pushed_steps": res.pushed_steps, "step_tracking_error_px": None}

        return source, run, {"model": "texture"}


@pytest.fixture
def texture_engine():
    eng = engines.register(TextureEngine())
    yield eng
    engines.unregister("texture")


def _image(tmp_path):
    """A smooth random RGB texture (96 x 96), as in the drag-loop tests, saved as in.png."""
    from stabledrag.bench.synthetic import smooth_field

    g = torch.Generator().manual_seed(0)
    f = smooth_field(3, 96, g, scale=6) + 0.2 * smooth_field(3, 96, g, scale=2)
    f = (f - f.min()) / (f.max() - f.min())
    img = (f.permute(1, 2, 0) * 255).round().byte().numpy()
    Image.fromarray(img).save(tmp_path / "in.png")
    return img


def test_a_registered_engine_runs_through_the_cli(texture_engine, tmp_path, capsys):
    img = _image(tmp_path)
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    code = main(["edit", "--backend", "texture", "--image", str(tmp_path / "in.png"), "--drag", "40,44:45,46",
                 "--texture-blur", "1", "--max-steps", "80", "--out", str(out), "--report", str(rep), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(rep.read_text())
    assert report["backend"] == "texture" and report["output"] == str(out)
    assert report["status"] == "reached" and report["final_distances"][0] <= 1.0
    assert report["config"]["max_steps"] == 80
    dx, dy = report["offset"]
    assert abs(dx - 5) <= 1 and abs(dy - 2) <= 1  # the content really moved by the drag
    assert np.array_equal(np.asarray(Image.open(out)), np.roll(img, shift=(dy, dx), axis=(0, 1)))


def test_engine_options_are_refused_for_other_engines(texture_engine, tmp_path, capsys):
    _image(tmp_path)
    base = ["edit", "--image", str(tmp_path / "in.png"), "--drag", "40,44:45,46", "--out", str(tmp_path / "o.png")]
    assert main([*base, "--backend", "gan", "--texture-blur", "3"]) == 2
    err = capsys.readouterr().err
    assert "--texture-blur is for --backend texture" in err and err.count("\n") == 1
    assert main([*base, "--backend", "texture", "--prompt", "p"]) == 2
    assert "--prompt is for --backend diffusion" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_a_registered_engine_runs_through_bench_toy(texture_engine, tmp_path, capsys):
    out = tmp_path / "toy.json"
    assert main(["bench", "toy", "--backend", "texture", "--cases", "1", "--methods", "baseline",
                 "--kinds", "eye_short", "--out", str(out), "--sheet", str(tmp_path / "sheet.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(out.read_text())
    assert data["backend"] == "texture" and data["model"] == "texture" and data["settings"]["cases"] == 1
    sheet = Image.open(tmp_path / "sheet.png")  # drawn by visualize.py: source, points, result
    assert data["sheet"] == str(tmp_path / "sheet.png") and sheet.width > 128 and sheet.height >= 128
    (row,) = data["cases"]["baseline"]
    assert row["kind"] == "eye_short" and row["steps"] >= 1
    # the texture engine moves the whole face, so the detected eye follows the drag's offset
    if row["status"] == "reached":
        assert row["final_distance_px"] < row["start_distance_px"]


def test_unknown_engine_is_a_user_error():
    with pytest.raises(engines.UserError, match="Unknown engine 'nope'"):
        engines.get("nope")
    assert {"diffusion", "gan"} <= set(engines.names())
    assert all(isinstance(e, engines.Engine) for e in engines.all_engines())


def test_a_drag_that_ran_but_did_not_reach_exits_0_with_its_status(texture_engine, tmp_path, capsys):
    """One exit-code rule for every engine: the drag ran (diverged or out of steps) -> 0, and the
    report and the printed line say how it ended."""
    _image(tmp_path)
    base = ["edit", "--backend", "texture", "--image", str(tmp_path / "in.png"), "--drag", "40,44:45,46",
            "--out", str(tmp_path / "o.png"), "--report", str(tmp_path / "r.json"), "--texture-blur", "1"]
    assert main([*base, "--texture-poison", "3"]) == 0
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "diverged" and report["error"] and report["error"] in captured.err
    assert "diverged after" in captured.out and (tmp_path / "o.png").is_file()
    assert main([*base, "--max-steps", "1"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "max_steps" and report["steps"] == 1


@pytest.mark.slow
@pytest.mark.skipif(not (TOY_GAN_DIR / "model.safetensors").is_file(), reason="no bundled toy GAN in this checkout")
def test_bench_toy_one_case_on_the_bundled_gan(capsys):
    """The driver behind the README's toy numbers, one case, two drag steps per method."""
    assert main(["bench", "toy", "--backend", "gan", "--cases", "1", "--kinds", "eye_short", "--set", "max_steps=2",
                 "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "gan" and data["settings"]["cases"] == 1
    for method in ("stabledrag", "baseline"):
        (row,) = data["cases"][method]
        assert row["kind"] == "eye_short" and row["face_complete"] and row["steps"] <= 2
        assert row["status"] in ("reached", "max_steps") and len(row["step_tracking_error_px"]) == row["steps"]
        assert row["success"] == (row["final_distance_px"] is not None and row["final_distance_px"] <= 3.0)


def test_the_built_in_engines_offer_what_the_web_app_needs(texture_engine, tmp_path):
    """Both built-in engines are `AppEngine`s (the GAN also a `PhotoProjector`); an engine without
    the app's methods (the texture) gets no tab, menu or session files."""
    from stabledrag.config import DragConfig
    from stabledrag.gan.presets import gan_defaults
    from stabledrag.testing import save_tiny_gan

    gan, diffusion = engines.get("gan"), engines.get("diffusion")
    assert isinstance(gan, engines.AppEngine) and isinstance(gan, engines.PhotoProjector)
    assert isinstance(diffusion, engines.AppEngine) and not isinstance(diffusion, engines.PhotoProjector)
    assert not isinstance(texture_engine, engines.AppEngine)
    assert [e.name for e in engines.app_engines()] == ["diffusion", "gan"]
    # which models-folder entries each engine claims (the app lists an entry under the surest)
    native = Path(save_tiny_gan(tmp_path, resolution=32))
    (tmp_path / "sd.safetensors").write_bytes(b"x")
    (tmp_path / "official.pkl").write_bytes(b"x")
    assert (gan.claim(native), diffusion.claim(native)) == (2, 0)
    assert (gan.claim(tmp_path / "sd.safetensors"), diffusion.claim(tmp_path / "sd.safetensors")) == (0, 1)
    assert (gan.claim(tmp_path / "official.pkl"), diffusion.claim(tmp_path / "official.pkl")) == (1, 0)
    # the edit config: the method's preset (sized to the image for the GAN) with the overrides
    cfg = gan.edit_config("draggan", {"max_steps": 7, "lr": 0.01}, (256, 256))
    assert isinstance(cfg, DragConfig) and cfg == gan_defaults("draggan", 256, max_steps=7, lr=0.01)
    dcfg = diffusion.edit_config("baseline", {"max_steps": 9, "lora.steps": 3, "seed": 5})
    assert (dcfg.drag.max_steps, dcfg.drag.tracker, dcfg.lora.steps, dcfg.seed) == (9, "nearest", 3, 5)
    with pytest.raises(ValueError):
        diffusion.edit_config("magic", {})
    # the GAN's editor carries a projected photo's tuned weights; the diffusion engine has none
    G = gan.load(str(native), "cpu")
    assert gan.editor(G).image_size == (32, 32)
    with pytest.raises(engines.UserError):
        diffusion.editor(object(), {"w": np.zeros(1, np.float32)})
    assert gan.recommended(str(native)) == {}
