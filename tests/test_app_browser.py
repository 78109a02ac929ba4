"""End to end in headless Chromium (Playwright): load the page, click a handle and a target on the
GAN tab, Start, and check the image changed; a session exported with a painted region, imported
into a freshly loaded page, gives back the identical region on both tabs; Compare on both tabs; on
the Diff tab, clicks on the zoomed canvas land on exact image pixels, a marker is moved by
selecting it or by dragging it with the mouse (also zoomed), and Undo / Redo work. Skips when Playwright or
/usr/bin/chromium is missing, unless STABLEDRAG_REQUIRE_BROWSER=1 (set by CI), where it fails instead."""

import io
import os
import re
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow  # a real browser against a live app: ~3 min in all

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REQUIRED = os.environ.get("STABLEDRAG_REQUIRE_BROWSER", "") == "1"


def _need(ok: bool, why: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{why} (STABLEDRAG_REQUIRE_BROWSER=1)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(page URL, tiny GAN folder, temporary folder) of an app on a tiny 64 px GAN."""
    import importlib.util

    _need(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    _need(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed (apt-get install chromium)")
    from stabledrag.webapp.args import parse_args
    from stabledrag.testing import save_tiny_gan, save_tiny_sd
    from stabledrag.webapp.ui import build_demo

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser")
    gan = save_tiny_gan(root, resolution=64)
    sd = save_tiny_sd(root, image_size=64)
    demo = build_demo(parse_args(["--gan-model", gan, "--diffusion-model", sd, "--models-dir", str(root / "none"),
                                  "--lora-cache-dir", str(root / "lora"), "--device", "cpu"]))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None)
    try:
        yield url, gan, root
    finally:
        demo.close()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def page_url(served):
    return served[0]


@contextmanager
def _page(url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # the test machine is shared: page updates may take seconds

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(90_000)
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


def _image_at(page, selector):
    src = page.locator(selector).get_attribute("src")
    resp = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + src)
    assert resp.ok, src
    return np.asarray(Image.open(io.BytesIO(resp.body())).convert("RGB")), src


def test_gan_tab_click_points_drag_and_see_the_image_change(page_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(page_url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="StableDrag-GAN").click()
            status = page.locator("#gan_status textarea")
            expect(status).to_have_value(re.compile("Generated seed 0"), timeout=90_000)  # generated on load
            before, before_src = _image_at(page, "#gan_result img")

            canvas = page.locator("#gan_canvas img")
            box = canvas.bounding_box()
            # the 64 px image is shown 8x enlarged; clicks map back to image pixels
            # the page ignores a canvas click while the previous one is being handled: wait for each
            for (fx, fy), after in (((0.40, 0.50), "now click its target"), ((0.55, 0.45), "1 drag pair")):
                canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
                expect(status).to_have_value(re.compile(after))
            page.locator("#gan_points_panel").get_by_text("Points as text").click()  # open the panel
            text = page.locator("#gan_points textarea").input_value()
            (hx, hy), (tx, ty) = [tuple(map(int, p.split(","))) for p in text.split(":")]
            assert abs(hx - 0.40 * 64) <= 1.5 and abs(hy - 0.50 * 64) <= 1.5, text
            assert abs(tx - 0.55 * 64) <= 1.5 and abs(ty - 0.45 * 64) <= 1.5, text

            page.get_by_text("Advanced settings").last.click()
            _set_number(page, "gan_max_steps", 30)  # enough to change the image, quick on a busy machine too
            page.locator("#gan_start").click()
            expect(status).to_have_value(re.compile(r"^(Reached|Ran out)"), timeout=180_000)
            page.wait_for_function(f"document.querySelector('#gan_result img').src != {before_src!r}")
            after, _ = _image_at(page, "#gan_result img")
            assert after.shape == before.shape
            assert np.abs(after.astype(int) - before.astype(int)).mean() > 0.5, "the dragged image must differ"
        finally:
            browser.close()


def _band_mask(w, h):
    mask = np.zeros((h, w), bool)
    mask[h // 10: h // 2, w // 8: (3 * w) // 4] = True  # a band in the upper half, off-centre
    mask[h - 6:, 2:9] = True  # and a small patch in a corner
    return mask


def _session_mask(page, prefix):
    """Export the tab's session in the page and return the mask.png of the downloaded zip."""
    from playwright.sync_api import expect

    page.locator(f"#{prefix}_export").click()
    link = page.locator(f"#{prefix}_session_file a").first
    expect(link).to_have_attribute("href", re.compile(r"\.zip"), timeout=60_000)
    href = link.get_attribute("href")
    resp = page.request.get(href if href.startswith("http") else page.url.rstrip("/") + href)
    assert resp.ok, href
    with zipfile.ZipFile(io.BytesIO(resp.body())) as z:
        return np.asarray(Image.open(io.BytesIO(z.read("mask.png"))).convert("L")) > 127


def _import_and_read_back(page, prefix, zip_path, mask):
    """Import `zip_path` into the tab, let the region editor show it, read the editor's painting back
    ("Show painted region"), export again: the region must come back pixel for pixel."""
    from playwright.sync_api import expect

    status = page.locator(f"#{prefix}_status textarea")
    page.locator(f"#{prefix}_session_panel").get_by_text("Session:").first.click()
    page.locator(f"#{prefix}_session_import input[type=file]").set_input_files(str(zip_path))
    expect(status).to_have_value(re.compile("Session imported"), timeout=90_000)
    if prefix == "gan":
        page.locator("#gan_region_panel").get_by_text("Flexible region").first.click()
    page.wait_for_timeout(2500)  # the editor loads its background and the restored layer
    page.locator(f"#{prefix}_region").click()
    expect(status).to_have_value(re.compile(f"Editable region: {int(mask.sum())} of {mask.size} pixels"))
    back = _session_mask(page, prefix)
    assert back.shape == mask.shape and np.array_equal(back, mask), (int(back.sum()), int(mask.sum()))
    # and the editor shows it where it was painted: every layer has exactly its background's size
    # (Gradio's editor used to size a restored layer by its default 800 x 800 canvas and centre the
    # painting in it, so the region appeared shifted right and down, and the next stroke made that
    # shifted copy the mask)
    sizes = page.evaluate("""() => window.editor.layer_manager.image_container.children.map(
        c => { const b = c.getLocalBounds(); return [b.width, b.height]; })""")
    assert len(sizes) >= 2 and all(sz == sizes[0] for sz in sizes), sizes


def test_session_round_trip_gives_back_the_identical_region_on_both_tabs(served):
    from stabledrag.gan import load_generator
    from stabledrag.webapp import diff_handlers as dh
    from stabledrag.webapp import gan_handlers as gh
    from stabledrag.webapp.state import DiffState, GanState

    url, gan_path, root = served
    # Diff tab: an 80 x 48 picture (shown 7x enlarged, a size unlike the editor's default canvas)
    ys, xs = np.mgrid[0:48, 0:80]
    picture = np.stack([xs * 3, ys * 5, np.full_like(xs, 90)], -1).astype(np.uint8)
    ds = DiffState()
    dh.new_image(ds, picture, "a test image", max_side=1024)
    ds.clicks, ds.mask = [(20, 10), (30, 10)], _band_mask(80, 48)
    diff_zip = dh.export_session(ds, "a gradient", dh.DiffSettings()).session_file
    # GAN tab: the served tiny generator, under its menu label
    gs = GanState()
    label = f"{os.path.basename(gan_path)} (--gan-model)"
    gh.generate(gs, label, 2, 0.7, load_generator(gan_path, torch.device("cpu")))
    gs.clicks, gs.mask = [(20, 20), (30, 20)], _band_mask(64, 64)
    gan_zip = gh.export_session(gs, gh.GanSettings()).session_file

    with _page(url) as page:
        _import_and_read_back(page, "diff", diff_zip, ds.mask)
        page.get_by_role("tab", name="StableDrag-GAN").click()
        expect_generated = page.locator("#gan_status textarea")
        from playwright.sync_api import expect

        expect(expect_generated).to_have_value(re.compile("Generated seed"), timeout=90_000)
        _import_and_read_back(page, "gan", gan_zip, gs.mask)


def test_compare_on_the_gan_tab_shows_both_results_with_their_numbers(page_url):
    from playwright.sync_api import expect

    with _page(page_url) as page:
        page.get_by_role("tab", name="StableDrag-GAN").click()
        status = page.locator("#gan_status textarea")
        expect(status).to_have_value(re.compile("Generated seed 0"), timeout=90_000)
        page.locator("#gan_points_panel").get_by_text("Points as text").click()
        page.locator("#gan_points textarea").fill("26,32:34,30")
        page.get_by_role("button", name="Use these points").click()
        expect(status).to_have_value(re.compile("1 drag pair"))
        page.get_by_text("Advanced settings").last.click()
        steps = page.locator("#gan_max_steps input[type=number]")
        steps.fill("8")
        steps.press("Enter")
        page.locator("#gan_compare").click()
        expect(status).to_have_value(re.compile("^Compared"), timeout=180_000)
        table = page.locator("#gan_compare_table")
        expect(table).to_contain_text("StableDrag")
        expect(table).to_contain_text("Baseline (nearest-neighbour tracking, our settings)")
        text = table.inner_text()
        assert len(re.findall(r"\d+\.\d px", text)) == 2, text  # one distance per method
        image, _ = _image_at(page, "#gan_compare_image img")
        assert image.shape[1] > 1.5 * image.shape[0]  # the two results side by side


def _set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _load_noise_image(page, root, name, seed):
    """Upload a 64 x 64 random image to the Diff tab; return its status box once it says Loaded."""
    from playwright.sync_api import expect

    Image.fromarray((np.random.default_rng(seed).random((64, 64, 3)) * 255).astype(np.uint8)).save(root / name)
    status = page.locator("#diff_status textarea")
    page.locator("#diff_upload input[type=file]").set_input_files(str(root / name))
    expect(status).to_have_value(re.compile("^Loaded"))
    return status


def _type_diff_points(page, text):
    """Enter `text` (x,y:x,y) in the Diff tab's "Points as text" and apply it (one pair expected)."""
    from playwright.sync_api import expect

    page.locator("#diff_points_panel").get_by_text("Points as text").click()
    page.locator("#diff_points textarea").fill(text)
    page.locator("#diff_points_panel").get_by_role("button", name="Use these points").click()
    expect(page.locator("#diff_status textarea")).to_have_value(re.compile("1 drag pair"))


def test_diff_run_stopped_and_continued(served):
    from playwright.sync_api import expect

    url, _, root = served
    with _page(url) as page:
        status = _load_noise_image(page, root, "stop_me.png", seed=1)
        _type_diff_points(page, "20,30:40,30")
        page.locator("#diff_download").first.wait_for()
        assert page.locator("#diff_download").first.is_disabled()  # nothing to download yet
        page.get_by_text("Advanced settings").first.click()
        for elem_id, value in (("diff_lora_steps", 1), ("diff_ddim_steps", 10), ("diff_max_steps", 300),
                               ("diff_stop_distance", 0), ("diff_preview_every", 1)):
            _set_number(page, elem_id, value)
        page.locator("#diff_run").click()
        expect(status).to_have_value(re.compile("^Dragging: step [1-9]"), timeout=120_000)
        page.locator("#diff_stop").click()
        expect(status).to_have_value(re.compile("^Stopped after"), timeout=120_000)
        stopped = int(re.search(r"after (\d+) drag steps", status.input_value()).group(1))
        assert page.locator("#diff_download").first.is_disabled()
        _set_number(page, "diff_max_steps", 3)  # the step budget may change; the drag continues
        page.locator("#diff_run").click()
        expect(status).to_have_value(re.compile(f"^Done: .* more drag steps \\(continued after {stopped}\\)"),
                                     timeout=180_000)
        assert page.locator("#diff_download").first.is_enabled()


def test_diff_zoomed_clicks_move_a_marker_undo_redo_and_compare(served):
    from playwright.sync_api import expect

    url, _, root = served
    with _page(url) as page:
        status = _load_noise_image(page, root, "zoom_me.png", seed=2)
        page.locator("#diff_zoom").get_by_text("4×").click()
        # 64 px shown 8x, zoomed 4x around the centre: image pixels 24..39 at 32 canvas px each
        expect(status).to_have_value("Zoomed 4×: image pixels x 24-39, y 24-39 shown.")
        page.wait_for_timeout(500)
        canvas = page.locator("#diff_canvas img")
        points = page.locator("#diff_points textarea")
        page.locator("#diff_points_panel").get_by_text("Points as text").click()

        def click_cell(cx, cy):  # the centre of zoomed cell (cx, cy) of the 16 x 16 shown
            box = canvas.bounding_box()
            canvas.click(position={"x": box["width"] * (cx + 0.5) / 16, "y": box["height"] * (cy + 0.5) / 16})

        click_cell(3, 5)
        expect(status).to_have_value(re.compile("now click its target"))
        click_cell(10, 5)
        expect(points).to_have_value("27,29:34,29")  # exact image pixels
        click_cell(10, 5)  # on the target marker: selected
        expect(status).to_have_value(re.compile("^Selected target 1"))
        click_cell(12, 9)
        expect(points).to_have_value("27,29:36,33")
        page.locator("#diff_undo").click()
        expect(points).to_have_value("27,29:34,29")
        page.locator("#diff_redo").click()
        expect(points).to_have_value("27,29:36,33")

        page.get_by_text("Advanced settings").first.click()
        for elem_id, value in (("diff_lora_steps", 1), ("diff_ddim_steps", 10), ("diff_max_steps", 3),
                               ("diff_preview_every", 0)):
            _set_number(page, elem_id, value)
        page.locator("#diff_compare").click()
        expect(status).to_have_value(re.compile("^Compared"), timeout=240_000)
        table = page.locator("#diff_compare_table")
        expect(table).to_contain_text("Baseline (nearest-neighbour tracking, our settings)")
        assert len(re.findall(r"\d+\.\d px", table.inner_text())) == 2, table.inner_text()
        image, _ = _image_at(page, "#diff_compare_image img")
        assert image.shape[1] > 1.5 * image.shape[0]  # the two results side by side


def test_markers_move_by_dragging_them_with_the_mouse_also_zoomed(served):
    """A real mouse drag (down, move, up) from a marker to another place moves that marker to the
    exact image pixel under the release, at zoom 1 and 4; a click without movement still selects;
    Undo takes a drag back."""
    from playwright.sync_api import expect

    url, _, root = served
    with _page(url) as page:
        status = _load_noise_image(page, root, "drag_me.png", seed=3)
        _type_diff_points(page, "27,29:34,29")
        points = page.locator("#diff_points textarea")
        canvas = page.locator("#diff_canvas img")

        def at(x, y, shown):  # page position of the centre of shown image pixel (x, y) of `shown` x `shown`
            page.wait_for_function("() => { const i = document.querySelector('#diff_canvas img');"
                                   " return i && i.complete && i.naturalWidth > 0; }")
            canvas.scroll_into_view_if_needed()  # the mouse works in the viewport
            box = canvas.bounding_box()
            natural = canvas.evaluate("i => i.naturalWidth")  # 512: the 64 px image shown 8x
            r = min(box["width"], box["height"]) / natural  # fitted into its box and centred, as Gradio does
            ox, oy = (box["width"] - natural * r) / 2, (box["height"] - natural * r) / 2
            return (box["x"] + ox + (x + 0.5) * natural / shown * r, box["y"] + oy + (y + 0.5) * natural / shown * r)

        def drag(a, b, shown):
            page.mouse.move(*at(*a, shown))
            page.mouse.down()
            page.mouse.move(*at(*b, shown), steps=8)
            assert page.locator("#sd_marker_drag_hint").count() == 1  # the live hint follows the pointer
            page.mouse.up()
            assert page.locator("#sd_marker_drag_hint").count() == 0

        drag((27, 29), (20, 12), 64)  # handle 1, whole image shown (8x)
        expect(points).to_have_value("20,12:34,29")
        expect(status).to_have_value(re.compile(r"^Moved handle 1 to \(20, 12\)"))
        page.locator("#diff_zoom").get_by_text("4×").click()
        expect(status).to_have_value("Zoomed 4×: image pixels x 24-39, y 24-39 shown.")
        page.wait_for_timeout(500)
        drag((34 - 24, 29 - 24), (37 - 24, 26 - 24), 16)  # target 1 on the 4x zoomed canvas
        expect(points).to_have_value("20,12:37,26")
        expect(status).to_have_value(re.compile(r"^Moved target 1 to \(37, 26\)"))
        page.mouse.click(*at(37 - 24, 26 - 24, 16))  # a click without movement still selects
        expect(status).to_have_value(re.compile("^Selected target 1"))
        page.mouse.click(*at(37 - 24, 26 - 24, 16))  # and leaves it where it is
        expect(status).to_have_value(re.compile("^Target 1 stays"))
        page.locator("#diff_undo").click()
        expect(points).to_have_value("20,12:34,29")
