"""One drawing implementation: the app's point canvas and the benchmarks' sheets draw markers,
arrows and trajectories with `stabledrag.visualize.draw_drag`."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from stabledrag import visualize
from stabledrag.webapp import drawing


def _grey(size=128):
    return np.full((size, size, 3), 110, np.uint8)


def test_the_app_canvas_and_the_bench_sheet_draw_identical_markers():
    img = _grey()
    handles, targets = [(20, 30), (90, 100)], [(60, 30), (70, 60)]
    clicks = [handles[0], targets[0], handles[1], targets[1]]
    app = drawing.draw_points(img, clicks, scale=1)
    sheet = np.asarray(visualize.draw_points(img, handles, targets, radius=drawing.marker_radius(128, 128)))
    assert np.array_equal(app, sheet)
    assert not np.array_equal(app, img)  # something was drawn


def test_bench_points_are_red_handles_and_blue_targets_at_pixel_centres():
    img = _grey(64)
    out = np.asarray(visualize.draw_points(img, [(10, 20)], [(50, 40)], numbers=False))
    assert out.shape == (64, 64, 3)
    assert tuple(out[20, 10]) == visualize.HANDLE_RGB and tuple(out[40, 50]) == visualize.TARGET_RGB
    # an arrow between them: bright half-way along the line
    assert out[29:32, 29:32].max() > 200
    pending = np.asarray(visualize.draw_points(img, [(10, 20), (30, 30)], [(50, 40)], numbers=False))
    assert tuple(pending[30, 30]) == visualize.HANDLE_RGB
    assert (pending == np.array(visualize.TARGET_RGB, np.uint8)).all(axis=2).sum() == \
        (out == np.array(visualize.TARGET_RGB, np.uint8)).all(axis=2).sum()  # still one target only


def test_trajectories_are_drawn_under_the_markers_and_the_selected_marker_is_ringed():
    canvas = Image.new("RGB", (200, 200), (0, 0, 0))
    trail = [(20.0, 150.0), (100.0, 150.0), (180.0, 150.0)]
    visualize.draw_drag(ImageDraw.Draw(canvas), [((180.0, 150.0), (180.0, 40.0))], 8, trails=[trail],
                        numbers=False, selected=(180.0, 40.0))
    out = np.asarray(canvas)
    assert tuple(out[150, 60]) == visualize.HANDLE_RGB  # on the trajectory, away from any marker
    assert tuple(out[150, 180]) == visualize.HANDLE_RGB  # the handle marker on top of the trail's end
    assert tuple(out[40, 180]) == visualize.TARGET_RGB
    ring = (out == np.array(visualize.SELECTED_RGB, np.uint8)).all(axis=2)
    ys, xs = np.nonzero(ring)
    assert ring.any() and abs(xs.mean() - 180) < 1 and abs(ys.mean() - 40) < 1  # a ring round the target
    assert not ring[150].any()


def test_tile_lays_out_a_flat_list_row_by_row_with_white_padding():
    ims = [np.full((3, 4, 3), 10 * (k + 1), np.uint8) for k in range(5)]
    out = visualize.tile(ims, columns=2, pad=1)
    assert out.shape == (3 * 4 + 1, 2 * 5 + 1, 3) and out.dtype == np.uint8
    for k in range(5):
        r, c = divmod(k, 2)
        y, x = 1 + r * 4, 1 + c * 5
        assert (out[y:y + 3, x:x + 4] == 10 * (k + 1)).all()
    assert (out[0] == 255).all() and (out[9:12, 6:10] == 255).all()  # padding and the empty last cell
    assert visualize.tile(ims).shape == (2 * 5 + 2, 3 * 6 + 2, 3)  # default: ceil(sqrt(5)) = 3 columns, pad 2
    with pytest.raises(ValueError):
        visualize.tile([])
