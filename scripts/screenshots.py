"""README screenshots of both tabs, mid-drag and after, taken by headless Chromium.

    python -m scripts.screenshots [--out assets/screenshots] [--tiny]

Starts the app in-process (bundled toy models by default; `--gan-model` / `--diffusion-model`
choose others, `--tiny` uses tiny random models to check the page without them), drives it with
Playwright like a person would — pick an example, paint the region, click a handle and a target,
Run / Start — and saves `diff_mid.png`, `diff_done.png`, `diff_compare.png`, `gan_mid.png`,
`gan_done.png`, and `gan_compare.png` (Compare: StableDrag and the baseline from the same image and
points). The Diff tab keeps the settings the page offers for the model (its own recommended ones)
unless `--lora-steps` / `--ddim-steps` / `--max-steps` are given.
The points are placed on the toy face's parts found by `stabledrag.toy.detect` when it finds them
(move the right eye up; move the mouth's right corner up), else at fixed places.
Needs `playwright` and Chromium at /usr/bin/chromium (Playwright's own download is not used).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from stabledrag.paths import SCREENSHOTS_DIR

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DEFAULT_OUT = SCREENSHOTS_DIR
VIEWPORT = {"width": 1440, "height": 1100}


def drag_for(image: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """A meaningful (handle, target) in image px for a toy face: the right eye 12 % of the size
    up, or the mouth's right corner up; fixed fractions when the detector finds neither."""
    h, w = image.shape[:2]
    try:
        from stabledrag.toy.detect import detect

        det = detect(image)
        if det.right_eye is not None:
            x, y = det.right_eye
            return (x, y), (x, max(0.0, y - 0.12 * h))
        if det.mouth_right is not None:
            x, y = det.mouth_right
            return (x, y), (min(w - 1.0, x + 0.06 * w), max(0.0, y - 0.1 * h))
    except Exception:  # the detector is a nicety here; any failure falls back to fixed points
        log.info("no face parts found; using fixed points")
    return (0.62 * w, 0.42 * h), (0.62 * w, 0.30 * h)


def _image(page: Any, selector: str) -> np.ndarray:
    import io

    from PIL import Image

    src = page.locator(selector).get_attribute("src")
    body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def _shown_image(page: Any, selector: str, status: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The image shown (enlarged) at `selector`, reduced to the `(W x H)` that `status` names."""
    w, h = (int(v) for v in re.search(r"\((\d+)x(\d+)\)", status).groups())
    big = _image(page, selector)
    f = max(1, big.shape[1] // w)
    return big[::f, ::f][:h, :w], (w, h)


def _click_image_px(page: Any, selector: str, xy: tuple[float, float], size: tuple[int, int],
                    expect: Optional[str] = None) -> None:
    """Click the displayed image at image pixel `xy` of an image of `size = (W, H)`. With `expect`,
    wait until the tab's status matches it: the page ignores a click on the canvas while the
    previous one is still being handled, so on a busy machine a second click sent too soon was lost
    (a status that never matches within 60 s is only a warning)."""
    loc = page.locator(selector)
    box = loc.bounding_box()
    loc.click(position={"x": (xy[0] + 0.5) / size[0] * box["width"], "y": (xy[1] + 0.5) / size[1] * box["height"]})
    if expect is not None:
        try:
            _wait_status(page, selector.lstrip("#").split("_")[0], expect, 60)
        except TimeoutError as e:  # e.g. a region refresh answered after the click and took the status line
            log.warning("%s; going on", e)
    page.wait_for_timeout(400)


def _wait_status(page: Any, tab: str, pattern: str, timeout_s: float) -> str:
    t0 = time.time()
    loc = page.locator(f"#{tab}_status textarea")
    while time.time() - t0 < timeout_s:
        value = loc.input_value()
        if re.search(pattern, value):
            return value
        time.sleep(0.25)
    raise TimeoutError(f"{tab}: status never matched {pattern!r} (last: {loc.input_value()!r})")


#: The status after a handle's click, and after its target's.
HANDLE_PLACED, PAIR_READY = r"now click its target", r"drag pair\(s\) ready"
#: A drag's live status past its first step (the mid-drag screenshot is taken then).
MID_DRAG = r"^Dragging: step ([2-9]|\d\d)"


def _shot_mid(page: Any, tab: str, path: Path, timeout_s: float, end: str) -> bool:
    """Screenshot as soon as the drag shows live progress past its first step. A short drag (tiny
    models and settings) can finish between two looks at the status, or before a second step: when
    the status matches `end` first, no mid-drag screenshot is taken (a warning says so) and False
    is returned, so the script goes on instead of waiting for a status that will not come."""
    status = _wait_status(page, tab, f"{MID_DRAG}|{end}", timeout_s)
    if not re.search(MID_DRAG, status):
        log.warning("%s: the drag ended before a mid-drag status was seen (%r); no %s", tab, status[:80], path.name)
        return False
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    print(f"wrote {path}")
    return True


def _shot_when(page: Any, tab: str, pattern: str, path: Path, timeout_s: float) -> str:
    """Screenshot the whole page once the tab's status matches `pattern` (and the page settled);
    returns the status."""
    status = _wait_status(page, tab, pattern, timeout_s)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    print(f"wrote {path}")
    return status


def import_playwright() -> Any:
    """`playwright.sync_api.sync_playwright`, or None (with a one-line error on stderr) when missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: install playwright (pip install playwright) and Chromium at /usr/bin/chromium", file=sys.stderr)
        return None
    return sync_playwright


def start_script() -> Optional[tuple[Any, list[str]]]:
    """The common start of the screenshot scripts: INFO logging, then `(sync_playwright, app_args)`
    with `app_args` starting the app on an empty models folder (it loads only the models named
    after it); None (with `import_playwright`'s one-line error) when Playwright is missing."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sync_playwright = import_playwright()
    if sync_playwright is None:
        return None
    return sync_playwright, ["--models-dir", tempfile.mkdtemp(prefix="stabledrag-none-")]


def _set_number(page: Any, elem_id: str, value: Any) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    if box.count() == 0:
        box = page.locator(f"#{elem_id} input")
    box.first.fill(str(value))
    box.first.press("Enter")


def _paint_box(page: Any, editor_id: str, fx: tuple[float, float], fy: tuple[float, float]) -> None:
    """Paint a filled rectangle (fractions of the editor canvas) with the brush."""
    page.locator(f'#{editor_id} button[aria-label="Brush"]').first.click()
    box = page.locator(f"#{editor_id} canvas").last.bounding_box()
    rows = np.linspace(fy[0], fy[1], 8)
    for r in rows:
        page.mouse.move(box["x"] + box["width"] * fx[0], box["y"] + box["height"] * r)
        page.mouse.down()
        for c in np.linspace(fx[0], fx[1], 10):
            page.mouse.move(box["x"] + box["width"] * c, box["y"] + box["height"] * r)
        page.mouse.up()
    page.wait_for_timeout(500)


def _paint_region(page: Any, image: np.ndarray, size: tuple[int, int], points: list) -> None:
    """Paint an editable box around `points` in the Diff editor; if the points then lie outside
    the region the app shows (the editor's zoom can make the guess miss), clear the painting."""
    xs, ys = [p[0] / size[0] for p in points], [p[1] / size[1] for p in points]
    # the editor shows the image inside a margin of its canvas: map image fractions roughly into it
    to_canvas = lambda f: 0.08 + 0.84 * min(1.0, max(0.0, f))  # noqa: E731
    _paint_box(page, "diff_editor", (to_canvas(min(xs) - 0.2), to_canvas(max(xs) + 0.2)),
               (to_canvas(min(ys) - 0.15), to_canvas(max(ys) + 0.15)))
    show = page.get_by_text("Show painted region on the points image")
    show.click()
    page.wait_for_timeout(1500)
    shown, _ = _shown_image(page, "#diff_canvas img", f"({size[0]}x{size[1]})")
    inside = all(np.abs(shown[int(y), int(x)].astype(int) - image[int(y), int(x)].astype(int)).max() < 8
                 for x, y in points)
    if not inside:
        log.info("the painted box missed the points; clearing it")
        page.locator('#diff_editor button[aria-label="Clear canvas"]').first.click()
        show.click()
        page.wait_for_timeout(800)


def diff_tab(page: Any, out: Path, steps: dict[str, int], timeout_s: float) -> None:
    """Example -> region -> points -> Run; screenshots mid-drag and after."""
    page.get_by_role("tab", name="StableDrag-Diff").click()
    page.locator("#diff_examples img").first.click()
    small, size = _shown_image(page, "#diff_canvas img", _wait_status(page, "diff", r"^Loaded", 60))
    (hx, hy), (tx, ty) = drag_for(small)
    _paint_region(page, small, size, [(hx, hy), (tx, ty)])
    _click_image_px(page, "#diff_canvas img", (hx, hy), size, expect=HANDLE_PLACED)
    _click_image_px(page, "#diff_canvas img", (tx, ty), size, expect=PAIR_READY)
    prompt = page.locator("#diff_prompt textarea")
    if not prompt.input_value().strip():  # an example brings its own prompt; keep it, as a person would
        prompt.fill("a cartoon face")
    page.get_by_text("Advanced settings").first.click()
    for name, value in steps.items():  # only what the caller sets: the rest stays the model's own settings
        if value is not None:
            _set_number(page, f"diff_{name}", value)
    page.locator("#diff_run").click()
    done = r"^(Done|Stopped|Model not available|Something)"
    _shot_mid(page, "diff", out / "diff_mid.png", timeout_s, done)
    _shot_when(page, "diff", done, out / "diff_done.png", timeout_s)
    page.locator("#diff_compare").click()
    _shot_when(page, "diff", r"^(Compared|Compare stopped|Something)", out / "diff_compare.png", timeout_s)


def gan_tab(page: Any, out: Path, timeout_s: float, max_steps: int = 40) -> None:
    """Generated image -> points -> Start; screenshots mid-drag and after; then Reset -> Compare."""
    page.get_by_role("tab", name="StableDrag-GAN").click()
    status = _wait_status(page, "gan", r"^Generated seed", timeout_s)
    small, size = _shown_image(page, "#gan_result img", status)
    (hx, hy), (tx, ty) = drag_for(small)
    _click_image_px(page, "#gan_canvas img", (hx, hy), size, expect=HANDLE_PLACED)
    _click_image_px(page, "#gan_canvas img", (tx, ty), size, expect=PAIR_READY)
    page.get_by_text("Advanced settings").last.click()
    _set_number(page, "gan_max_steps", max_steps)
    page.locator("#gan_start").click()
    done = r"^(Reached|Ran out|Stopped|Something)"
    _shot_mid(page, "gan", out / "gan_mid.png", timeout_s, done)
    _shot_when(page, "gan", done, out / "gan_done.png", timeout_s)
    page.locator("#gan_reset").click()
    _wait_status(page, "gan", r"^Back to the generated image", 60)
    page.locator("#gan_compare").click()
    _shot_when(page, "gan", r"^(Compared|Compare stopped)", out / "gan_compare.png", timeout_s)


def launch_app(app_args: list[str]) -> tuple[Any, str]:
    """Start the app (`app.py` options `app_args`) on a free local port without blocking; returns
    `(demo, url)`; call `demo.close()` when done."""
    from stabledrag.webapp.args import parse_args
    from stabledrag.webapp.ui import build_demo, launch_kwargs

    options = parse_args(app_args)
    demo = build_demo(options)
    kwargs = launch_kwargs(options)
    kwargs.update(prevent_thread_lock=True, quiet=True, server_port=None, server_name="127.0.0.1")
    _, url, _ = demo.launch(**kwargs)
    return demo, url


@contextmanager
def app_page(sync_playwright: Any, app_args: list[str], **page_options: Any) -> Iterator[Any]:
    """The app (`app.py` options `app_args`, started in-process by `launch_app`) opened in a headless
    Chromium page (`VIEWPORT`, 120 s default timeout, `page_options` for Playwright's `new_page`);
    the browser and the app are closed afterwards. `sync_playwright`: from `import_playwright`."""
    demo, url = launch_app(app_args)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, **page_options)
            page.set_default_timeout(120_000)
            page.goto(url, wait_until="domcontentloaded")
            yield page
            browser.close()
    finally:
        demo.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse arguments, start the app, take the four screenshots."""
    p = argparse.ArgumentParser(prog="python -m scripts.screenshots", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the PNGs (default assets/screenshots)")
    p.add_argument("--tiny", action="store_true", help="tiny random models instead of the bundled ones")
    p.add_argument("--gan-model", default=None)
    p.add_argument("--diffusion-model", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--lora-steps", type=int, default=None, help="default: the page's (the model's own settings)")
    p.add_argument("--ddim-steps", type=int, default=None)
    p.add_argument("--max-steps", "--drag-steps", type=int, default=None, dest="max_steps",
                   help="drag steps (the Diff tab's max_steps)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each run")
    p.add_argument("--skip-diff", action="store_true")
    p.add_argument("--skip-gan", action="store_true")
    args = p.parse_args(argv)
    started = start_script()
    if started is None:
        return 2
    sync_playwright, app_args = started
    if args.tiny:
        from stabledrag.testing import save_tiny_gan, save_tiny_sd

        root = Path(tempfile.mkdtemp(prefix="stabledrag-tiny-"))
        app_args += ["--gan-model", save_tiny_gan(root, resolution=64), "--diffusion-model", save_tiny_sd(root, 128)]
    if args.gan_model:
        app_args += ["--gan-model", args.gan_model]
    if args.diffusion_model:
        app_args += ["--diffusion-model", args.diffusion_model]
    if args.device:
        app_args += ["--device", args.device]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = {"lora_steps": args.lora_steps, "ddim_steps": args.ddim_steps, "max_steps": args.max_steps,
             "preview_every": 2}
    with app_page(sync_playwright, app_args) as page:
        page.locator("#diff_examples").wait_for()
        if not args.skip_gan:
            gan_tab(page, out, args.timeout)
        if not args.skip_diff:
            diff_tab(page, out, steps, args.timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
