"""README screenshots of the GAN tab's "Upload a photo", taken by headless Chromium as a user would:

    python -m scripts.screenshots_photo [--photo assets/examples/toy_face_1.png] [--out assets/screenshots]

Starts the app in-process (bundled toy GAN unless `--gan-model`), opens the GAN tab, uploads the
photo, waits for the projection (screenshot while projecting and after), with `--more-steps`
presses "More steps" once (screenshot while refining), clicks an eye and a
target above it (found by `stabledrag.toy.detect` on the projected image), presses Start
(screenshot after the drag), then downloads the image and checks that it has the photo's size
(paste-back). Writes `gan_projected_{projecting,projected,dragged}.png` and the download as
`gan_projected_download.png`. Needs `playwright` and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

from scripts.screenshots import (DEFAULT_OUT, HANDLE_PLACED, PAIR_READY, _click_image_px, _shown_image, _shot_when,
                                 _wait_status, app_page, start_script)
from stabledrag.paths import EXAMPLES_DIR

log = logging.getLogger(__name__)
DEFAULT_PHOTO = EXAMPLES_DIR / "toy_face_1.png"


def photo_flow(page: Any, photo: Path, out: Path, timeout_s: float, more_steps: bool = False) -> dict[str, Any]:
    """Upload -> project -> (with `more_steps`: press "More steps" once) -> drag an eye -> download.
    Returns what was seen (status lines, quality lines, sizes)."""
    from PIL import Image

    seen: dict[str, Any] = {}
    page.get_by_role("tab", name="StableDrag-GAN").click()
    _wait_status(page, "gan", r"^Generated seed", timeout_s)
    page.get_by_text("Upload a photo (project it into the generator").click()
    page.locator("#gan_photo input[type=file]").set_input_files(str(photo))
    _shot_when(page, "gan", r"^(Projecting|Pivotal)", out / "gan_projected_projecting.png", timeout_s)
    seen["projected"] = _wait_status(page, "gan", r"^(Projected the photo|Something|Projection stopped)", timeout_s)
    page.wait_for_timeout(1000)
    page.locator("#gan_photo_quality").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "gan_projected_projected.png"), full_page=True, animations="disabled")
    seen["quality"] = page.locator("#gan_photo_quality").inner_text()
    if more_steps:
        page.locator("#gan_photo_more").click()
        _shot_when(page, "gan", r"^Refining", out / "gan_projected_refining.png", timeout_s)
        seen["more_steps"] = _wait_status(page, "gan", r"^(Projected the photo|Something|Projection stopped)",
                                          timeout_s)
        page.wait_for_timeout(1000)
        seen["quality_after_more_steps"] = page.locator("#gan_photo_quality").inner_text()

    from stabledrag.gan.checkpoints import load_generator

    res = load_generator(None, "cpu").img_resolution
    small, size = _shown_image(page, "#gan_result img", f"({res}x{res})")
    from stabledrag.toy.detect import detect

    det = detect(small)
    eye = det.right_eye or (0.62 * res, 0.42 * res)
    target = (eye[0], eye[1] - 0.06 * res)
    _click_image_px(page, "#gan_canvas img", eye, size, expect=HANDLE_PLACED)
    _click_image_px(page, "#gan_canvas img", target, size, expect=PAIR_READY)
    page.wait_for_timeout(1000)
    seen["points"] = page.locator("#gan_status textarea").input_value()
    print("after the clicks:", seen["points"], flush=True)
    page.locator("#gan_start").click()
    try:
        seen["dragged"] = _wait_status(page, "gan", r"^(Reached|Ran out|Stopped|Something)", timeout_s)
    except TimeoutError:
        page.screenshot(path=str(out / "gan_projected_debug.png"), full_page=True)
        raise
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "gan_projected_dragged.png"), full_page=True, animations="disabled")
    after, _ = _shown_image(page, "#gan_result img", f"({res}x{res})")
    seen["eye_before"], seen["target"] = [round(v, 1) for v in eye], [round(v, 1) for v in target]
    moved = detect(after).right_eye
    seen["eye_after"] = None if moved is None else [round(v, 1) for v in moved]

    with page.expect_download() as info:
        page.locator("#gan_download").click()
    dl_path = out / "gan_projected_download.png"
    shutil.copy(info.value.path(), dl_path)
    seen["download_size"] = list(Image.open(dl_path).size)
    seen["photo_size"] = list(Image.open(photo).size)
    return seen


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start the app, run the flow, print what was seen."""
    p = argparse.ArgumentParser(prog="python -m scripts.screenshots_photo", description=__doc__.split("\n")[0])
    p.add_argument("--photo", default=str(DEFAULT_PHOTO))
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--gan-model", default=None)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--more-steps", action="store_true",
                   help="press 'More steps' once after projecting (screenshot gan_projected_refining.png)")
    args = p.parse_args(argv)
    started = start_script()
    if started is None:
        return 2
    sync_playwright, app_args = started
    if args.gan_model:
        app_args += ["--gan-model", args.gan_model]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with app_page(sync_playwright, app_args, accept_downloads=True) as page:
        page.get_by_role("tab", name="StableDrag-GAN").wait_for()
        seen = photo_flow(page, Path(args.photo), out, args.timeout, more_steps=args.more_steps)
    import json

    print(json.dumps(seen, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
