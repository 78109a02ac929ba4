"""Images in and out of a Stable Diffusion model: any PIL image -> a valid model-size RGB image.

SD's VAE divides image sides by 8 and its UNet halves the latent 3 more times, so both image
sides must be multiples of 64 (`size_multiple(pipe)`). `prepare_image` converts any PIL image
(RGBA, LA, P, L, 16-bit, float, huge) to RGB and resizes it so its long side is the model's
resolution and both sides are multiples of that number, returning the per-axis scale that maps
points: model_xy = original_xy * scale. Both the LoRA tuner and the drag backend use it, so the
LoRA is trained on exactly the pixels that are later inverted.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

DEFAULT_MULTIPLE = 64


def size_multiple(pipe: Any) -> int:
    """Both image sides must be a multiple of this for `pipe`: VAE factor x 2**(UNet downsamples).

    64 for SD 1.x/2.x (8 x 2**3) and for the tiny test pipelines.
    """
    vae_factor = int(getattr(pipe, "vae_scale_factor", 8))
    n_down = len(pipe.unet.config.down_block_types)
    return vae_factor * 2 ** max(0, n_down - 1)


def model_resolution(pipe: Any) -> int:
    """The model's native image side in pixels: UNet sample_size x VAE factor (512 for SD 1.5)."""
    return int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL image as 8-bit RGB, exactly as `stabledrag.imageio.to_rgb` reads user files:
    transparency flattened onto `background` (white by default), 16-bit greyscale scaled by its
    bit depth (65535 -> 255), other integer/float greyscale by its own range."""
    from ..imageio import to_rgb as _to_rgb

    return _to_rgb(image, background)


def valid_size(width: int, height: int, target_long_side: int,
               multiple: int = DEFAULT_MULTIPLE) -> tuple[int, int]:
    """(width, height) with the long side = `target_long_side` rounded to `multiple`, the aspect
    ratio kept as closely as the grid allows, and each side at least `multiple`."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels: {width}x{height}")
    if multiple <= 0:
        raise ValueError(f"multiple must be > 0, got {multiple}")
    long_side = max(multiple, int(round(target_long_side / multiple)) * multiple)
    s = long_side / max(width, height)

    def snap(v: int) -> int:
        return max(multiple, int(round(v * s / multiple)) * multiple)

    return snap(width), snap(height)


def prepare_image(image: Image.Image, target_long_side: int,
                  multiple: int = DEFAULT_MULTIPLE) -> tuple[Image.Image, tuple[float, float]]:
    """Convert `image` to RGB and resize it to a size the model accepts.

    target_long_side: the long side in pixels (normally `model_resolution(pipe)`, 512 for SD 1.5);
    it is rounded to `multiple`, and the short side follows the aspect ratio, snapped to `multiple`.
    Returns (rgb_image, (scale_x, scale_y)) with model_xy = original_xy * scale, per axis because
    snapping can change the aspect ratio slightly. An image already at the right size and RGB
    is returned unchanged (same pixels).
    """
    rgb = to_rgb(image)
    w, h = valid_size(rgb.width, rgb.height, target_long_side, multiple)
    if (w, h) != rgb.size:
        # reducing_gap makes huge downscales fast (box-reduce first) while staying antialiased.
        rgb = rgb.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb, (w / image.width, h / image.height)
