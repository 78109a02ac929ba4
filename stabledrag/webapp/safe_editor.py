"""`SafeImageEditor`: Gradio's ImageEditor whose images are decoded by `stabledrag.imageio`.

Gradio's own ImageEditor opens every background, layer and composite the browser sends with
`PIL.Image.open` (any Pillow format, Pillow's 178 MP bomb limit), before any handler runs; a
few hundred KB layer could take gigabytes. This subclass reads them through the app's one
reader instead: allow-listed formats only, at most `Limits.max_editor_pixels` each (the canvas
is the image enlarged to at most ~1 megapixel, so that is generous), RGBA out. Anything else
becomes a `gr.Error` with `ImageInputError`'s message, which Gradio shows in the page.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import gradio as gr
import numpy as np

from ..imageio import ImageInputError, read_rgba_array
from ..limits import LIMITS


class SafeImageEditor(gr.ImageEditor):
    """`gr.ImageEditor` (type "numpy", RGBA) decoding with `stabledrag.imageio` (see module doc)."""

    is_template = True  # the browser side is the stock ImageEditor

    def convert_and_format_image(self, file: Any, flatten_on_white: bool = False) -> Optional[np.ndarray]:
        """The image `file` (FileData or bytes) as `H x W x 4` uint8, or `H x W x 3` flattened on
        white when `flatten_on_white` (background and composite). gr.Error (the ImageInputError's
        message) when unusable."""
        if file is None:
            return None
        source = file if isinstance(file, (bytes, bytearray, memoryview)) else getattr(file, "path", None)
        if source is None:
            return None
        limits = dataclasses.replace(LIMITS, max_pixels=LIMITS.max_editor_pixels, min_side=1)
        try:
            rgba = read_rgba_array(source, "painting", limits)
        except ImageInputError as e:  # gr.Error: shown in the page even without show_error
            raise gr.Error(str(e), print_exception=False) from None
        if flatten_on_white:
            a = rgba[..., 3:4].astype(np.float32) / 255.0
            return (rgba[..., :3] * a + 255.0 * (1.0 - a)).round().astype(np.uint8)
        return rgba
