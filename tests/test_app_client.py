"""The app served in-process and driven through its API with gradio_client: a GAN drag and a Diff
drag on tiny random models saved to a temporary folder (the app's model paths are arguments), and
both again on the bundled toy models with the default menus (as `python app.py` starts).
The `served` fixture (tiny models) is in conftest.py."""

import os

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")

from app_server import output_index, serve  # noqa: E402  (tests/app_server.py)


def _read(file_data):
    if isinstance(file_data, dict) and file_data.get("__type__") == "update":  # the download button's
        file_data = file_data["value"]  # file comes with its interactivity (disabled without a file)
    assert isinstance(file_data, dict) and os.path.isfile(file_data["path"]), file_data
    return np.asarray(Image.open(file_data["path"]).convert("RGB"))


def test_gan_drag_through_the_api(served):
    new_client, _ = served
    c = new_client()
    status = output_index(c, "/gan_start", "Status")
    result = output_index(c, "/gan_start", "Current image")
    gen = c.predict(seed=3, psi=0.7, api_name="/gan_generate")
    assert gen[status].startswith("Generated seed 3")
    before = _read(gen[result])
    pts = c.predict("10,12:16,12", api_name="/gan_points")
    assert "1 drag pair" in pts[status]

    job = c.submit(region=None, max_steps=12, preview_every=3, api_name="/gan_start")
    job.result()
    updates = job.outputs()
    texts = [u[status] for u in updates]
    assert sum(t.startswith("Dragging") for t in texts) >= 3, texts  # frames streamed while running
    assert texts[-1].startswith(("Reached", "Ran out")), texts[-1]
    after = _read(updates[-1][result])
    assert after.shape == before.shape
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 0.5, "the drag must change the image"

    reset = c.predict(api_name="/gan_reset")
    assert np.array_equal(_read(reset[result]), before)


def test_diff_drag_through_the_api(served):
    new_client, root = served
    c = new_client()
    status = output_index(c, "/diff_run", "Status")
    slider = output_index(c, "/diff_run", "Before / after (live preview while dragging)")
    download = output_index(c, "/diff_run", "Download result (PNG)")
    rng = np.random.default_rng(0)
    src = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(src).save(root / "input.png")
    loaded = c.predict(gradio_client.handle_file(str(root / "input.png")), api_name="/diff_load_image")
    assert loaded[status].startswith("Loaded")
    c.predict("20,30:40,30", api_name="/diff_points")

    job = c.submit(region=None, prompt="a photo", lora_steps=2, ddim_steps=10, max_steps=3, preview_every=1,
                   api_name="/diff_run")
    job.result()
    updates = job.outputs()
    texts = [u[status] for u in updates]
    for phase in ("Fine-tuning the identity LoRA", "DDIM inversion", "Dragging", "Denoising"):
        assert any(t.startswith(phase) for t in texts), (phase, texts)
    assert texts[-1].startswith("Done"), texts[-1]
    before, after = updates[-1][slider]
    out = _read(after)
    assert out.shape == src.shape  # same size as the input
    assert np.array_equal(_read(before), src)
    assert np.array_equal(_read(updates[-1][download]), out)

    # the session (image, points, settings, result) survives an export / import into a new session
    session = output_index(c, "/diff_export", "Exported session")
    exported = c.predict(prompt="a photo", lora_steps=2, api_name="/diff_export")[session]
    other = new_client()
    imported = other.predict(gradio_client.handle_file(exported["path"]), api_name="/diff_import")
    assert imported[status].startswith("Session imported: 1 drag pair"), imported[status]
    points = output_index(other, "/diff_import", "handle x,y : target x,y (image pixels), pairs separated by spaces")
    assert imported[points] == "20,30:40,30"
    assert imported[output_index(other, "/diff_import", "LoRA steps")] == 2


def test_api_mistakes_come_back_as_messages(served):
    new_client, root = served
    c = new_client()
    status = output_index(c, "/diff_run", "Status")
    r = c.predict(region=None, prompt="", api_name="/diff_run")
    assert "upload" in r[status].lower()
    (root / "notes.png").write_text("not really a png")
    r = c.predict(gradio_client.handle_file(str(root / "notes.png")), api_name="/diff_load_image")
    assert "not a PNG, JPEG, WebP" in r[status]
    r = c.predict("1,2:", api_name="/gan_points")
    assert "generate" in r[status].lower()
    # a model outside the menu is refused before any handler runs (no path reaches the loader)
    with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
        c.predict(model="../../etc/passwd", seed=1, psi=0.7, api_name="/gan_generate")


@pytest.fixture(scope="module")
def served_bundled():
    """(client factory, GAN label, SD label) for an app started as `python app.py` would be: no model
    arguments, so the menus default to the bundled toy GAN and toy SD."""
    from stabledrag.diffusion.engine import TOY_SD_LABEL
    from stabledrag.gan.engine import TOY_GAN_LABEL

    with serve(["--device", "cpu"]) as new_client:
        yield new_client, TOY_GAN_LABEL, TOY_SD_LABEL


@pytest.mark.slow
def test_gan_and_diff_drags_on_the_bundled_models(served_bundled):
    """A GAN drag (an eye moved up) and a Diff drag (a toy example face) with the default menus."""
    from stabledrag.toy.detect import detect

    new_client, gan_label, sd_label = served_bundled
    c = new_client()
    status, result = output_index(c, "/gan_start", "Status"), output_index(c, "/gan_start", "Current image")
    gen = c.predict(model=gan_label, seed=0, psi=0.7, api_name="/gan_generate")
    before = _read(gen[result])
    k = 128 / before.shape[1]  # the page shows the 128 px image enlarged; points are in image pixels
    eye = np.array(detect(before).right_eye) * k
    pts = c.predict(f"{eye[0]:.0f},{eye[1]:.0f}:{eye[0]:.0f},{eye[1] - 6:.0f}", api_name="/gan_points")
    assert "1 drag pair" in pts[status], pts[status]
    job = c.submit(region=None, max_steps=60, preview_every=10, api_name="/gan_start")
    job.result()
    final = job.outputs()[-1]
    assert final[status].startswith(("Reached", "Ran out")), final[status]
    moved = np.array(detect(_read(final[result])).right_eye) * k
    assert moved[1] < eye[1] - 2, (eye, moved)  # the eye went up

    d_status = output_index(c, "/diff_run", "Status")
    slider = output_index(c, "/diff_run", "Before / after (live preview while dragging)")
    face = os.path.join(os.path.dirname(__file__), "..", "assets", "examples", "toy_face_1.png")
    loaded = c.predict(gradio_client.handle_file(face), api_name="/diff_load_image")
    assert loaded[d_status].startswith("Loaded"), loaded[d_status]
    src = np.asarray(Image.open(face).convert("RGB"))
    c.predict("60,50:60,44", api_name="/diff_points")
    job = c.submit(region=None, model=sd_label, prompt="a cartoon face", lora_steps=2, ddim_steps=10,
                   max_steps=3, api_name="/diff_run")
    job.result()
    final = job.outputs()[-1]
    assert final[d_status].startswith("Done"), final[d_status]
    out = _read(final[slider][1])
    assert out.shape == src.shape and np.abs(out.astype(int) - src.astype(int)).mean() > 0.5
