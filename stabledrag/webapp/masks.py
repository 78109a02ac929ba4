"""The editable region from a `gr.ImageEditor` value.

The editor's value is a dict `{"background": img, "layers": [img, ...], "composite": img}` (numpy
`H x W x 4` with the app's `image_mode="RGBA"`); brush strokes are the opaque pixels of the
layers. The app shows the editor the canvas image (the input enlarged by an integer `scale`), so
the painting is reduced back to image pixels here: an image pixel is editable when at least
`MIN_COVERAGE` of its canvas block is painted.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PIL import Image

from ..errors import UserError

#: Fraction of an image pixel's canvas block that must be painted for it to count as editable.
MIN_COVERAGE = 0.25


def _as_array(x: Any) -> Optional[np.ndarray]:
    if x is None:
        return None
    if isinstance(x, Image.Image):
        return np.asarray(x.convert("RGBA"))
    arr = np.asarray(x)
    return arr if arr.ndim in (2, 3) and arr.size else None


def painted_alpha(value: Any) -> Optional[np.ndarray]:
    """`Hc x Wc` float32 in [0, 1]: how opaque the union of all brush layers is, or None when the
    value holds no layer. Layers of different sizes are resized (nearest) to the first one."""
    if not isinstance(value, dict):
        return None
    layers = [a for a in (_as_array(layer) for layer in (value.get("layers") or [])) if a is not None]
    if not layers:
        return None
    h, w = layers[0].shape[:2]
    alpha = np.zeros((h, w), dtype=np.float32)
    for a in layers:
        if a.ndim == 3 and a.shape[2] == 4:
            ch = a[..., 3]
        elif a.ndim == 3:  # RGB layer without alpha: any non-black pixel is paint
            ch = a.max(axis=2)
        else:
            ch = a
        ch = ch.astype(np.float32) / (255.0 if ch.dtype == np.uint8 else max(1.0, float(ch.max())))
        if ch.shape != (h, w):
            im = Image.fromarray((ch * 255).astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST)
            ch = np.asarray(im) / 255.0
        alpha = np.maximum(alpha, ch)
    return alpha


def mask_from_editor(value: Any, image_size: tuple[int, int]) -> Optional[np.ndarray]:
    """The editable region in image pixels: `H x W` bool (True = may change) for an image of
    `image_size = (W, H)`, or None when nothing is painted (then the whole image may change).

    The painting may be at any size (the enlarged canvas); it is reduced by area averaging.
    Raises UserError when something is painted but too thin to cover any image pixel.
    """
    alpha = painted_alpha(value)
    if alpha is None or not (alpha > 0).any():
        return None
    w, h = image_size
    if alpha.shape != (h, w):
        im = Image.fromarray(np.clip(alpha * 255, 0, 255).astype(np.uint8))
        alpha = np.asarray(im.resize((w, h), Image.Resampling.BOX)).astype(np.float32) / 255.0
    mask = alpha >= MIN_COVERAGE
    if not mask.any():
        raise UserError("The painted region is too thin to cover a whole pixel of the image; "
                        "paint a wider area with a bigger brush, or clear the painting.")
    return mask


def mask_to_png_array(mask: np.ndarray) -> np.ndarray:
    """`H x W` bool -> `H x W` uint8 (255 = editable), the form sessions and the CLI use."""
    return np.where(mask, 255, 0).astype(np.uint8)


def mask_from_png_array(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Inverse of `mask_to_png_array` for an image of `size = (W, H)` (resized if needed)."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a.max(axis=2)
    if (a.shape[1], a.shape[0]) != tuple(size):
        a = np.asarray(Image.fromarray(a.astype(np.uint8)).resize(tuple(size), Image.Resampling.NEAREST))
    return a > 127


#: Colour of restored brush strokes (RGBA), like the editor's default brush.
RESTORED_PAINT = (255, 0, 180, 160)


def editor_value(image: np.ndarray, mask: Optional[np.ndarray], scale: int) -> dict[str, Any]:
    """An ImageEditor value showing `image` (`H x W x 3`) enlarged by `scale`, with `mask` (`H x W`
    bool, or None) as one painted layer, so a restored session shows and keeps its region."""
    from .drawing import enlarge

    bg = enlarge(np.asarray(image)[..., :3], scale)
    h, w = bg.shape[:2]
    bg_rgba = np.concatenate([bg, np.full((h, w, 1), 255, np.uint8)], axis=2)
    layers = []
    if mask is not None:
        m = enlarge(mask.astype(np.uint8)[..., None], scale)[..., 0].astype(bool)
        layer = np.zeros((h, w, 4), np.uint8)
        layer[m] = RESTORED_PAINT
        layers.append(layer)
    return {"background": bg_rgba, "layers": layers, "composite": None}
