"""Issue 13 through the served app's API (gradio_client): queue fairness (#4), Stop bookkeeping
(#16) and the races of #17 (a result lands only on the input it was made from)."""

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")

from app_server import output_index  # noqa: E402  (tests/app_server.py; `served` is in conftest.py)


def _wait_for(job, status_index, prefix, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(str(o[status_index]).startswith(prefix) for o in job.outputs()):
            return
        if job.done():
            break
        time.sleep(0.1)
    raise AssertionError(f"never saw {prefix!r}: {[o[status_index] for o in job.outputs()]}")


def _session(client, endpoint, **kw):
    exported = client.predict(api_name=endpoint, **kw)[output_index(client, endpoint, "Exported session")]
    return zipfile.ZipFile(exported["path"])


def _gan_client_with_points(served, seed, points):
    """A new client of the `served` app with GAN seed `seed` generated (psi 0.7) and the drag pairs
    `points` ("hx,hy:tx,ty ...") set; returns (client, position of the Status output)."""
    c = served[0]()
    c.predict(seed=seed, psi=0.7, api_name="/gan_generate")
    c.predict(points, api_name="/gan_points")
    return c, output_index(c, "/gan_start", "Status")


def test_cheap_actions_of_another_client_succeed_while_one_floods(served):
    new_client, _ = served
    a, b = new_client(), new_client()
    status = output_index(a, "/gan_start", "Status")
    a.predict(seed=3, psi=0.7, api_name="/gan_generate")
    b.predict(seed=4, psi=0.7, api_name="/gan_generate")
    a.predict("10,12:16,12", api_name="/gan_points")
    jobs = [a.submit(region=None, max_steps=100, preview_every=20, api_name="/gan_start") for _ in range(6)]
    time.sleep(1.0)
    # meanwhile another client's cheap actions are answered, not refused or queued behind the runs
    r = b.predict("5,5:9,5", api_name="/gan_points")
    assert r[status].startswith("1 drag pair(s) ready"), r[status]
    r = b.predict(api_name="/gan_clear")
    assert r[status].startswith("Click a handle"), r[status]
    assert sum(not j.done() for j in jobs) >= 2  # a's runs were still going
    # the flood is held to 1 running + 2 waiting; the rest was refused at once
    refused = 0
    for j in jobs:
        try:
            j.result(timeout=120)
        except Exception as e:
            assert "queue" in str(e).lower(), e
            refused += 1
    assert refused == 3


def test_stop_while_idle_does_not_stop_the_next_start(served):
    # issue 13 #16: a Stop sent while idle made the next Start stop at step 0
    c, status = _gan_client_with_points(served, seed=5, points="10,12:16,12")
    c.predict(api_name="/gan_stop")
    c.predict(api_name="/gan_stop")
    r = c.predict(region=None, max_steps=4, preview_every=2, api_name="/gan_start")
    assert "after 4 steps" in r[status] or r[status].startswith("Reached"), r[status]


def test_reset_during_a_gan_drag_stops_it_and_page_and_session_agree(served):
    # issue 13 #17: Reset during one's own drag let the drag continue with the old points
    c, status = _gan_client_with_points(served, seed=6, points="10,12:20,12")
    job = c.submit(region=None, max_steps=600, preview_every=2, api_name="/gan_start")
    _wait_for(job, status, "Dragging: step 2 ")
    r = c.predict(api_name="/gan_reset")
    assert r[status].startswith("Back to the generated image"), r[status]
    job.result(timeout=60)
    final = job.outputs()[-1][status]
    assert final.startswith("The drag was stopped because the image or the points changed"), final
    with _session(c, "/gan_export") as z:
        w0 = np.load(io.BytesIO(z.read("latent0.npy")))
        w = np.load(io.BytesIO(z.read("latent.npy")))
        assert np.array_equal(w, w0)  # the reset image, not a dragged latent written afterwards
        import json

        assert json.loads(z.read("session.json"))["points"] == [[10, 12], [20, 12]]


def test_new_image_during_a_diff_run_drops_that_runs_result(served):
    # issue 13 #17: uploading image B while a run on A went on stored A's result beside B
    new_client, root = served
    c = new_client()
    status = output_index(c, "/diff_run", "Status")
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / f"{name}.png")
    c.predict(gradio_client.handle_file(str(root / "a.png")), api_name="/diff_load_image")
    c.predict("20,30:40,30", api_name="/diff_points")
    job = c.submit(region=None, prompt="", lora_steps=0, ddim_steps=5, max_steps=300, preview_every=1,
                   api_name="/diff_run")
    _wait_for(job, status, "Dragging", timeout=120)
    loaded = c.predict(gradio_client.handle_file(str(root / "b.png")), api_name="/diff_load_image")
    assert loaded[status].startswith("Loaded"), loaded[status]
    job.result(timeout=120)
    assert job.outputs()[-1][status].startswith("A new image was loaded while the edit ran"), job.outputs()[-1][status]
    with _session(c, "/diff_export", prompt="") as z:
        assert "result.png" not in z.namelist()
        img = np.asarray(Image.open(io.BytesIO(z.read("image.png"))).convert("RGB"))
    assert np.array_equal(img, np.asarray(Image.open(root / "b.png").convert("RGB")))


def test_stop_registry_is_per_job_and_bounded():
    # issue 13 #16: many Stops/Starts with made-up session ids must not push a real job out of reach
    from types import SimpleNamespace

    from stabledrag.webapp.ui import CancelTokens

    tokens = CancelTokens()
    real = SimpleNamespace(session_hash="real")
    job = tokens.begin(real, "gan")
    assert not tokens.stop(SimpleNamespace(session_hash="idle"), "gan")  # nothing running: nothing armed
    for i in range(CancelTokens.MAX_ARMED + 50):
        tokens.arm(SimpleNamespace(session_hash=f"fake{i}"), "gan")
        tokens.stop(SimpleNamespace(session_hash=f"other{i}"), "gan")
    assert len(tokens) <= CancelTokens.MAX_ARMED + 1
    assert tokens.stop(real, "gan") and job.cancelled
    tokens.end(real, "gan", job)
    nxt = tokens.begin(real, "gan")
    assert not nxt.cancelled  # a Stop of the last job does not carry over to the next one
