"""The web app's handlers, called directly (no server): clicks, markers, region parsing, messages,
sessions, settings and the GAN tab on a tiny random generator."""

import io
import json
import re
import zipfile

import gradio as gr
import numpy as np
import pytest
import torch

from stabledrag.errors import ModelUnavailableError, UserError
from stabledrag.progress import Cancelled, CancelToken, Progress
from stabledrag.webapp import diff_handlers as dh
from stabledrag.webapp import drawing, masks, messages, runner, session_io, views
from stabledrag.webapp import gan_handlers as gh
from stabledrag.webapp.args import parse_args
from stabledrag.webapp.examples import list_examples, load_example
from stabledrag.diffusion.engine import SD15_LABEL
from stabledrag.webapp.models import Engines, ModelChoice
from stabledrag.webapp.settings_base import BASELINE_LABEL
from stabledrag.webapp.spaces_compat import gpu
from stabledrag.webapp.state import DiffState, GanState, clicks_from_text, clicks_to_text


def sel(x, y):
    """The event object Gradio passes to an Image.select handler for a click at canvas (x, y)."""
    return gr.SelectData(None, {"index": [x, y], "value": None})


def gradient_image(w=128, h=96):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 255 // (w - 1), ys * 255 // (h - 1), np.full_like(xs, 90)], -1).astype(np.uint8)


def loaded_diff_state(w=128, h=96):
    s = DiffState()
    dh.new_image(s, gradient_image(w, h), "a test image", max_side=1024)
    return s


# -- clicks and markers ---------------------------------------------------------------------------------


def test_clicks_map_canvas_pixels_to_image_pixels_and_pair_up():
    s = loaded_diff_state(128, 96)
    assert s.scale == 4  # a 128 px image is shown 4x enlarged
    v = views.add_point(s, sel(4 * 10 + 3, 4 * 20 + 1))
    assert s.clicks == [(10, 20)]
    assert "now click its target" in v.status
    v = views.add_point(s, sel(4 * 30, 4 * 20))
    assert s.clicks == [(10, 20), (30, 20)]
    assert v.points_text == "10,20:30,20"
    assert "1 drag pair" in v.status
    assert v.canvas.shape == (96 * 4, 128 * 4, 3)


def test_markers_are_red_handles_and_blue_targets_at_the_clicked_pixels():
    img = np.full((64, 64, 3), 128, np.uint8)
    canvas = drawing.draw_points(img, [(10, 20), (40, 30)], scale=8)
    hx, hy = int((10 + 0.5) * 8), int((20 + 0.5) * 8)
    tx, ty = int((40 + 0.5) * 8), int((30 + 0.5) * 8)
    # the number sits in the middle of the disc: sample the disc a little off-centre
    r = int(drawing.marker_radius(512, 512) * 0.6)
    assert tuple(canvas[hy + r, hx]) == drawing.HANDLE_RGB
    assert tuple(canvas[ty + r, tx]) == drawing.TARGET_RGB
    # an arrow runs between them (brighter than the grey background half-way)
    mx, my = (hx + tx) // 2, (hy + ty) // 2
    assert canvas[my - 2:my + 3, mx - 2:mx + 3].max() > 200
    # a pending handle is drawn without any target
    pending = drawing.draw_points(img, [(10, 20)], scale=8)
    assert not (pending == np.array(drawing.TARGET_RGB, np.uint8)).all(axis=2).any()


def test_canvas_dims_the_area_outside_the_editable_region():
    img = np.full((32, 32, 3), 200, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[:, :16] = True
    canvas = drawing.draw_points(img, [], scale=1, mask=mask)
    assert canvas[5, 5].tolist() == [200, 200, 200]
    assert canvas[5, 25].max() < 200 * drawing.DIM_OUTSIDE + 1


def test_undo_clear_and_click_mistakes():
    s = loaded_diff_state(64, 64)
    scale = s.scale
    views.add_point(s, sel(5 * scale, 5 * scale))
    with pytest.raises(UserError, match="on its handle"):
        views.add_point(s, sel(5 * scale + 1, 5 * scale + 1))  # same image pixel as the handle
    with pytest.raises(UserError, match="outside"):
        views.add_point(s, sel(64 * scale + 3, 2))
    with pytest.raises(UserError, match="did not land"):
        views.add_point(s, gr.SelectData(None, {"index": None, "value": None}))
    views.add_point(s, sel(20 * scale, 5 * scale))
    views.undo_point(s)
    assert s.clicks == [(5, 5)]
    views.clear_points(s)
    assert s.clicks == []
    views.undo_point(s)  # undo the clear
    assert s.clicks == [(5, 5)]
    views.undo_point(s)
    assert s.clicks == []
    with pytest.raises(UserError, match="no point edit to undo"):
        views.undo_point(s)
    with pytest.raises(UserError, match="upload"):
        views.add_point(DiffState(), sel(1, 1))


# -- issue 14: undo / redo, zoom, moving a marker ---------------------------------------------------------------


def test_undo_and_redo_cover_placing_deleting_and_text_and_a_new_edit_drops_the_redo():
    s = loaded_diff_state(64, 64)
    k = s.scale
    for x, y in ((5, 5), (9, 5), (20, 20), (25, 20)):
        views.add_point(s, sel(x * k, y * k))
    views.delete_pair(s, 1)
    assert s.clicks == [(20, 20), (25, 20)]
    v = views.undo_point(s)
    assert s.clicks == [(5, 5), (9, 5), (20, 20), (25, 20)] and v.points_text == "5,5:9,5 20,20:25,20"
    views.undo_point(s)
    assert s.clicks == [(5, 5), (9, 5), (20, 20)]
    v = views.redo_point(s)
    assert s.clicks == [(5, 5), (9, 5), (20, 20), (25, 20)] and v.status.startswith("Redone")
    views.redo_point(s)
    assert s.clicks == [(20, 20), (25, 20)]
    with pytest.raises(UserError, match="nothing to redo"):
        views.redo_point(s)
    views.set_points_text(s, "1,1:3,3")
    views.undo_point(s)
    assert s.clicks == [(20, 20), (25, 20)]
    views.add_point(s, sel(40 * k, 40 * k))  # a new edit after an undo drops what could be redone
    with pytest.raises(UserError, match="nothing to redo"):
        views.redo_point(s)
    # a new image starts a new history: nothing of the old image's points can come back
    dh.new_image(s, gradient_image(64, 48), "another image", max_side=1024)
    with pytest.raises(UserError, match="no point edit to undo"):
        views.undo_point(s)


def test_gan_undo_and_redo_after_a_drag_do_not_bring_back_points_of_before_the_drag(tiny_generator):
    s = GanState()
    gh.generate(s, "tiny", 2, 0.7, tiny_generator)
    views.add_point(s, sel(8 * s.scale, 8 * s.scale))
    views.add_point(s, sel(20 * s.scale, 8 * s.scale))
    views.undo_point(s)
    views.redo_point(s)
    assert s.clicks == [(8, 8), (20, 8)]
    list(gh.run_drag(s, None, gh.GanSettings(max_steps=3, preview_every=3), tiny_generator))
    if s.clicks != [(8, 8), (20, 8)]:  # the handle moved with the drag: the history was of other points
        with pytest.raises(UserError, match="no point edit to undo"):
            views.undo_point(s)
    views.delete_pair(s, 1)
    views.undo_point(s)
    assert len(s.clicks) == 2


def test_a_click_on_the_zoomed_canvas_lands_on_the_image_pixel_under_it():
    s = loaded_diff_state(128, 96)
    k = s.scale  # 4
    v = views.set_zoom(s, "4×", 25, 75)
    w = s.window
    assert (w.w, w.h, w.scale) == (32, 24, 16)  # a quarter of the image, each pixel 16 x 16 canvas px
    assert (w.x0, w.y0) == (16, 60)  # centred on (32, 72), kept inside the image
    assert v.canvas.shape == (24 * 16, 32 * 16, 3)
    # the canvas shows the image's pixels there, enlarged without blur
    assert np.array_equal(v.canvas[5 * 16 + 7, 3 * 16 + 15], s.image[60 + 5, 16 + 3])
    # a click anywhere inside canvas cell (3, 5) is image pixel (16 + 3, 60 + 5)
    views.add_point(s, sel(3 * 16 + 15, 5 * 16))
    assert s.clicks == [(19, 65)]
    views.add_point(s, sel(10 * 16 + 0.5, 5 * 16 + 8))
    assert s.clicks == [(19, 65), (26, 65)]
    # the markers are drawn where the clicks were: the handle's red disc at the cell's centre
    canvas = views.canvas_for(s)
    r = int(drawing.marker_radius(*canvas.shape[1::-1]) * 0.6)
    assert tuple(canvas[int(5.5 * 16) + r, int(3.5 * 16)]) == drawing.HANDLE_RGB
    # a zoom window at the bottom-right corner is shifted to stay inside the image
    views.set_zoom(s, 8, 100, 100)
    assert (s.window.x0, s.window.y0, s.window.w, s.window.h) == (112, 84, 16, 12)
    views.add_point(s, sel(16 * 32 - 1, 12 * 32 - 1))  # the last canvas pixel: the last image pixel
    assert s.clicks[-1] == (127, 95)
    views.set_zoom(s, "1×")
    assert views.canvas_for(s).shape == (96 * k, 128 * k, 3)
    with pytest.raises(UserError, match="Zoom must be"):
        views.set_zoom(s, 3)
    with pytest.raises(UserError, match="Zoom must be"):
        views.set_zoom(s, "2×", float("nan"), 50)
    # a zoom chosen before any image applies to the first one
    fresh = DiffState()
    assert views.set_zoom(fresh, "2×", 0, 0).canvas is views.KEEP
    dh.new_image(fresh, gradient_image(64, 64), "an image", max_side=1024)
    assert (fresh.window.x0, fresh.window.w) == (0, 32)


def test_select_a_marker_then_click_to_move_it_and_undo_the_move():
    s = loaded_diff_state(64, 64)
    k = s.scale
    c = lambda x, y: sel((x + 0.5) * k, (y + 0.5) * k)  # the centre of image pixel (x, y) on the canvas
    for x, y in ((10, 10), (20, 10), (30, 40), (40, 40)):
        views.add_point(s, c(x, y))
    v = views.add_point(s, c(20, 10))  # on target 1: selected, nothing added
    assert s.clicks == [(10, 10), (20, 10), (30, 40), (40, 40)] and views.selection(s) == 1
    assert "Selected target 1" in v.status
    ring = np.array(drawing.SELECTED_RGB, np.uint8)
    assert (v.canvas == ring).all(axis=2).any()  # the selected marker is ringed
    v = views.add_point(s, c(25, 14))  # the next click moves it
    assert s.clicks == [(10, 10), (25, 14), (30, 40), (40, 40)] and views.selection(s) is None
    assert "Moved target 1 to (25, 14)" in v.status and v.points_text == "10,10:25,14 30,40:40,40"
    assert not (v.canvas == ring).all(axis=2).any()
    views.add_point(s, c(30, 40))  # handle 2 ...
    views.add_point(s, c(30, 40))  # ... clicked again: left where it is
    assert s.clicks[2] == (30, 40) and views.selection(s) is None
    views.add_point(s, c(30, 40))
    with pytest.raises(UserError, match="own handle"):
        views.add_point(s, c(40, 40))  # onto its own target
    views.add_point(s, c(33, 44))
    assert s.clicks[2] == (33, 44)
    views.undo_point(s)
    assert s.clicks[2] == (30, 40)
    views.undo_point(s)
    assert s.clicks[1] == (20, 10)
    # with a handle waiting for its target, a click on a marker places the target there instead
    views.add_point(s, c(50, 50))
    views.add_point(s, c(10, 10))
    assert s.clicks[-2:] == [(50, 50), (10, 10)]
    # moving works on the zoomed canvas too
    views.set_zoom(s, 2, 0, 0)
    z = s.window.scale
    views.add_point(s, sel(10.5 * z, 10.5 * z))
    assert views.selection(s) == 0
    views.add_point(s, sel(12.2 * z, 3.9 * z))
    assert s.clicks[0] == (12, 3)


def test_drag_a_marker_moves_it_to_the_release_pixel_also_zoomed_and_undo_takes_it_back():
    s = loaded_diff_state(64, 64)
    k = s.scale
    c = lambda x, y: ((x + 0.5) * k, (y + 0.5) * k)  # the centre of image pixel (x, y) on the canvas
    views.set_points_text(s, "10,10:20,10 30,40:40,40")
    v = views.drag_marker(s, "%g,%g:%g,%g" % (*c(20, 10), *c(25, 14)))  # target 1, as the page script sends it
    assert s.clicks == [(10, 10), (25, 14), (30, 40), (40, 40)]
    assert v.status.startswith("Moved target 1 to (25, 14).") and v.points_text == "10,10:25,14 30,40:40,40"
    views.drag_marker(s, (c(30, 40), c(3, 60)))  # handle 2, as a pair of positions
    assert s.clicks[2] == (3, 60)
    # zoomed 4x at the top-left corner: the release maps through the window like a click
    views.set_zoom(s, 4, 0, 0)
    z, w = s.window.scale, s.window
    assert (w.x0, w.y0, w.w) == (0, 0, 16) and z == 4 * k
    views.drag_marker(s, ((10.5 * z, 10.5 * z), (13.9 * z, 2.1 * z)))  # handle 1 to image pixel (13, 2)
    assert s.clicks[0] == (13, 2)
    # a marker that was selected (yellow ring) and then dragged: moved, and the selection is gone
    views.add_point(s, sel(13.5 * z, 2.5 * z))
    assert views.selection(s) == 0
    views.drag_marker(s, ((13.5 * z, 2.5 * z), (5.5 * z, 5.5 * z)))
    assert s.clicks[0] == (5, 5) and views.selection(s) is None
    views.set_zoom(s, 1)
    for clicks in ([(13, 2), (25, 14), (3, 60), (40, 40)], [(10, 10), (25, 14), (3, 60), (40, 40)],
                   [(10, 10), (25, 14), (30, 40), (40, 40)], [(10, 10), (20, 10), (30, 40), (40, 40)]):
        views.undo_point(s)  # every drag is one Undo step
        assert s.clicks == clicks


def test_drag_from_no_marker_is_the_click_at_the_release_and_bad_drags_are_one_line_messages():
    s = loaded_diff_state(64, 64)
    k = s.scale
    v = views.drag_marker(s, f"{5 * k},{5 * k}:{20.5 * k},{30.5 * k}")  # pressed on no marker
    assert s.clicks == [(20, 30)] and "now click its target" in v.status  # what the browser's click would do
    views.drag_marker(s, f"{50 * k},{50 * k}:{40.5 * k},{30.5 * k}")
    assert s.clicks == [(20, 30), (40, 30)]
    with pytest.raises(UserError, match="own handle"):  # a target dragged onto its own handle
        views.drag_marker(s, f"{40.5 * k},{30.5 * k}:{20.5 * k},{30.5 * k}")
    with pytest.raises(UserError, match="outside the 64x64 image"):  # released beside the picture
        views.drag_marker(s, f"{40.5 * k},{30.5 * k}:{70 * k},{30.5 * k}")
    for bad in ("", "1,2", "1,2:3", "a,b:c,d", "nan,1:2,3", "1,2:3,inf", None, 7, [[1, 2]], "1,2:3,4:5,6"):
        with pytest.raises(UserError, match="drag did not come through"):
            views.drag_marker(s, bad)
    assert s.clicks == [(20, 30), (40, 30)]
    with pytest.raises(UserError):
        views.drag_marker(DiffState(), "1,2:3,4")  # no image yet


def test_the_marker_drag_script_is_loaded_and_wired_to_each_tab():
    from stabledrag.webapp import marker_drag, ui

    js = marker_drag.MARKER_DRAG_JS
    for prefix in marker_drag.PREFIXES:
        assert f"'{prefix}'" in js and marker_drag.drag_button_id(prefix).startswith(prefix)
        assert f"pending['{prefix}']" in marker_drag.button_js(prefix)
    assert "_marker_drag_button" in js and "_canvas" in js and f"THRESHOLD = {marker_drag.DRAG_THRESHOLD_PX}" in js
    # Gradio's own select mapping: fitted, centred, never enlarged, rounded
    assert "Math.min(b.width / img.naturalWidth, b.height / img.naturalHeight, 1)" in js
    assert "Drag a marker to move it" in ui.POINT_HELP


def test_points_as_text_round_trip_and_validation():
    assert clicks_to_text([(1, 2), (3, 4), (5, 6)]) == "1,2:3,4 5,6:?"
    assert clicks_from_text("1,2:3,4 5,6:7,8", (10, 10)) == [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert clicks_from_text("  ", (10, 10)) == []
    with pytest.raises(UserError, match="outside"):
        clicks_from_text("1,2:30,4", (10, 10))
    s = loaded_diff_state(64, 64)
    v = views.set_points_text(s, "10,10:20,12")
    assert s.clicks == [(10, 10), (20, 12)] and v.points_text == "10,10:20,12"


# -- the editable region from the ImageEditor --------------------------------------------------------------


def test_mask_from_editor_reduces_the_enlarged_painting_to_image_pixels():
    scale = 4
    layer = np.zeros((16 * scale, 24 * scale, 4), np.uint8)
    layer[2 * scale:6 * scale, 3 * scale:9 * scale] = (255, 0, 180, 255)  # image rows 2..5, columns 3..8
    value = {"background": np.zeros((16 * scale, 24 * scale, 4), np.uint8), "layers": [layer], "composite": None}
    mask = masks.mask_from_editor(value, (24, 16))
    assert mask.shape == (16, 24)
    expected = np.zeros((16, 24), bool)
    expected[2:6, 3:9] = True
    assert (mask == expected).all()


def test_mask_nothing_painted_is_none_and_too_thin_is_an_error():
    empty = {"background": np.zeros((40, 40, 4), np.uint8), "layers": [np.zeros((40, 40, 4), np.uint8)],
             "composite": None}
    assert masks.mask_from_editor(empty, (10, 10)) is None
    assert masks.mask_from_editor({"background": None, "layers": [], "composite": None}, (10, 10)) is None
    assert masks.mask_from_editor(None, (10, 10)) is None
    thin = np.zeros((40, 40, 4), np.uint8)
    thin[5, 5] = 255  # one canvas pixel of a 4x4 block: under the coverage threshold
    with pytest.raises(UserError, match="too thin"):
        masks.mask_from_editor({"background": None, "layers": [thin], "composite": None}, (10, 10))


def test_editor_value_restores_a_mask_that_reads_back_identically():
    img = gradient_image(20, 12)
    mask = np.zeros((12, 20), bool)
    mask[3:9, 5:15] = True
    value = masks.editor_value(img, mask, scale=3)
    assert value["background"].shape == (36, 60, 4)
    assert (masks.mask_from_editor(value, (20, 12)) == mask).all()


def test_run_refuses_handles_outside_the_painted_region():
    s = loaded_diff_state(64, 64)
    s.clicks = [(5, 5), (20, 5)]
    region = masks.editor_value(s.image, np.pad(np.ones((10, 10), bool), ((40, 14), (40, 14))), s.scale)

    def editor():
        raise AssertionError("the model must not be touched for a refused request")

    with pytest.raises(UserError, match="outside the painted region"):
        next(dh.run_edit(s, region, "", dh.DiffSettings(), editor))


@pytest.mark.parametrize("clicks, match", [([], "No drag points"), ([(5, 5)], "has no target")])
def test_run_refuses_missing_points(clicks, match):
    s = loaded_diff_state(64, 64)
    s.clicks = clicks
    with pytest.raises(UserError, match=match):
        next(dh.run_edit(s, None, "", dh.DiffSettings(), lambda: None))


# -- messages ----------------------------------------------------------------------------------------------


def test_errors_become_sentences_without_tracebacks():
    assert messages.user_message(UserError("Click a handle first.")) == "Click a handle first."
    assert messages.user_message(ModelUnavailableError("offline")).startswith("Model not available")
    assert messages.user_message(torch.OutOfMemoryError("CUDA out of memory")) == messages.OOM_MESSAGE
    assert messages.user_message(RuntimeError("CUDA out of memory. Tried to allocate")) == messages.OOM_MESSAGE
    assert messages.user_message(Cancelled()) == messages.STOPPED_MESSAGE
    bug = messages.user_message(KeyError("secret internals"))
    assert "KeyError" in bug and "secret internals" not in bug and "Traceback" not in bug


def test_model_not_available_offline_is_reported_for_sd15(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    eng = Engines(parse_args(["--models-dir", str(tmp_path), "--device", "cpu"]))
    assert SD15_LABEL in [c.label for c in eng.menu("diffusion")]
    s = loaded_diff_state(64, 64)
    s.clicks = [(10, 10), (20, 10)]
    with pytest.raises(ModelUnavailableError):
        list(dh.run_edit(s, None, "a photo", dh.DiffSettings(lora_steps=1, max_steps=1),
                         lambda: eng.model("diffusion", SD15_LABEL)))
    eng.menus["diffusion"] = [c for c in eng.menu("diffusion") if c.label == SD15_LABEL]
    eng.preload()  # --preload / ZeroGPU: a model that cannot load is logged, the app still starts


def test_model_menus_offer_only_discovered_files(tmp_path, monkeypatch):
    import stabledrag.diffusion.engine as diffusion_engine
    import stabledrag.gan.engine as gan_engine
    from stabledrag.testing import save_tiny_gan

    monkeypatch.setattr(gan_engine, "TOY_GAN_DIR", tmp_path / "no_toy_gan")  # whether built or not
    monkeypatch.setattr(diffusion_engine, "TOY_SD_DIR", tmp_path / "no_toy_sd")

    models = tmp_path / "models"
    models.mkdir()
    save_tiny_gan(models)  # a native GAN folder
    (models / "official.pkl").write_bytes(b"not opened until chosen")
    (models / "sd_folder").mkdir()
    (models / "sd_folder" / "model_index.json").write_text("{}")
    (models / "notes.txt").write_text("ignored")
    eng = Engines(parse_args(["--models-dir", str(models), "--device", "cpu"]))
    assert [c.label for c in eng.menu("gan")] == ["official.pkl (models folder)", "tiny_gan (models folder)"]
    assert [c.label for c in eng.menu("diffusion")] == ["sd_folder (models folder)", SD15_LABEL]
    assert not any("notes" in c.label for c in eng.menu("gan") + eng.menu("diffusion"))
    with pytest.raises(UserError, match="pick one from the model menu"):
        eng.model("gan", "/etc/passwd")
    with pytest.raises(UserError):
        eng.model("diffusion", "../../secret")
    assert isinstance(eng.menu("gan")[0], ModelChoice)


def test_the_apps_menus_and_models_come_from_the_engine_registry(tmp_path):
    """A third engine registered from outside gets its own menu (the models-folder files it claims
    most surely), its models loaded once per label, its recommended settings and preloading."""
    from stabledrag import engine as registry
    from stabledrag.gan.engine import GanEngine

    class StubEngine(GanEngine):  # the CLI/bench parts of the GAN engine; the app parts its own
        name = "stub"
        no_model_message = "no stub model"
        loads: list = []
        warmed: list = []

        def claim(self, path):
            return 2 if path.suffix in (".stub", ".safetensors") else 0

        def model_choices(self, named, found, on_gpu):
            return [ModelChoice(f"{p.name} (models folder)", str(p.resolve())) for p in found]

        def load(self, spec, device, dtype=None, cache_dir=None):
            self.loads.append(spec)
            return {"spec": spec}

        def warm_up(self, model):
            self.warmed.append(model["spec"])

        def recommended(self, spec, photo=False):
            return {"lr": 0.5}

    models = tmp_path / "models"
    models.mkdir()
    (models / "a.stub").write_bytes(b"x")
    (models / "b.safetensors").write_bytes(b"not a GAN")  # by suffix the diffusion engine's (1); the stub is surer
    (models / "c.ckpt").write_bytes(b"x")
    registry.register(StubEngine())
    try:
        eng = Engines(parse_args(["--models-dir", str(models), "--device", "cpu"]))
        assert eng.labels("stub") == ["a.stub (models folder)", "b.safetensors (models folder)"]
        assert "c.ckpt (models folder)" in eng.labels("diffusion")
        assert not any("stub" in label or "b.safetensors" in label for label in eng.labels("diffusion"))
        m = eng.model("stub", "a.stub (models folder)")
        assert m == {"spec": str((models / "a.stub").resolve())}
        assert eng.model("stub", "a.stub (models folder)") is m and len(StubEngine.loads) == 1  # loaded once
        assert eng.recommended("stub", "a.stub (models folder)") == {"lr": 0.5}
        assert eng.recommended("stub", "nope") == {}
        with pytest.raises(UserError, match="pick one from the model menu"):
            eng.model("stub", str(models / "a.stub"))
        eng.menus = {"stub": eng.menus["stub"]}
        eng.preload()
        assert StubEngine.warmed == [m["spec"]]
    finally:
        registry.unregister("stub")
    assert "stub" not in Engines(parse_args(["--models-dir", str(models), "--device", "cpu"])).menus


def test_a_model_path_on_the_command_line_may_start_with_a_tilde(tmp_path, monkeypatch):
    from stabledrag.diffusion.engine import DiffusionEngine
    from stabledrag.gan.engine import GanEngine

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "g.pkl").write_bytes(b"x")
    (tmp_path / "sd").mkdir()
    gan = GanEngine().model_choices("~/g.pkl", [], False)[0]
    assert (gan.label, gan.spec) == ("g.pkl (--gan-model)", str((tmp_path / "g.pkl").resolve()))
    sd = DiffusionEngine().model_choices("~/sd", [], False)[0]
    assert (sd.label, sd.spec) == ("sd (--diffusion-model)", str((tmp_path / "sd").resolve()))


def test_no_gan_model_gives_a_clear_message(tmp_path, monkeypatch):
    import stabledrag.gan.engine as gan_engine

    monkeypatch.setattr(gan_engine, "TOY_GAN_DIR", tmp_path / "missing")
    eng = Engines(parse_args(["--models-dir", str(tmp_path), "--device", "cpu"]))
    assert eng.menu("gan") == []
    with pytest.raises(ModelUnavailableError, match="--gan-model"):
        eng.model("gan", None)


# -- images, settings, arguments, examples ----------------------------------------------------------------


def test_large_images_are_scaled_down_with_a_note_and_non_images_refused():
    big = np.zeros((300, 2000, 3), np.uint8)
    s = DiffState()
    v = dh.new_image(s, big, "upload", max_side=1000)
    assert s.image.shape == (150, 1000, 3) and "scaled down" in v.status
    # the same pixels again (Gradio echoing an image) change nothing
    s.clicks = [(1, 1)]
    v2 = dh.new_image(s, s.image.copy(), "upload", max_side=1000)
    assert s.clicks == [(1, 1)] and v2.canvas is views.KEEP
    with pytest.raises(UserError, match="not an image"):
        dh.new_image(DiffState(), np.zeros((10, 10, 7), np.uint8), "upload", 1000)
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent -> white, like the engines do
    arr, _ = dh.fit_image(rgba, 100)
    assert arr.shape == (16, 16, 3) and (arr == 255).all()
    with pytest.raises(UserError, match="only 8x8 pixels"):
        dh.fit_image(np.zeros((8, 8, 3), np.uint8), 100)


def test_uploads_that_are_not_pictures_get_a_clear_message():
    from PIL import Image

    with pytest.raises(UserError, match="not a PNG, JPEG, WebP, BMP, GIF or TIFF picture"):
        dh.decode_upload(b"%PDF-1.4 not an image")
    buf = io.BytesIO()
    Image.fromarray(gradient_image(40, 30)).save(buf, format="PNG")
    png = buf.getvalue()
    assert (dh.decode_upload(png) == gradient_image(40, 30)).all()
    with pytest.raises(UserError, match="damaged"):
        dh.decode_upload(png[: len(png) // 2])
    s = DiffState()
    v = dh.new_image(s, png, "the uploaded image", max_side=1024)
    assert s.image.shape == (30, 40, 3) and v.status.startswith("Loaded the uploaded image (40x30)")


def test_progress_bar_html():
    assert 'value="3"' in views.progress_html("Dragging", 3, 10) and "3/10" in views.progress_html("Dragging", 3, 10)
    assert "<progress></progress>" in views.progress_html("DDIM <inversion>", 0, None)
    assert "&lt;inversion&gt;" in views.progress_html("DDIM <inversion>", 0, None)


def test_method_labels_say_what_runs_and_the_old_labels_still_import():
    assert BASELINE_LABEL == "Baseline (nearest-neighbour tracking, our settings)"
    assert gh.METHODS == {"StableDrag": "stabledrag", BASELINE_LABEL: "baseline",
                          "DragGAN (reference settings)": "draggan"}
    assert dh.METHODS == {"StableDrag": "stabledrag", BASELINE_LABEL: "baseline",
                          "DragDiffusion (reference settings)": "dragdiffusion"}
    for old, key in (("DragGAN (baseline)", "baseline"), ("DragGAN (exact reference)", "draggan")):
        s = gh.GanSettings.from_values({"method": old})
        assert s.method == key and s.ui_values()["method"] in gh.METHODS  # shown with today's label
    for old, key in (("DragDiffusion (baseline)", "baseline"), ("DragDiffusion (exact reference)", "dragdiffusion")):
        assert dh.DiffSettings.from_values({"method": old}).method == key
    with pytest.raises(UserError, match="choose StableDrag, Baseline"):
        gh.GanSettings.from_values({"method": "DragGAN"})


def test_diff_settings_map_onto_the_engine_config():
    s = dh.DiffSettings.from_values({"method": "DragDiffusion (baseline)", "lora_steps": 7.0, "ddim_steps": 20,
                                     "inversion_strength": 0.5, "max_steps": 9, "tau": 0.3, "r_p": 4})
    cfg = s.edit_config()
    assert cfg.drag.method == "baseline" and cfg.drag.tracker == "nearest"
    assert cfg.lora.steps == 7 and cfg.inversion.num_steps == 20 and cfg.inversion.strength == 0.5
    assert cfg.drag.max_steps == 9 and cfg.drag.tau == 0.3 and cfg.drag.r_p == 4
    assert dh.DiffSettings.defaults_for("cuda") == dh.DiffSettings()  # DragDiffusion's on a GPU
    assert dh.DiffSettings.defaults_for("cpu").lora_steps < dh.DiffSettings().lora_steps
    toy = dh.DiffSettings.defaults_for("cpu", {"lr": 0.05, "stop_distance": 1.0, "max_steps": 33})  # a model's own
    assert (toy.lr, toy.stop_distance, toy.max_steps) == (0.05, 1.0, 33)
    assert (toy.edit_config().drag.lr, toy.edit_config().drag.stop_distance) == (0.05, 1.0)
    assert dh.DiffSettings().edit_config().drag.stop_distance == 2.0
    # a recommended setting the tab has no field for still reaches the engine; the tab's fields win
    cfg = toy.edit_config({"lora.batch_size": 2, "lr": 0.5})
    assert cfg.lora.batch_size == 2 and cfg.drag.lr == 0.05
    assert dh.DiffSettings.from_values({"stop_distance": 1.5}).edit_config().drag.stop_distance == 1.5
    with pytest.raises(UserError):
        dh.DiffSettings.from_values({"method": "magic"})
    with pytest.raises(UserError):
        dh.DiffSettings(inversion_strength=0.0).edit_config()


def test_app_arguments():
    o = parse_args(["--host", "0.0.0.0", "--port", "7000", "--share", "--diffusion-model", "m", "--gan-model", "g.pkl",
                    "--device", "cpu"])
    got = (o.host, o.port, o.share, o.diffusion_model, o.gan_model, o.device)
    assert got == ("0.0.0.0", 7000, True, "m", "g.pkl", "cpu")
    d = parse_args([])
    assert d.share is False and d.gan_model is None and d.models_dir == "models"


def test_bundled_examples_load_and_have_prompts():
    examples = list_examples()
    names = [e.name for e in examples]
    assert any(n.startswith("Toy face") for n in names) and "Cat (photo)" in names
    for e in examples:
        img = load_example(e)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert e.prompt
    s = DiffState()
    v = dh.choose_example(s, examples[0], max_side=1024)
    assert v.prompt == examples[0].prompt and s.image is not None


def test_app_page_has_both_tabs_and_one_gpu_queue(tmp_path):
    import app

    demo = app.build_demo(["--models-dir", str(tmp_path), "--max-queue", "5", "--device", "cpu"])
    tabs = [b.label for b in demo.blocks.values() if type(b).__name__ == "Tab"]
    assert tabs == ["StableDrag-Diff", "StableDrag-GAN"]
    fns = {f.api_name: f for f in demo.fns.values() if getattr(f, "api_name", None)}
    for name in ("diff_run", "gan_start", "gan_generate", "gan_import"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("gpu", 1), name
    assert demo._queue.max_size is None  # --max-queue caps waiting GPU runs, with a fair share per session
    assert demo._queue.stabledrag_fair_share["max_gpu_waiting"] == 5
    from stabledrag.webapp.ui import launch_kwargs

    kw = launch_kwargs(parse_args(["--share"]))
    assert kw["share"] is True and "allowed_paths" not in kw and kw["show_error"] is False


def test_gpu_decorator_is_a_no_op_here():
    @gpu
    def f(x):
        return x + 1

    @gpu(duration=30)
    def g(n):
        yield from range(n)

    assert f(1) == 2 and list(g(3)) == [0, 1, 2]


# -- the worker thread bridge ---------------------------------------------------------------------------------


def test_stream_work_relays_progress_then_the_result():
    def work(cb):
        for i in range(3):
            cb(Progress("drag", i + 1, 3, preview=np.zeros((2, 2, 3), np.uint8)))
        return "done"

    items = list(runner.stream_work(work))
    assert [p.step for p in items[:-1]] == [1, 2, 3]
    assert isinstance(items[-1], runner.Finished) and items[-1].value == "done"


def test_stream_work_reraises_and_cancels_when_abandoned():
    def failing(cb):
        raise UserError("bad input")

    with pytest.raises(UserError, match="bad input"):
        list(runner.stream_work(failing))

    token = CancelToken()

    def slow(cb):
        while not token.cancelled:
            cb(Progress("lora", 0, None))
        raise Cancelled()

    gen = runner.stream_work(slow, token)
    next(gen)
    gen.close()  # the page went away
    assert token.cancelled


# -- sessions --------------------------------------------------------------------------------------------------


def test_diff_session_export_import_round_trip():
    s = loaded_diff_state(80, 48)
    s.clicks = [(10, 10), (30, 12), (50, 40), (60, 40)]
    s.mask = np.zeros((48, 80), bool)
    s.mask[5:30, 5:70] = True
    s.result = (255 - s.image).copy()
    settings = dh.DiffSettings(method="baseline", lora_steps=12, tau=0.4, seed=7)
    v = dh.export_session(s, "a gradient", settings)
    blob = open(v.session_file, "rb").read()

    fresh = DiffState()
    w = dh.import_session(fresh, blob, max_side=1024)
    assert (fresh.image == s.image).all() and fresh.clicks == s.clicks
    assert (fresh.mask == s.mask).all() and (fresh.result == s.result).all()
    assert w.prompt == "a gradient"
    assert w.settings["method"] == BASELINE_LABEL and w.settings["lora_steps"] == 12
    assert w.settings["tau"] == 0.4 and w.settings["seed"] == 7
    # the editor gets the region back as a painted layer, which reads back as the same mask
    assert (masks.mask_from_editor(w.editor, (80, 48)) == s.mask).all()


def test_sessions_written_with_the_former_setting_names_still_import(tiny_generator):
    """The tabs' `drag_steps` / `drag_lr` (Diff) and `step_size` (GAN) are now `max_steps` / `lr`,
    as in `DragConfig` and the CLI; a session file written before keeps its values."""
    s = loaded_diff_state(40, 32)
    s.clicks = [(10, 10), (20, 12)]
    old = {**{k: v for k, v in dh.DiffSettings().to_dict().items() if k not in ("max_steps", "lr")},
           "drag_steps": 17, "drag_lr": 0.02}
    blob = session_io.session_bytes(session_io.SessionData(engine="diffusion", image=s.image, clicks=s.clicks,
                                                           settings=old, prompt="p"))
    w = dh.import_session(DiffState(), blob, max_side=1024)
    assert (w.settings["max_steps"], w.settings["lr"]) == (17, 0.02)
    assert "drag_steps" not in w.settings and "drag_lr" not in w.settings
    assert dh.DiffSettings.from_values(w.settings).edit_config().drag.max_steps == 17
    # both names in one file: today's wins
    both = session_io.session_bytes(session_io.SessionData(engine="diffusion", image=s.image, clicks=s.clicks,
                                                           settings={**old, "max_steps": 5}))
    assert dh.import_session(DiffState(), both, max_side=1024).settings["max_steps"] == 5

    g = GanState()
    gh.generate(g, "tiny", 2, 0.7, tiny_generator)
    gan_old = {k: v for k, v in gh.GanSettings().to_dict().items() if k != "lr"}
    gan_old["step_size"] = 0.004
    data = session_io.SessionData(engine="gan", image=g.image0, settings=gan_old,
                                  latents={"latent0": g.w0, "latent": g.w},
                                  gan={"model": "tiny", "seed": 2, "psi": 0.7})
    w = gh.import_session(GanState(), session_io.session_bytes(data), ["tiny"], lambda label: tiny_generator)
    assert w.settings["lr"] == 0.004 and "step_size" not in w.settings


def test_session_version_2_is_written_1_and_2_are_read_and_later_ones_refused():
    """The settings' renaming (`drag_steps` -> `max_steps`, ...) made the file version 2, so that an
    app that reads only version 1 refuses a new file instead of silently dropping the renamed settings."""
    from stabledrag.testing import session_zip

    blob = session_io.session_bytes(session_io.SessionData(engine="gan", image=np.zeros((16, 16, 3), np.uint8)))
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert json.loads(z.read("session.json"))["version"] == 2
    # version 1 (the former names): read, and the tab upgrades the names as before
    v1 = session_io.read_session(session_zip({}, engine="diffusion", version=1,
                                             settings={"drag_steps": 17, "drag_lr": 0.02}))
    assert v1.settings == {"drag_steps": 17, "drag_lr": 0.02}
    assert dh.DiffSettings.known_values(v1.settings) == {"max_steps": 17, "lr": 0.02}
    assert session_io.read_session(session_zip({}, version=2, settings={"lr": 0.004})).settings == {"lr": 0.004}
    for later in (3, 10**6):
        with pytest.raises(UserError, match="written by a newer StableDrag Studio; please update the app"):
            session_io.read_session(session_zip({}, version=later))
    for bad in (0, -1, "2", None, True, 1.5):
        with pytest.raises(UserError, match="version .* is not one this app reads"):
            session_io.read_session(session_zip({}, version=bad))


def test_session_engine_names_come_from_the_registry():
    from stabledrag import engine as registry

    assert session_io.session_engines() == tuple(e.name for e in registry.app_engines()) == ("diffusion", "gan")
    with pytest.raises(ValueError, match="engine must be one of"):
        session_io.session_bytes(session_io.SessionData(engine="texture", image=np.zeros((4, 4, 3), np.uint8)))
    from stabledrag.gan.engine import GanEngine
    from stabledrag.testing import session_zip

    with pytest.raises(UserError, match="unknown engine 'sdxl'"):
        session_io.read_session(session_zip({}, engine="sdxl"))

    class AnotherGan(GanEngine):  # a third app engine, registered from outside
        name = "gan2"

    registry.register(AnotherGan())
    try:
        assert session_io.read_session(session_zip({}, engine="gan2")).engine == "gan2"
        # the message names the engine's own tab, not the GAN tab it derives from
        with pytest.raises(UserError, match="belongs to the gan2 tab; import it there"):
            session_io.read_session(session_zip({}, engine="gan2"), expect_engine="gan")
        AnotherGan.title = "Texture lab"
        with pytest.raises(UserError, match="belongs to the Texture lab tab; import it there"):
            session_io.read_session(session_zip({}, engine="gan2"), expect_engine="diffusion")
        assert registry.title("gan") == "StableDrag-GAN" and registry.title("diffusion") == "StableDrag-Diff"
    finally:
        registry.unregister("gan2")
    with pytest.raises(UserError, match="unknown engine 'gan2'"):
        session_io.read_session(session_zip({}, engine="gan2"))


def _zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_session_import_refuses_bad_files():
    with pytest.raises(UserError, match="not a session file"):
        session_io.read_session(b"plain text")
    with pytest.raises(UserError, match="no session.json"):
        session_io.read_session(_zip({"../../etc/passwd": "x"}))
    good = session_io.session_bytes(session_io.SessionData(engine="gan", image=np.zeros((16, 16, 3), np.uint8),
                                                           clicks=[(1, 1), (2, 2)]))
    with pytest.raises(UserError, match="StableDrag-GAN tab"):
        session_io.read_session(good, expect_engine="diffusion")
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(files["session.json"])
    doc["points"][1] = [99, 2]  # a point outside the 16 x 16 image
    files["session.json"] = json.dumps(doc)
    with pytest.raises(UserError, match="outside"):
        session_io.read_session(_zip(files))
    files2 = dict(files, **{"image.png": b"not a png"})
    with pytest.raises(UserError, match="The session's image.png is not a PNG"):
        session_io.read_session(_zip(files2))


# -- the GAN tab on a tiny random generator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_generator():
    from stabledrag.gan import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=512, channel_max=32,
                                  mapping_layers=2))
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    return G


def test_gan_generate_drag_reset_and_session(tiny_generator):
    s = GanState()
    v = gh.generate(s, "tiny", 5, 0.7, tiny_generator)
    assert s.image.shape == (32, 32, 3) and s.seed == 5 and s.clicks == []
    original = s.image.copy()
    views.add_point(s, sel(10 * s.scale, 12 * s.scale))
    views.add_point(s, sel(15 * s.scale, 12 * s.scale))
    settings = gh.GanSettings.from_values({"method": "StableDrag", "max_steps": 6, "preview_every": 2})
    frames = list(gh.run_drag(s, None, settings, tiny_generator))
    assert len(frames) >= 3  # the first canvas, live frames, the final view
    assert "after 6 steps" in frames[-1].status or "Reached" in frames[-1].status
    assert not np.array_equal(s.image, original), "the drag must change the image"
    assert not np.array_equal(s.w, s.w0)
    assert frames[-1].download.endswith(".png") and frames[-1].animation.endswith(".gif")
    assert s.start_clicks == [(10, 12), (15, 12)]

    blob = open(gh.export_session(s, settings).session_file, "rb").read()
    restored = GanState()
    w = gh.import_session(restored, blob, ["tiny"], lambda label: tiny_generator)
    assert np.array_equal(restored.image, s.image) and np.allclose(restored.w, s.w)
    assert restored.clicks == s.clicks and w.model == "tiny" and w.settings["max_steps"] == 6
    with pytest.raises(UserError, match="does not offer"):
        gh.import_session(GanState(), blob, ["another model"], lambda label: tiny_generator)

    v = gh.reset(s)
    assert np.array_equal(s.image, original) and s.clicks == [(10, 12), (15, 12)]
    assert v.canvas.shape[:2] == (32 * s.scale, 32 * s.scale)


def test_gan_stop_keeps_the_progress_made(tiny_generator):
    s = GanState()
    gh.generate(s, "tiny", 1, 0.7, tiny_generator)
    s.clicks = [(8, 8), (20, 8)]
    token = CancelToken()
    run = gh.run_drag(s, None, gh.GanSettings(max_steps=50, preview_every=1), tiny_generator, cancel=token)
    next(run)
    next(run)  # one step done
    token.cancel()  # the Stop button
    last = list(run)[-1]
    assert "Stopped" in last.status
    assert not np.array_equal(s.w, s.w0)
    with pytest.raises(UserError, match="seed"):
        gh.generate(GanState(), "tiny", "abc", 0.7, tiny_generator)


# -- issue 14: honest words and numbers ------------------------------------------------------------------------


def test_status_words_name_the_tabs_button_and_warn_about_handles_outside_the_region():
    s = GanState(image=np.zeros((32, 32, 3), np.uint8))
    views.add_point(s, sel(4 * s.scale, 4 * s.scale))
    v = views.add_point(s, sel(10 * s.scale, 4 * s.scale))
    assert "press Start" in v.status and "Run" not in v.status
    assert "rest of the image may move" in v.status  # no region painted
    d = loaded_diff_state(64, 64)
    d.clicks = [(5, 5), (9, 5)]
    assert "press Run" in views.points_view(d).status
    d.mask = np.zeros((64, 64), bool)
    d.mask[30:, 30:] = True
    assert "handle 1 is outside the painted region" in views.points_view(d).status
    assert views.status_words("max_steps") == "Ran out of steps"
    assert "max_steps" not in views.status_words("something new")


def test_delete_one_pair_keeps_the_others_in_order():
    d = loaded_diff_state(64, 64)
    d.clicks = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    v = views.delete_pair(d, 2)
    assert d.clicks == [(1, 1), (2, 2), (5, 5), (6, 6)] and v.points_text == "1,1:2,2 5,5:6,6"
    with pytest.raises(UserError, match="no pair 3"):
        views.delete_pair(d, 3)


def test_examples_follow_the_model_and_say_what_a_photo_needs():
    from stabledrag.webapp.examples import PHOTO_NOTE, examples_for_model

    ex = list_examples()
    toy = examples_for_model(ex, toy_model=True)
    photo = examples_for_model(ex, toy_model=False)
    assert toy and all(e.kind == "toy" for e in toy)
    assert photo and all(e.kind == "photo" for e in photo)
    assert "Stable Diffusion 1.5" in PHOTO_NOTE and "GPU" in PHOTO_NOTE


def test_offline_model_message_names_only_the_apps_own_options():
    from stabledrag.diffusion.loading import _HINT

    msg = messages.user_message(ModelUnavailableError("SD 1.5 is not in the cache and HF_HUB_OFFLINE is set. " + _HINT))
    assert "--config-dir" not in msg and "--model " not in msg
    assert "--diffusion-model" in msg and "HF_HUB_OFFLINE" in msg


def test_gan_status_says_the_distance_is_the_trackers_estimate_with_confidence(tiny_generator):
    s = GanState()
    gh.generate(s, "tiny", 3, 0.7, tiny_generator)
    s.clicks = [(8, 8), (14, 8)]
    frames = list(gh.run_drag(s, None, gh.GanSettings(max_steps=4, preview_every=2), tiny_generator))
    assert frames[0].download is None and frames[0].animation is None  # nothing to download mid-drag
    live = [f.status for f in frames[1:-1]]
    assert live and all("confidence" in t and "#1" in t and "s" in t for t in live), live
    final = frames[-1].status
    assert "tracker's estimate" in final and "confidence" in final and "max_steps" not in final
    assert len(s.trail) >= 2 and s.last_result["distances"]


def test_compare_runs_both_methods_from_the_same_start_and_leaves_the_image(tiny_generator):
    s = GanState()
    gh.generate(s, "tiny", 4, 0.7, tiny_generator)
    s.clicks = [(8, 8), (14, 8)]
    w0, image0 = s.w.copy(), s.image.copy()
    views_ = list(gh.run_compare(s, None, gh.GanSettings(max_steps=3, preview_every=3), tiny_generator))
    final = views_[-1]
    assert any("run 1 of 2 (StableDrag)" in v.status for v in views_)
    assert any("run 2 of 2 (Baseline" in v.status for v in views_)
    assert "StableDrag" in final.compare_table
    assert "Baseline (nearest-neighbour tracking, our settings)" in final.compare_table
    assert final.compare_table.count("px") >= 2 and "handle 1" in final.compare_table
    assert final.compare.ndim == 3 and final.compare.shape[1] > final.compare.shape[0]  # two panels side by side
    assert np.array_equal(s.w, w0) and np.array_equal(s.image, image0) and s.clicks == [(8, 8), (14, 8)]


class _StoppedEditor:
    """A diffusion editor stand-in: reports one drag step with a preview, then is stopped."""

    def recommended_overrides(self):
        return {}

    def edit(self, image, points, mask=None, prompt="", config=None, progress=None, cancel=None, preview_every=0):
        preview = np.full((64, 64, 3), 200, np.uint8)
        progress(Progress("lora", 1, 2))
        progress(Progress("drag", 1, 10, {"handles": [[22.0, 30.0]], "confidence": [0.42], "template_used": [True]},
                          preview))
        raise Cancelled()


def test_diff_stop_shows_how_far_it_got_and_offers_no_stale_download():
    s = loaded_diff_state(64, 64)
    s.clicks = [(20, 30), (40, 30)]
    s.result = np.zeros((64, 64, 3), np.uint8)  # a previous run's result
    out = list(dh.run_edit(s, None, "", dh.DiffSettings(preview_every=1), lambda: _StoppedEditor()))
    assert out[0].download is None and out[0].animation is None and s.result is None
    live = [v for v in out if isinstance(v.status, str) and v.status.startswith("Dragging")]
    assert live and "confidence 0.42 (template)" in live[0].status and "one-step" in live[0].status
    last = out[-1]
    assert last.status == messages.STOPPED_MESSAGE and last.download is None
    before, after = last.result
    assert not np.array_equal(before, after)  # the slider shows the last preview, not the input twice
    assert last.animation is not None and last.animation.endswith(".gif")


def test_diff_run_stopped_mid_drag_continues_from_there(tmp_path):
    from stabledrag.diffusion.editor import DiffusionEditor
    from stabledrag.diffusion.tiny import build_tiny_pipeline

    editor = DiffusionEditor(pipeline=build_tiny_pipeline(image_size=64), lora_cache_dir=str(tmp_path / "lora"))
    s = loaded_diff_state(64, 64)
    s.clicks = [(20, 30), (40, 30)]
    settings = dh.DiffSettings(lora_steps=1, ddim_steps=10, max_steps=12, preview_every=1, stop_distance=0.0)
    token = CancelToken()

    def stop_at_drag_step_2(fraction, desc=""):
        if desc == "Dragging" and fraction and fraction[0] >= 2:
            token.cancel()  # the Stop button

    first = list(dh.run_edit(s, None, "a photo", settings, lambda: editor, cancel=token, progress=stop_at_drag_step_2))
    assert first[-1].status.startswith("Stopped after") and "Press Run to continue" in first[-1].status
    done = s.paused["steps"]
    assert 2 <= done < 12 and s.result is None
    counters = dict(editor.counters)
    token.reset()
    second = list(dh.run_edit(s, None, "a photo", settings, lambda: editor, cancel=token))
    assert second[0].status.startswith(f"Continuing the stopped drag (it had done {done} steps)")
    assert second[-1].status.startswith("Done") and s.result is not None and s.paused is None
    assert f"(continued after {done})" in second[-1].status
    assert editor.counters["lora_trained"] == counters["lora_trained"]
    assert editor.counters["inversion"] == counters["inversion"]  # LoRA and inversion reused
    # a change (here the points) starts over instead of continuing
    s.clicks = [(20, 30), (44, 30)]
    token2 = CancelToken()
    list(dh.run_edit(s, None, "a photo", settings, lambda: editor, cancel=token2,
                     progress=lambda f, desc="": token2.cancel() if desc == "Dragging" else None))
    s.clicks = [(20, 30), (40, 30)]
    third = list(dh.run_edit(s, None, "a photo", settings, lambda: editor))
    assert third[0].status == "Starting…"


def test_generate_is_refused_while_a_drag_of_the_same_session_is_queued_or_running():
    from stabledrag.webapp.ui import CancelTokens

    tokens = CancelTokens()
    me = type("Request", (), {"session_hash": "me"})()
    other = type("Request", (), {"session_hash": "other"})()
    assert not tokens.busy(me, "gan")
    tokens.arm(me, "gan")  # Start pressed (the drag may still wait in the queue)
    assert tokens.busy(me, "gan") and not tokens.busy(other, "gan") and not tokens.busy(me, "diff")
    token = tokens.begin(me, "gan")  # the drag runs
    assert tokens.busy(me, "gan")
    tokens.end(me, "gan", token)  # the drag ended
    assert not tokens.busy(me, "gan")


def test_diff_drag_settings_follow_the_chosen_model(tmp_path):
    from stabledrag.diffusion.recommended import SETTINGS_FILE, recommended_overrides

    folder = tmp_path / "my_model"
    folder.mkdir()
    assert recommended_overrides(folder) == {}  # no file: the presets as they are
    (folder / SETTINGS_FILE).write_text('{"edit": {"lr": 0.03, "inversion.num_steps": 12, "lora.batch_size": 2}}')
    rec = recommended_overrides(folder)
    mine = dh.DiffSettings.model_values("cpu", rec)
    other = dh.DiffSettings.model_values("cpu", {})
    assert mine["lr"] == 0.03 and mine["ddim_steps"] == 12
    assert other == {"lora_steps": dh.CPU_LORA_STEPS, "ddim_steps": dh.CPU_DDIM_STEPS, "max_steps": dh.CPU_DRAG_STEPS,
                     "lr": dh.DiffSettings.lr, "stop_distance": dh.DiffSettings.stop_distance}
    assert dh.DiffSettings.defaults_for("cpu", {"lr": "fast"}).lr == dh.DiffSettings.lr  # page still opens
    # picking a model changes only what it recommends, and puts back what only the previous one did
    assert dh.DiffSettings.model_change("cpu", rec, {}) == {"ddim_steps": 12, "lr": 0.03}
    assert dh.DiffSettings.model_change("cpu", {}, rec) == {"ddim_steps": dh.CPU_DDIM_STEPS, "lr": dh.DiffSettings.lr}
    assert dh.DiffSettings.model_change("cpu", {"max_steps": 9}, rec) == {
        "ddim_steps": dh.CPU_DDIM_STEPS, "max_steps": 9, "lr": dh.DiffSettings.lr}
    assert dh.DiffSettings.model_change("cpu", {}, {}) == {}  # the person's LoRA / drag steps stay
    (folder / SETTINGS_FILE).write_text('{"edit": ["lr", 1]}')
    with pytest.raises(UserError, match="expected"):
        recommended_overrides(folder)


def test_the_baseline_shows_no_confidence_it_does_not_have(tiny_generator):
    s = GanState()
    gh.generate(s, "tiny", 3, 0.7, tiny_generator)
    s.clicks = [(8, 8), (14, 8)]
    frames = list(gh.run_drag(s, None, gh.GanSettings(method="baseline", max_steps=2, preview_every=1),
                              tiny_generator))
    assert all("confidence" not in f.status for f in frames[1:]) and "#1" in frames[-1].status
    assert s.last_result["confidence"] is None


def test_diff_compare_runs_stabledrag_and_the_baseline_on_the_same_input_and_keeps_the_tabs_result(tmp_path):
    from stabledrag.diffusion.editor import DiffusionEditor
    from stabledrag.diffusion.tiny import build_tiny_pipeline

    editor = DiffusionEditor(pipeline=build_tiny_pipeline(image_size=64), lora_cache_dir=str(tmp_path / "lora"))
    s = loaded_diff_state(64, 64)
    s.clicks = [(20, 30), (30, 30)]
    previous = np.full((64, 64, 3), 7, np.uint8)
    s.result = previous  # the tab's own last result
    settings = dh.DiffSettings(lora_steps=1, ddim_steps=10, max_steps=3, preview_every=0, stop_distance=0.0)
    out = list(dh.run_compare(s, None, "a photo", settings, lambda: editor))
    assert any(isinstance(v.status, str) and v.status.startswith("Compare, run 1 of 2 (StableDrag)") for v in out)
    assert any(isinstance(v.status, str) and v.status.startswith(f"Compare, run 2 of 2 ({BASELINE_LABEL})")
               for v in out)
    final = out[-1]
    assert final.status.startswith("Compared from the same image and points")
    assert "StableDrag" in final.compare_table and BASELINE_LABEL in final.compare_table
    assert "handle 1" in final.compare_table and final.compare_table.count(" px") >= 2
    assert final.compare.ndim == 3 and final.compare.shape[1] > final.compare.shape[0]  # two panels side by side
    # the baseline run reused the StableDrag run's LoRA and inversion
    assert editor.counters["lora_trained"] == 1 and editor.counters["inversion"] == 1
    # the tab's own result and points are untouched, and the slider shows it again
    assert s.result is previous and s.clicks == [(20, 30), (30, 30)] and s.paused is None
    assert final.result[1] is previous


def test_compare_stops_and_keeps_nothing_when_the_points_change_or_stop_is_pressed(tiny_generator):
    from stabledrag.webapp import compare

    s = GanState()
    gh.generate(s, "tiny", 4, 0.7, tiny_generator)
    s.clicks = [(8, 8), (14, 8)]
    w0 = s.w.copy()
    run = gh.run_compare(s, None, gh.GanSettings(max_steps=20, preview_every=1), tiny_generator)
    next(run)
    next(run)
    views.delete_pair(s, 1)  # a point edit while the comparison runs
    rest = list(run)
    assert rest[-1].status == compare.CHANGED_MESSAGE and rest[-1].compare is views.KEEP
    assert np.array_equal(s.w, w0) and s.clicks == []

    s.clicks = [(8, 8), (14, 8)]
    token = CancelToken()
    run = gh.run_compare(s, None, gh.GanSettings(max_steps=20, preview_every=1), tiny_generator, cancel=token)
    next(run)
    next(run)
    token.cancel()  # the Stop button
    rest = list(run)
    assert rest[-1].status == compare.STOPPED_MESSAGE and rest[-1].compare is views.KEEP
    assert not any(v.compare is not views.KEEP for v in rest)
    assert np.array_equal(s.w, w0) and s.clicks == [(8, 8), (14, 8)]


def test_elapsed_time_and_an_estimate_of_what_is_left_while_dragging(tiny_generator):
    assert views.time_text(12.2, 3, 10) == "12 s, about 28 s left at most"  # 12.2 s / 3 steps * 7 steps left
    assert views.time_text(5, 10, 10) == "5 s"  # the last step: nothing left to estimate
    assert views.time_text(5, 0, 10) == "5 s" and views.time_text(5, 4, None) == "5 s"
    s = GanState()
    gh.generate(s, "tiny", 2, 0.7, tiny_generator)
    s.clicks = [(4, 4), (28, 28)]  # far: the drag cannot reach it in 3 steps
    statuses = [v.status for v in gh.run_drag(s, None, gh.GanSettings(max_steps=3, preview_every=1), tiny_generator)
                if isinstance(v.status, str)]
    mid = [t for t in statuses if re.match(r"Dragging: step [1-9]", t)]
    assert re.match(r"Dragging: step 1 of at most 3 \(\d+ s, about \d+ s left at most\)", mid[0]), mid
    assert re.match(r"Dragging: step 3 of at most 3 \(\d+ s\)", mid[-1]), mid


def test_dragging_a_handle_out_of_the_painted_region_warns_at_once():
    s = loaded_diff_state(64, 64)
    k = s.scale
    s.mask = np.zeros((64, 64), bool)
    s.mask[:32] = True  # the top half may change
    views.set_points_text(s, "10,10:20,10")
    assert "outside the painted region" not in views.points_view(s).status
    v = views.drag_marker(s, ((10.5 * k, 10.5 * k), (10.5 * k, 50.5 * k)))  # handle 1 into the fixed half
    assert s.clicks[0] == (10, 50)
    assert "Warning: handle 1 is outside the painted region" in v.status
    v = views.drag_marker(s, ((10.5 * k, 50.5 * k), (12.5 * k, 12.5 * k)))
    assert "outside the painted region" not in v.status
