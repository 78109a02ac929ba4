"""`python -m lora_tuning` — train an identity LoRA on one image and save it (diffusers format).

Example:
  python -m lora_tuning --model stable-diffusion-v1-5/stable-diffusion-v1-5 \
      --image photo.jpg --prompt "a photo of a cat" --out lora_cat --steps 80
The folder then holds pytorch_lora_weights.safetensors (load it with
`pipe.load_lora_weights(folder)`) and identity_lora.json (the settings used).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from stabledrag.diffusion.lora import IdentityLoraConfig


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the LoRA command."""
    d = IdentityLoraConfig()
    p = argparse.ArgumentParser(prog="python -m lora_tuning", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None,
                   help="hub id, diffusers folder or .safetensors/.ckpt file (default: bundled toy model, else SD 1.5)")
    p.add_argument("--config-dir", default=None, help="single-file checkpoints: local diffusers folder with configs")
    p.add_argument("--image", required=True, help="input image (any format PIL reads)")
    p.add_argument("--prompt", default="", help="text describing the image")
    p.add_argument("--out", required=True, help="output folder for the LoRA")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--rank", type=int, default=d.rank)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resolution", type=int, default=None, help="long side in pixels (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (2 with a one-line message for user errors)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from stabledrag.errors import UserError
    from stabledrag.progress import Cancelled, TerminalProgress

    bar = TerminalProgress(disable=args.quiet)
    try:
        try:
            config = IdentityLoraConfig(rank=args.rank, lr=args.lr, batch_size=args.batch_size, steps=args.steps,
                                        seed=args.seed, resolution=args.resolution)
        except ValueError as e:
            raise UserError(str(e)) from None
        image = _open_image(args.image)
        from stabledrag.diffusion.loading import load_pipeline

        from stabledrag.diffusion.lora import model_identity, prepare_training_image, save_lora, train_identity_lora

        pipe = load_pipeline(args.model, device=args.device, config_dir=args.config_dir)
        state = train_identity_lora(pipe, image, args.prompt, config, progress=bar)
        size = prepare_training_image(pipe, image, config).size
        path = save_lora(state, args.out, metadata={"model": model_identity(pipe), "prompt": args.prompt,
                                                    "config": config.to_dict(), "image": args.image,
                                                    "image_size": list(size)})
    except UserError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        bar.close()
        print("interrupted", file=sys.stderr)
        return 130
    bar.close()
    print(path)
    return 0


def _open_image(path: str):
    """The image at `path` read by `stabledrag.imageio` (the reader every entry point shares)."""
    from stabledrag.imageio import read_image

    return read_image(path)


if __name__ == "__main__":
    sys.exit(main())
