"""Projection of images into a tiny random StyleGAN2: recovery, PTI, cache, cancel, files, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from stabledrag.cli import main
from stabledrag.errors import UserError
from stabledrag.gan import latent_file
from stabledrag.gan.checkpoints import save_native
from stabledrag.gan.editor import GanEditor
from stabledrag.gan.networks import Generator, GeneratorConfig, to_uint8
from stabledrag.gan.projection import (CropBox, ProjectionConfig, align_image, apply_weight_delta, clear_cache,
                                       model_fingerprint, paste_back, project, psnr)
from stabledrag.points import from_pairs
from stabledrag.progress import CancelToken, Cancelled

FAST = dict(w_steps=60, wplus_steps=40, pti_steps=0, init_candidates=16, w_avg_samples=256)


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16,
                          mapping_layers=2)
    return Generator(cfg)  # 8 ws, with noise inputs


@pytest.fixture(scope="module")
def known(G):
    """An image of a known latent (mapped seed 5, psi 0.7) and that latent."""
    with torch.no_grad():
        ws = G.mapping(G.seed_to_z(5), None, truncation_psi=0.7)
        img, _ = G.synthesis(ws)
    return to_uint8(img), ws


def test_projection_recovers_a_known_latent(G, known):
    img, ws_true = known
    clear_cache()
    res = project(G, img, ProjectionConfig(**FAST), use_cache=False)
    assert res.ws.shape == (1, G.num_ws, G.w_dim)
    assert res.image.shape == img.shape and res.target is not img
    w_avg = G.mapping.w_avg[None, None]
    # far closer to the true latent than the start of the search, and the image is reproduced
    assert float((res.ws[:, 0] - ws_true[:, 0]).norm()) < 0.5 * float((w_avg[:, 0] - ws_true[:, 0]).norm())
    assert res.psnr_before_pti > 30.0
    with torch.no_grad():
        start_img, _ = G.synthesis(w_avg.repeat(1, G.num_ws, 1))
    assert res.psnr_before_pti > psnr(to_uint8(start_img), img) + 10
    assert not res.weight_delta  # no PTI, and the generator has zero noise strength at init


def test_pti_improves_fidelity_and_its_delta_reproduces_the_image(G, known):
    img, _ = known
    target = np.roll(img, 3, axis=1)  # not exactly reachable by the latent alone
    fp = model_fingerprint(G)
    res = project(G, target, ProjectionConfig(**{**FAST, "pti_steps": 40, "pti_lr": 3e-3}), use_cache=False)
    assert res.weight_delta and all(k.startswith("synthesis.") for k in res.weight_delta)
    assert res.psnr > res.psnr_before_pti + 0.5
    assert model_fingerprint(G) == fp  # G itself untouched
    with torch.no_grad():
        tuned, _ = apply_weight_delta(G, res.weight_delta).synthesis(res.ws)
        plain, _ = G.synthesis(res.ws)
    assert np.array_equal(to_uint8(tuned), res.image)
    assert np.array_equal(to_uint8(plain), res.image_before_pti)


def test_z_start_space_projects_too(G, known):
    img, _ = known
    res = project(G, img, ProjectionConfig(**{**FAST, "start_space": "z"}), use_cache=False)
    with torch.no_grad():
        start_img, _ = G.synthesis(G.mapping.w_avg[None, None].repeat(1, G.num_ws, 1))
    assert res.psnr_before_pti > psnr(to_uint8(start_img), img) + 5


def test_cache_hit_skips_the_work(G, known):
    img, _ = known
    clear_cache()
    calls: list = []
    cfg = ProjectionConfig(**{**FAST, "w_steps": 5, "wplus_steps": 5})
    a = project(G, img, cfg, progress=calls.append)
    n = len(calls)
    assert n > 0
    b = project(G, img, cfg, progress=calls.append)
    assert len(calls) == n  # nothing ran
    assert torch.equal(a.ws, b.ws)
    c = project(G, img, ProjectionConfig(**{**FAST, "w_steps": 6, "wplus_steps": 5}), progress=calls.append)
    assert len(calls) > n  # another config is another projection
    assert c is not a


def test_cancel_stops_and_caches_nothing(G, known):
    img, _ = known
    clear_cache()
    token = CancelToken()
    seen = []

    def cb(p):
        seen.append((p.phase, p.step))
        if p.step == 3:
            token.cancel()

    cfg = ProjectionConfig(**FAST)
    with pytest.raises(Cancelled):
        project(G, img, cfg, progress=cb, cancel=token)
    assert seen[-1] == ("project_w", 3)
    calls: list = []
    project(G, img, ProjectionConfig(**{**FAST, "w_steps": 4, "wplus_steps": 0}), progress=calls.append)
    assert calls  # a fresh run, not a cached half


def test_more_steps_continue_from_a_result(G, known):
    img, _ = known
    cfg = ProjectionConfig(**{**FAST, "w_steps": 10, "wplus_steps": 10})
    first = project(G, img, cfg, use_cache=False)
    phases: list = []
    more = project(G, img, ProjectionConfig(**{**FAST, "wplus_steps": 60}), init=first, use_cache=False,
                   progress=lambda p: phases.append(p.phase))
    assert "project_w" not in phases
    assert more.psnr_before_pti >= first.psnr_before_pti - 0.1


def test_align_and_paste_back_keep_the_crop():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (60, 100, 3), dtype=np.uint8)
    aligned, crop = align_image(photo, 32)
    assert aligned.shape == (32, 32, 3)
    assert crop == CropBox(20, 0, 80, 60, 100, 60, 32)
    edited = np.zeros_like(aligned)
    out = paste_back(photo, edited, crop)
    assert out.shape == photo.shape
    assert np.array_equal(out[:, :20], photo[:, :20]) and np.array_equal(out[:, 80:], photo[:, 80:])
    assert out[:, 20:80].max() == 0
    # a box is made square and kept inside the photo
    _, crop2 = align_image(photo, 32, box=(90, 10, 110, 30))
    assert (crop2.right - crop2.left, crop2.bottom - crop2.top) == (20, 20) and crop2.right <= 100
    # identity: an image of the generator's size is used as it is
    same, crop3 = align_image(aligned, 32)
    assert np.array_equal(same, aligned) and crop3.is_identity
    assert np.array_equal(paste_back(aligned, edited, crop3), edited)


def test_latent_file_round_trip_and_editor(G, known, tmp_path):
    img, _ = known
    res = project(G, np.roll(img, 2, axis=0), ProjectionConfig(**{**FAST, "pti_steps": 10, "pti_lr": 3e-3}),
                  use_cache=False)
    path = latent_file.save(tmp_path / "lat", latent_file.from_result(res, "m.safetensors"))
    assert path.suffix == ".npz"
    back = latent_file.load(path)
    assert torch.equal(back.ws, res.ws) and back.model == "m.safetensors"
    assert set(back.weight_delta) == set(res.weight_delta)
    assert all(torch.equal(back.weight_delta[k], v) for k, v in res.weight_delta.items())
    assert back.info["psnr"] == round(res.psnr, 3)

    ed = GanEditor(G)
    assert np.array_equal(ed.set_projection(res), res.image)
    sess = ed.session(from_pairs([((10, 10), (13, 10))]), ed.default_config(max_steps=3))
    sess.run()
    assert not np.array_equal(ed.image(), res.image)  # the drag changed the projected image
    assert np.array_equal(ed.reset(), res.image)  # and reset goes back to it, with the tuned weights
    ed.generate(1)
    assert ed.G is ed.base_G and not ed.weight_delta  # a sample uses the loaded weights again


def test_cli_project_then_edit(G, known, tmp_path, capsys):
    img, _ = known
    model = tmp_path / "tiny.safetensors"
    save_native(G, model)
    photo = np.zeros((40, 48, 3), np.uint8)
    photo[4:36, 8:40] = img  # the generator-size face inside a bigger photo
    Image.fromarray(photo).save(tmp_path / "photo.png")
    lat = tmp_path / "lat.npz"
    rc = main(["project", "--backend", "gan", "--model", str(model), "--image", str(tmp_path / "photo.png"),
               "--box", "8,4,40,36", "--out", str(lat), "--quiet", "--w-steps", "30", "--wplus-steps", "20",
               "--pti-steps", "10", "--set", "init_candidates=8", "--set", "w_avg_samples=128",
               "--report", str(tmp_path / "rep.json")])
    assert rc == 0 and lat.is_file()
    assert "PSNR" in capsys.readouterr().out
    out = tmp_path / "out.png"
    rc = main(["edit", "--backend", "gan", "--latent", str(lat), "--drag", "12,12:15,12", "--steps", "3",
               "--out", str(out), "--quiet", "--image", str(tmp_path / "photo.png"), "--paste-back"])
    assert rc == 0
    res = np.asarray(Image.open(out))
    assert res.shape == photo.shape
    assert np.array_equal(res[:, :8], photo[:, :8])  # outside the crop box: the photo as it was


def test_cli_errors_are_one_line(G, tmp_path, capsys):
    model = tmp_path / "tiny.safetensors"
    save_native(G, model)
    rc = main(["project", "--backend", "gan", "--model", str(model), "--image", str(tmp_path / "none.png"),
               "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and err.count("\n") == 1
    rc = main(["edit", "--backend", "gan", "--latent", str(tmp_path / "none.npz"), "--drag", "1,1:2,2",
               "--out", str(tmp_path / "o.png")])
    assert rc == 2
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    rc = main(["edit", "--backend", "gan", "--latent", str(tmp_path / "bad.npz"), "--drag", "1,1:2,2",
               "--out", str(tmp_path / "o.png")])
    assert rc == 2
    rc = main(["project", "--backend", "gan", "--model", str(model), "--image", str(tmp_path / "none.png"),
               "--out", str(tmp_path / "x.npz"), "--set", "w_steps=-1"])
    assert rc == 2


def test_bench_toy_rendered_reports_projection_with_and_without_pti(capsys):
    import json

    rc = main(["bench", "toy", "--backend", "gan", "--source", "rendered", "--cases", "1",
               "--project-set", "w_steps=2", "--project-set", "wplus_steps=2", "--project-set", "pti_steps=2",
               "--project-set", "init_candidates=4", "--project-set", "w_avg_samples=16", "--set", "max_steps=2",
               "--methods", "stabledrag", "--kinds", "eye_short"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "rendered" and len(out["faces"]) == 1
    face = out["faces"][0]
    assert set(face["no_pti"]) >= {"psnr", "ssim", "part_errors_px", "fits"}
    assert "left_eye" in face["pti"]["part_errors_px"]  # the rendered face's parts were all looked for
    assert out["projection"]["with_pti"]["n"] == 1 and out["projection"]["without_pti"]["n"] == 1
    assert out["settings"]["projection"]["pti_steps"] == 2
    from stabledrag.gan.presets import recommended_overrides

    assert out["model_settings"] == recommended_overrides(None, photo=True) != {}  # the toy GAN's photo settings
    rc = main(["bench", "toy", "--backend", "diffusion", "--source", "rendered", "--cases", "1"])
    assert rc == 2


def test_bench_toy_rendered_refuses_a_bad_pti_min_res_before_projecting(capsys, monkeypatch):
    import stabledrag.bench.toy_projected as tp

    def never(*a, **k):
        raise AssertionError("projected before the settings were checked")

    monkeypatch.setattr(tp, "_project_face", never)
    rc = main(["bench", "toy", "--backend", "gan", "--source", "rendered", "--cases", "1",
               "--project-set", "pti_min_res=12"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "pti_min_res" in err and "[4, 8, 16, 32, 64, 128]" in err and "\n" not in err


def test_bench_toy_rendered_shards_and_resumes_from_its_jsonl(tmp_path, capsys):
    """Faces written by an earlier run with the same settings are read back, not run again; a
    shard runs only its faces; a run with other settings ignores them."""
    import json

    jsonl = tmp_path / "faces.jsonl"
    fast = ["--project-set", "w_steps=2", "--project-set", "wplus_steps=1", "--project-set", "pti_steps=1",
            "--project-set", "init_candidates=2", "--project-set", "w_avg_samples=8", "--set", "max_steps=1",
            "--methods", "stabledrag", "--kinds", "eye_short", "--jsonl", str(jsonl)]

    def bench(*extra):
        assert main(["bench", "toy", "--backend", "gan", "--source", "rendered", "--cases", "2", *fast, *extra]) == 0
        return json.loads(capsys.readouterr().out)

    first = bench("--shard", "1/2")
    assert [f["face"] for f in first["faces"]] == [1] and first["faces_reused"] == []
    assert len(jsonl.read_text().splitlines()) == 1
    both = bench()
    assert [f["face"] for f in both["faces"]] == [0, 1] and both["faces_reused"] == [1]
    assert both["faces"][1] == first["faces"][0]  # read back as written
    assert len(jsonl.read_text().splitlines()) == 2
    again = bench()
    assert again["faces_reused"] == [0, 1] and again["faces"] == both["faces"]
    assert again["drags"]["overall"] == both["drags"]["overall"]
    assert len(jsonl.read_text().splitlines()) == 2
    assert bench("--cases", "1")["faces_reused"] == [0]  # only the faces this run asks for
    other = bench("--project-set", "pti_steps=2")  # other settings: nothing reused
    assert other["faces_reused"] == [] and len(jsonl.read_text().splitlines()) == 4
    assert bench("--set", "max_steps=2")["faces_reused"] == []  # another drag config, too
    # a row cut short by a process that died mid-write is skipped, and the next row is not glued to it
    jsonl.write_text(jsonl.read_text() + '{"face": 0, "trunc')
    assert bench()["faces_reused"] == [0, 1]
    lines = jsonl.read_text().splitlines()
    assert lines[-1].startswith('{"face": 0, "trunc') and len(lines) == 7  # nothing new was needed
    assert bench("--project-set", "pti_steps=3", "--cases", "1")["faces_reused"] == []
    assert json.loads(jsonl.read_text().splitlines()[-1])["face"] == 0  # its own line after the cut one
    assert main(["bench", "toy", "--backend", "gan", "--source", "rendered", "--shard", "2/2"]) == 2
    assert main(["bench", "toy", "--backend", "gan", "--jsonl", str(jsonl)]) == 2  # not without --source rendered


def test_bench_toy_rendered_projection_cache_skips_projecting(tmp_path, capsys, monkeypatch):
    """`--projection-cache DIR`: the first run writes one file per face; a run with other drag
    settings reads them instead of projecting (the same projection rows); other projection settings
    or a damaged file project again."""
    import json

    from stabledrag.gan import projection

    cache = tmp_path / "cache"
    fast = ["--project-set", "w_steps=2", "--project-set", "wplus_steps=1", "--project-set", "pti_steps=1",
            "--project-set", "init_candidates=2", "--project-set", "w_avg_samples=8", "--methods", "stabledrag",
            "--kinds", "eye_short", "--projection-cache", str(cache)]

    def bench(*extra):
        assert main(["bench", "toy", "--backend", "gan", "--source", "rendered", "--cases", "2", *fast, *extra]) == 0
        return json.loads(capsys.readouterr().out)

    first = bench("--set", "max_steps=2")
    assert len(list(cache.glob("*.npz"))) == 2
    real = projection.project

    def refuse(*a, **k):
        raise AssertionError("projected although the cache has the face")

    monkeypatch.setattr(projection, "project", refuse)
    assert bench("--set", "max_steps=3")["faces"] == first["faces"]  # as written (PSNR, part errors, seconds)
    with pytest.raises(AssertionError, match="projected although"):
        bench("--project-set", "pti_steps=2")  # other projection settings: not reused
    monkeypatch.setattr(projection, "project", real)
    (next(cache.glob("*.npz"))).write_bytes(b"damaged")
    def timeless(faces):
        return [{k: v for k, v in f.items() if not k.startswith("seconds")} for f in faces]

    again = bench("--set", "max_steps=2")  # a damaged file: projected again (same numbers, other timings)
    assert timeless(again["faces"]) == timeless(first["faces"])
    assert main(["bench", "toy", "--backend", "gan", "--projection-cache", str(cache)]) == 2  # rendered only


def test_projection_cache_files_give_back_the_exact_start(G, known, tmp_path):
    """A cached face's W+, weight delta and tuned image come back bit for bit, and the editor's
    image from them is the one an uncached run drags from."""
    from stabledrag.bench import toy_projected as tp

    img, _ = known
    res = project(G, np.roll(img, 2, axis=0), ProjectionConfig(**{**FAST, "pti_steps": 5}), use_cache=False)
    tuned = tp._Tuned(res.ws, dict(res.weight_delta), res.image)
    path = tp._cache_file(str(tmp_path), "sha", {"pti_steps": 5}, 3, 1)
    assert path != tp._cache_file(str(tmp_path), "sha", {"pti_steps": 6}, 3, 1)
    tp._save_projection(path, {"face": 1, "pti": {"psnr": 30.0}}, tuned)
    row, back = tp._load_projection(path)
    assert row == {"face": 1, "pti": {"psnr": 30.0}} and np.array_equal(back.image, res.image)
    assert torch.equal(back.ws, res.ws) and back.weight_delta.keys() == res.weight_delta.keys()
    assert all(torch.equal(back.weight_delta[k], v) for k, v in res.weight_delta.items())
    a, b = GanEditor(G), GanEditor(G)
    assert np.array_equal(a.set_projection(back), b.set_projection(res))
    assert tp._load_projection(tmp_path / "none.npz") is None
    (tmp_path / "file").write_text("x")
    tp._save_projection(tmp_path / "file" / "face.npz", {"face": 1}, tuned)  # unwritable: logged, not raised
    assert not (tmp_path / "file" / "face.npz").exists()


def _pti_with_and_without(G, known, **term):
    """The known image shifted 3 px, projected with plain pivotal tuning and with `term`
    (ProjectionConfig fields); both must fit it better than their latent alone. Returns (target,
    the shared settings, plain result, result with the term)."""
    img, _ = known
    target = np.roll(img, 3, axis=1)
    common = {**FAST, "pti_steps": 60, "pti_lr": 1e-2}
    plain = project(G, target, ProjectionConfig(**common), use_cache=False)
    other = project(G, target, ProjectionConfig(**common, **term), use_cache=False)
    assert plain.psnr > plain.psnr_before_pti + 0.5 and other.psnr > other.psnr_before_pti + 0.5
    return target, common, plain, other


def _toward_w_samples(G, ws, reach, g):
    """16 latents `reach` of the way from `ws` towards mapped random z (from generator `g`)."""
    w_z = G.mapping(torch.randn(16, G.z_dim, generator=g), None)[:, :1]
    return ws + reach * (w_z - ws)


def test_pti_locality_keeps_the_tuned_generator_like_the_original_away_from_the_pivot(G, known):
    """PTI's locality term: with it, latents between the pivot and random samples of W draw what the
    original generator draws there much more closely than after plain pivotal tuning, at a small
    cost in fidelity at the pivot itself; the setting is checked."""
    _, _, plain, local = _pti_with_and_without(G, known, pti_locality_weight=1.0)
    g = torch.Generator().manual_seed(7)
    away = []
    for res in (plain, local):
        tuned = apply_weight_delta(G, res.weight_delta)
        with torch.no_grad():
            w_r = _toward_w_samples(G, res.ws, 0.5, g)
            away.append(float((tuned.synthesis(w_r)[0] - G.synthesis(w_r)[0]).abs().mean()))
    assert away[1] < 0.8 * away[0]  # without the term both runs are the same (same seed)
    with pytest.raises(ValueError):
        ProjectionConfig(pti_locality_weight=-1.0)
    with pytest.raises(ValueError):
        ProjectionConfig(pti_locality_reach=0.0)


def test_pti_change_term_keeps_how_the_image_changes_near_the_pivot(G, known):
    """The change term: with it, moving the latent a little from the pivot changes the tuned
    generator's image as it changed the original's, much more closely than after plain pivotal
    tuning, while the photo is still fitted; the setting is checked."""
    target, common, plain, kept = _pti_with_and_without(G, known, pti_change_weight=1.0)
    # the reference: the generator as tuning began (the W phase's noise maps), i.e. without PTI
    ref = apply_weight_delta(G, project(G, target, ProjectionConfig(**{**common, "pti_steps": 0}),
                                        use_cache=False).weight_delta)
    g = torch.Generator().manual_seed(7)
    off = []
    for res in (plain, kept):
        tuned = apply_weight_delta(G, res.weight_delta)
        with torch.no_grad():
            w_r = _toward_w_samples(G, res.ws, 0.1, g)
            change = tuned.synthesis(w_r)[0] - tuned.synthesis(res.ws)[0]
            change0 = ref.synthesis(w_r)[0] - ref.synthesis(res.ws)[0]
            off.append(float((change - change0).abs().mean() / change0.abs().mean()))
    assert off[1] < 0.8 * off[0]  # without the term both runs are the same (same seed)
    # off (weight 0), the term draws nothing: its reach changes nothing
    same = project(G, target, ProjectionConfig(**common, pti_change_reach=0.5), use_cache=False)
    assert torch.equal(same.ws, plain.ws) and all(torch.equal(same.weight_delta[k], v)
                                                  for k, v in plain.weight_delta.items())
    with pytest.raises(ValueError):
        ProjectionConfig(pti_change_weight=-1.0)
    with pytest.raises(ValueError):
        ProjectionConfig(pti_change_reach=1.5)


def test_pti_min_res_tunes_only_the_finer_blocks(G, known):
    """pti_min_res: the coarse blocks (and the constant input) keep their trained weights, the finer
    ones fit the photo (still better than the latent alone); a value that is not a block resolution
    is refused before any projection work."""
    _, common, plain, fine = _pti_with_and_without(G, known, pti_min_res=16)
    params = {"synthesis." + n for n, _ in G.synthesis.named_parameters()}
    coarse = {n for n in params if n.startswith(("synthesis.b4.", "synthesis.b8."))}
    assert coarse & set(plain.weight_delta)  # plain PTI changes the coarse blocks too
    assert not coarse & set(fine.weight_delta)
    assert {n for n in params - coarse} & set(fine.weight_delta)
    with pytest.raises(ValueError):
        ProjectionConfig(pti_min_res=-1)
    seen = []
    with pytest.raises(UserError, match=r"pti_min_res.*\[4, 8, 16, 32\]"):
        project(G, known[0], ProjectionConfig(**common, pti_min_res=12), progress=seen.append, use_cache=False)
    assert seen == []


def test_error_map_is_the_local_colour_distance_scaled_to_its_maximum():
    """error_map: 0 where the images agree; one pixel off spreads equally over its 3x3 neighbours
    (the maximum, 1), a pixel off half as much elsewhere gives half; no gradient."""
    from stabledrag.gan.projection import error_map

    target = torch.zeros(1, 3, 12, 12)
    img = target.clone()
    assert float(error_map(img, target).abs().max()) == 0.0
    img[0, 1, 3, 3] = 2.0
    img[0, 0, 8, 8] = -1.0
    e = error_map(img.requires_grad_(True), target)
    assert e.shape == (1, 1, 12, 12) and not e.requires_grad
    assert torch.allclose(e[0, 0, 2:5, 2:5], torch.ones(3, 3))
    assert torch.allclose(e[0, 0, 7:10, 7:10], torch.full((3, 3), 0.5))
    assert float(e[0, 0, 0, 8]) == 0.0 and float(e[0, 0, 5, 5]) == 0.0


def test_pti_focus_weight_fits_a_part_the_latent_lacks(G, known):
    """pti_focus_weight: pivotal tuning weighs pixels by how far they still are from the photo, so a
    small part that the latent does not draw (a bright square here) is reproduced more closely in the
    same number of steps than by plain tuning; negative values are refused."""
    img, _ = known
    target = img.copy()
    target[12:17, 12:17] = (255, 255, 255)
    common = {**FAST, "pti_steps": 40, "pti_lr": 1e-2}
    errs = []
    for focus in (0.0, 10.0):
        res = project(G, target, ProjectionConfig(**common, pti_focus_weight=focus), use_cache=False)
        part = np.abs(res.image[12:17, 12:17].astype(float) - 255).mean()
        errs.append(part)
        assert res.config.pti_focus_weight == focus and res.psnr > res.psnr_before_pti
    assert errs[1] < 0.8 * errs[0]
    with pytest.raises(ValueError):
        ProjectionConfig(pti_focus_weight=-1.0)


def test_refine_config_is_one_more_steps_press():
    """A "More steps" press: with PTI only the weights move (no W+ steps), at half the PTI learning
    rate, with at least the focus weight; a higher focus weight is kept; without PTI, W+ at a
    quarter of its learning rate and no focus."""
    from stabledrag.gan.projection import REFINE_FOCUS_WEIGHT, refine_config

    base = ProjectionConfig(**FAST, pti_lr=0.02, refine_passes=2)
    press = refine_config(dataclasses.replace(base, pti_steps=6), True)
    assert (press.wplus_steps, press.pti_steps, press.pti_lr, press.refine_passes) == (0, 6, 0.01, 0)
    assert press.pti_focus_weight == REFINE_FOCUS_WEIGHT > 0
    assert refine_config(dataclasses.replace(base, pti_focus_weight=30.0), True).pti_focus_weight == 30.0
    plain = refine_config(base, False)
    assert (plain.wplus_lr, plain.wplus_steps, plain.refine_passes) == (base.wplus_lr * 0.25, base.wplus_steps, 0)


def test_bench_toy_rendered_presses_more_steps_on_a_face_that_misses_or_always(tmp_path, capsys, monkeypatch):
    """`--more-steps N`: a face whose parts miss after the projection gets up to N presses
    (refine_config, continuing from its projection); the row keeps the first projection's scores in
    "pti_first" and the last press's in "pti"; the presses are cached too; a face that fits gets
    none; without the flag nothing is pressed."""
    import json

    import stabledrag.bench.toy_projected as tp
    from stabledrag.gan import projection

    cache = tmp_path / "cache"
    fast = ["bench", "toy", "--backend", "gan", "--source", "rendered", "--cases", "1",
            "--project-set", "w_steps=2", "--project-set", "wplus_steps=1", "--project-set", "pti_steps=2",
            "--project-set", "init_candidates=2", "--project-set", "w_avg_samples=8", "--projection-only",
            "--projection-cache", str(cache)]
    configs = []
    real = projection.project

    def spy(G, image, config=None, **k):
        configs.append((config, k.get("init") is not None))
        return real(G, image, config, **k)

    monkeypatch.setattr(projection, "project", spy)
    assert main(fast) == 0
    plain = json.loads(capsys.readouterr().out)
    assert not plain["faces"][0]["pti"]["fits"]  # 2 tuning steps draw no face
    assert "more_steps" not in plain["faces"][0] and plain["projection"]["more_steps_pressed"] == {}
    configs.clear()
    assert main(fast + ["--more-steps", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    face = out["faces"][0]
    assert face["more_steps"] == 2 and out["projection"]["more_steps_pressed"] == {"0": 2}
    assert face["pti_first"] == plain["faces"][0]["pti"] and face["seconds_more_steps"] > 0
    assert out["projection"]["with_pti_before_more_steps"] == plain["projection"]["with_pti"]
    assert len(configs) == 2 and all(init for _, init in configs)  # the projection itself came from the cache
    assert configs[0][0].pti_focus_weight == projection.REFINE_FOCUS_WEIGHT and configs[0][0].pti_steps == 1
    assert len(list(cache.glob("*.more*.npz"))) == 2
    configs.clear()
    assert main(fast + ["--more-steps", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"] == out["faces"] and configs == []  # presses cached
    monkeypatch.setattr(tp, "_fits", lambda errors: True)  # a face that fits is not pressed
    assert main(fast[:-2] + ["--projection-cache", str(tmp_path / "other"), "--more-steps", "2"]) == 0
    assert "more_steps" not in json.loads(capsys.readouterr().out)["faces"][0]
    assert main(fast[:-2] + ["--projection-cache", str(tmp_path / "other"), "--more-steps", "2",
                             "--more-steps-when", "always"]) == 0  # ... unless pressed always
    assert json.loads(capsys.readouterr().out)["faces"][0]["more_steps"] == 2
    assert main(["bench", "toy", "--backend", "gan", "--more-steps", "1"]) == 2  # rendered only
    assert main(fast + ["--more-steps-when", "always"]) == 2  # says when to press, but no presses
    assert main(fast + ["--more-steps", "1", "--project-set", "pti_steps=0"]) == 2  # nothing to continue
    assert "pti_steps > 0" in capsys.readouterr().err


def test_refine_passes_are_more_steps_presses_built_in(G, known):
    """refine_passes=1: the projection, then one "More steps" press continuing from it, bit for
    bit; the result keeps the first projection's latent-alone scores, carries its own settings and
    reports the press as the "refine" phase."""
    from stabledrag.gan.projection import more_steps_config

    img, _ = known
    target = np.roll(img, 3, axis=1)
    cfg = ProjectionConfig(**{**FAST, "pti_steps": 8, "pti_lr": 1e-2})
    first = project(G, target, cfg, use_cache=False)
    pressed = project(G, target, more_steps_config(cfg), init=first, use_cache=False)
    seen = []
    both = project(G, target, dataclasses.replace(cfg, refine_passes=1), progress=seen.append, use_cache=False)
    assert torch.equal(both.ws, pressed.ws) and np.array_equal(both.image, pressed.image)
    assert set(both.weight_delta) == set(pressed.weight_delta)
    assert all(torch.equal(both.weight_delta[k], v) for k, v in pressed.weight_delta.items())
    assert both.psnr == pressed.psnr > first.psnr
    assert both.psnr_before_pti == first.psnr_before_pti and np.array_equal(both.image_before_pti,
                                                                             first.image_before_pti)
    assert both.config.refine_passes == 1 and "refine" in both.seconds
    assert [p.phase for p in seen if p.step == 0] == ["project_w", "project_wplus", "pti", "refine"]
    assert max(p.step for p in seen if p.phase == "refine") == 4  # half the PTI steps
    # without pivotal tuning a pass refines W+: the latent alone is the result itself
    no_pti = project(G, target, ProjectionConfig(**FAST, refine_passes=1), use_cache=False)
    assert no_pti.psnr_before_pti == no_pti.psnr and np.array_equal(no_pti.image_before_pti, no_pti.image)
    with pytest.raises(ValueError):
        ProjectionConfig(refine_passes=-1)
