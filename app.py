"""StableDrag Studio web app: tabs "StableDrag-Diff" and "StableDrag-GAN".

Usage: python app.py [--host H] [--port P] [--share] [--diffusion-model M] [--gan-model CKPT]
                     [--device D] [--dtype auto|fp32|fp16|bf16] [--models-dir DIR]

Runs offline on a CPU with the bundled toy models; any Stable Diffusion 1.x/2.x model (diffusers
folder, single file, or SD 1.5 from the hub where it is reachable) and any StyleGAN2 checkpoint
can be named instead. The page itself lives in `stabledrag.webapp.ui`; this file only starts it.
"""

from __future__ import annotations

# On a ZeroGPU Space `spaces` must be imported before anything touches CUDA.
from stabledrag.webapp.spaces_compat import on_spaces

import logging
import sys
from typing import Optional, Sequence


def build_demo(argv: Optional[Sequence[str]] = None):
    """The Gradio Blocks page for the command-line arguments `argv` (None: no arguments)."""
    from stabledrag.webapp.args import parse_args
    from stabledrag.webapp.ui import build_demo as build

    return build(parse_args(list(argv or [])))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse arguments, build the page and serve it until interrupted."""
    from stabledrag.errors import UserError
    from stabledrag.webapp.args import parse_args
    from stabledrag.webapp.ui import build_demo as build, launch_kwargs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    options = parse_args(argv)
    if on_spaces():
        options.host = "0.0.0.0"  # Spaces route to the container's port 7860
    try:
        demo = build(options)
    except UserError as e:  # e.g. --device cuda on a machine without CUDA
        print(f"error: {e}", file=sys.stderr)
        return 2
    if options.share:
        demo.launch(**launch_kwargs(options))
        return 0
    # Gradio's own start-up lines tell people to "set share=True in launch()"; this app has --share
    _, local_url, _ = demo.launch(**launch_kwargs(options), quiet=True, prevent_thread_lock=True)
    print(f"* Running on local URL:  {local_url}")
    print("* To create a public link, start the app with --share.")
    demo.block_thread()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
