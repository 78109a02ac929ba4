"""The GAN tab's "Upload a photo": project, more steps, drag with the tuned weights, paste-back
download, session round trip (latent + weight delta + photo) - on a tiny random generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stabledrag.errors import UserError
from stabledrag.gan.networks import Generator, GeneratorConfig, to_uint8
from stabledrag.gan.projection import ProjectionConfig, clear_cache
from stabledrag.progress import CancelToken
from stabledrag.webapp import gan_handlers as gh
from stabledrag.webapp import gan_projection as gp
from stabledrag.webapp.state import GanState


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=512, channel_max=32,
                                  mapping_layers=2))
    return G


@pytest.fixture(autouse=True)
def fast_projection(monkeypatch):
    def cfg(spec=None, pti: bool = True, steps_scale: float = 1.0):
        return ProjectionConfig(w_steps=max(1, int(20 * steps_scale)), wplus_steps=int(20 * steps_scale),
                                pti_steps=int(10 * steps_scale) if pti else 0, pti_lr=3e-3, init_candidates=8,
                                w_avg_samples=64)

    monkeypatch.setattr(gp, "projection_config", cfg)
    clear_cache()


@pytest.fixture(scope="module")
def photo(G) -> np.ndarray:
    """A 40 x 64 'photo' with a generator image in its centred square, plus a border."""
    with torch.no_grad():
        img, _ = G.synthesis(G.mapping(G.seed_to_z(3), None, truncation_psi=0.7))
    face = np.asarray(Image.fromarray(to_uint8(img)).resize((40, 40)))
    out = np.full((40, 64, 3), 30, np.uint8)
    out[:, 12:52] = face
    return out


def test_upload_projects_then_drags_and_downloads_into_the_photo(G, photo):
    s = GanState()
    views = list(gp.project_photo(s, "tiny", photo, G))
    assert views[-1].state is s and s.projection and s.projection["pti"]
    assert "PSNR" in views[-1].status and "PSNR" in gp.quality_text(s)
    assert s.image.shape == (32, 32, 3) and s.crop == [12, 0, 52, 40, 64, 40, 32]
    assert s.weight_delta and all(v.dtype == np.float32 for v in s.weight_delta.values())
    assert any(isinstance(v.progress, str) and "Projecting" in v.progress for v in views[:-1])  # live progress
    projected = s.image.copy()
    dl = np.asarray(Image.open(views[-1].download))
    assert dl.shape == photo.shape and np.array_equal(dl[:, :12], photo[:, :12])

    # the drag runs on the tuned generator: its first frame is the projected image itself
    s.clicks = [(10, 12), (14, 12)]
    frames = list(gh.run_drag(s, None, gh.GanSettings(max_steps=4, preview_every=2), G))
    assert not np.array_equal(s.image, projected)
    out = np.asarray(Image.open(frames[-1].download))
    assert out.shape == photo.shape  # pasted back into the full photo

    gh.reset(s)
    assert np.array_equal(s.image, projected)

    # "More steps" continues from the projection (never worse by much), weighted towards where the
    # image is still off, keeps the latent-alone scores (the latent does not move) and drops the drag
    before, alone = s.projection["psnr"], s.projection["psnr_before_pti"]
    more = list(gp.more_steps(s, G))
    assert more[-1].state is s and s.projection["psnr"] >= before - 0.5 and s.clicks == []
    assert s.projection["config"]["pti_focus_weight"] > 0 and s.projection["psnr_before_pti"] == alone
    assert f"{alone:.2f} dB" in gp.quality_text(s)
    assert any("Refining where it is still off" in (v.progress or "") for v in more[:-1])
    once = dict(s.weight_delta)
    list(gp.more_steps(s, G))  # a second press continues again (not the first press's cached result)
    assert set(s.weight_delta) == set(once) and any(not np.array_equal(s.weight_delta[k], once[k]) for k in once)
    assert "accepted" in gp.accept(s).status

    # a generated sample forgets the photo, and uses the loaded weights again
    gh.generate(s, "tiny", 1, 0.7, G)
    assert s.photo is None and not s.weight_delta and gp.quality_text(s) == ""


def test_session_round_trip_keeps_the_projected_latent_and_weight_delta(G, photo):
    s = GanState()
    list(gp.project_photo(s, "tiny", photo, G))
    s.clicks = [(10, 12), (14, 12)]
    list(gh.run_drag(s, None, gh.GanSettings(max_steps=3, preview_every=3), G))
    blob = open(gh.export_session(s, gh.GanSettings()).session_file, "rb").read()
    r = GanState()
    v = gh.import_session(r, blob, ["tiny"], lambda label: G)
    assert np.allclose(r.w0, s.w0) and np.allclose(r.w, s.w)
    assert set(r.weight_delta) == set(s.weight_delta)
    assert all(np.array_equal(r.weight_delta[k], s.weight_delta[k]) for k in s.weight_delta)
    assert np.array_equal(r.photo, photo) and r.crop == s.crop and r.projection == s.projection
    assert np.array_equal(r.image, s.image) and np.array_equal(r.image0, s.image0)  # rendered with the delta
    assert "projected photo" in v.status
    # a drag continues on the restored session with the tuned weights
    list(gh.run_drag(r, None, gh.GanSettings(max_steps=2, preview_every=2), G))
    assert not np.allclose(r.w, s.w)


def test_stop_keeps_the_previous_image_and_bad_uploads_are_refused(G, photo):
    s = GanState()
    gh.generate(s, "tiny", 2, 0.7, G)
    before = s.image.copy()
    token = CancelToken()
    run = gp.project_photo(s, "tiny", photo, G, cancel=token)
    next(run)
    token.cancel()
    last = list(run)[-1]
    assert "stopped" in last.status and np.array_equal(s.image, before) and s.projection is None
    with pytest.raises(UserError, match="photo"):
        list(gp.project_photo(GanState(), "tiny", None, G))
    with pytest.raises(UserError, match="usable photo"):
        list(gp.project_photo(GanState(), "tiny", np.zeros((4, 4, 3), np.uint8), G))
    with pytest.raises(UserError, match="Upload a photo"):
        list(gp.more_steps(GanState(), G))


def test_abandoning_the_live_views_stops_the_projection(G, photo):
    token = CancelToken()
    run = gp.project_photo(GanState(), "tiny", photo, G, cancel=token)
    next(run)
    run.close()  # the page went away
    assert token.cancelled


def test_uploaded_photo_bytes_go_through_the_one_image_reader(G, photo):
    """The page sends the file's bytes: a PNG is decoded, an EPS is refused before Pillow sees it."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    assert np.array_equal(gp._read_photo(buf.getvalue()), photo)
    with pytest.raises(UserError, match="not a PNG, JPEG"):
        gp._read_photo(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")


def _page_upload(tmp_path, photo):
    """Build the page on a tiny saved GAN and upload `photo` through its wired `gan_project`
    event, as a browser would. Returns (demo, the model's menu label, the request, a silent
    progress callback, the upload's streamed output lists)."""
    import io
    import os
    from types import SimpleNamespace

    from stabledrag.testing import save_tiny_gan
    from stabledrag.webapp.args import parse_args
    from stabledrag.webapp.ui import build_demo

    gan = save_tiny_gan(tmp_path, resolution=32)
    demo = build_demo(parse_args(["--gan-model", gan, "--models-dir", str(tmp_path / "none"), "--device", "cpu"]))
    upload = next(f.fn for f in demo.fns.values() if f.api_name == "gan_project")
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    request = SimpleNamespace(session_hash="one browser")
    label = f"{os.path.basename(gan)} (--gan-model)"
    quiet = lambda *a, **k: None  # noqa: E731
    return demo, label, request, quiet, list(upload(None, label, buf.getvalue(), False, request, quiet))


def test_the_pages_photo_upload_more_steps_and_stop_run_with_the_apps_stop_tokens(tmp_path, photo):
    """The wired page events (not only the handlers): an upload used to fail with AttributeError
    ('CancelTokens' object has no attribute 'get') after the Stop tokens became per job."""
    from types import SimpleNamespace

    demo, label, request, quiet, outputs = _page_upload(tmp_path, photo)
    fns = {getattr(f.fn, "__name__", ""): f.fn for f in demo.fns.values() if f.fn is not None}
    texts = [v for values in outputs for v in values if isinstance(v, str)]
    assert any(t.startswith("Projected the photo") for t in texts), texts[-3:]
    assert not any("went wrong" in t or "Something" in t for t in texts), texts
    fns["on_stop"](request)  # nothing running: nothing happens
    state = SimpleNamespace()  # the page's State value is the GanState the upload filled in
    for values in outputs:
        for v in values:
            if isinstance(v, GanState):
                state = v
    assert isinstance(state, GanState) and state.projection
    more = list(fns["on_more"](state, label, request, quiet))
    assert any(isinstance(v, str) and "PSNR" in v for values in more for v in values)


def test_another_model_in_the_menu_is_refused_for_the_photo_and_the_sample(G, photo):
    """Start, Compare and More steps on a photo projected into one model, with another model picked
    in the menu since, would apply one model's latent and PTI delta to the other: refused, nothing
    changed; with the photo's own model they run."""
    s = GanState()
    list(gp.project_photo(s, "tiny", photo, G))
    s.clicks = [(10, 12), (14, 12)]
    w, projection = s.w.copy(), dict(s.projection)
    settings = gh.GanSettings(max_steps=2, preview_every=2)
    with pytest.raises(UserError, match="made by 'tiny'.*shows 'other'.*upload the photo again"):
        list(gh.run_drag(s, None, settings, G, model="other"))
    with pytest.raises(UserError, match="made by 'tiny'"):
        list(gh.run_compare(s, None, settings, G, model="other"))
    with pytest.raises(UserError, match="made by 'tiny'"):
        list(gp.more_steps(s, G, model="other"))
    assert np.array_equal(s.w, w) and s.projection == projection
    list(gh.run_drag(s, None, settings, G, model="tiny"))
    assert not np.array_equal(s.w, w)
    gh.generate(s, "tiny", 1, 0.7, G)
    with pytest.raises(UserError, match="press Generate to use 'other'"):
        list(gh.run_drag(s, None, settings, G, model="other"))


def test_the_pages_start_and_more_steps_refuse_another_models_photo_before_loading_it(tmp_path, photo):
    """The page passes the menu's label on: Start and More steps on a photo projected into one
    model, with another label in the menu, show the mismatch (not an unknown-model or load error)."""
    demo, label, request, quiet, outputs = _page_upload(tmp_path, photo)
    by_api = {f.api_name: f for f in demo.fns.values() if f.fn is not None and f.api_name}
    state = [v for values in outputs for v in values if isinstance(v, GanState)][-1]
    state.clicks = [(10, 12), (14, 12)]
    w = state.w.copy()

    def texts(values_list):
        return [v for values in values_list for v in values if isinstance(v, str)]

    more = list(by_api["gan_project_more"].fn(state, "another model", request, quiet))
    assert any(f"made by '{label}'" in t and "'another model'" in t for t in texts(more)), texts(more)[-3:]
    start = by_api["gan_start"]
    inputs = [c.value for c in start.inputs]
    inputs[0], inputs[1], inputs[2] = state, None, "another model"
    ran = list(start.fn(*inputs, request, quiet))
    assert any(f"made by '{label}'" in t for t in texts(ran)), texts(ran)[-3:]
    assert np.array_equal(state.w, w)
