"""StableDrag Studio web app (placeholder until the app lands): starts a Gradio page with the two tabs.

Usage: python app.py [--host H] [--port P] [--share]
"""

from __future__ import annotations

import argparse


def build_demo():
    """The Gradio Blocks page."""
    import gradio as gr

    with gr.Blocks(title="StableDrag Studio") as demo:
        gr.Markdown("# StableDrag Studio\nStable point-based image editing. The editor tabs are being built.")
        with gr.Tab("StableDrag-Diff"):
            gr.Markdown("Drag points on real photos with Stable Diffusion (coming in this release).")
        with gr.Tab("StableDrag-GAN"):
            gr.Markdown("Drag points on StyleGAN2 images, live (coming in this release).")
    return demo


def main(argv=None) -> None:
    """Parse arguments and launch the server."""
    p = argparse.ArgumentParser(description="StableDrag Studio web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true")
    args = p.parse_args(argv)
    build_demo().launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
