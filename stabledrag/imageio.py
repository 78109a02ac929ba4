"""The one way user images and masks are read: bytes or a path -> RGB image / bool mask.

Every entry point (web upload, region-editor layers, session import, the CLIs, lora_tuning,
bench) reads through here, so the same file gives the same pixels wherever it enters:

1. the file size is checked (`Limits.max_file_bytes`) and the format is sniffed from its first
   bytes *before* Pillow sees it: only PNG, JPEG, WebP, GIF, BMP and TIFF are accepted, and Pillow
   is told to try only that one plugin (so EPS/PDF/PSD/... decoders, and Ghostscript, never run);
2. the header's size is checked against `Limits.max_pixels` and `Limits.min_side` before any pixel
   is decoded (large decodes are also serialised, so concurrent requests cannot add up);
3. the first frame is decoded (animations), EXIF orientation applied (what a person sees is what
   points refer to), and the mode normalised: 16-bit / 32-bit greyscale scaled by their bit depth
   (not clipped), CMYK / palette / YCbCr / 1-bit converted, transparency composited onto
   `BACKGROUND` (the same neutral background the engines use);
4. masks: where the file has an alpha channel that is not fully opaque, alpha >= 0.5 is painted;
   otherwise luminance >= 0.5 is (white = editable).

Anything wrong raises `ImageInputError` (a `UserError`, so CLI exit code 2 and a message in the
page) with one sentence saying what to do; messages never contain server paths.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import UserError
from .limits import LIMITS, Limits

log = logging.getLogger(__name__)

Source = Union[bytes, bytearray, memoryview, str, os.PathLike]

#: Colour transparent areas are composited onto (also `stabledrag.diffusion.images.to_rgb`'s default).
BACKGROUND = (255, 255, 255)
#: Formats accepted, as Pillow names them, with the message's names.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
FORMATS_TEXT = "PNG, JPEG, WebP, BMP, GIF or TIFF"
#: Decodes of more pixels than this wait for one of `_BIG_DECODE_SLOTS` (bounded peak memory).
BIG_DECODE_PIXELS = 4_000_000
_BIG_DECODE_SLOTS = threading.BoundedSemaphore(1)
_held = threading.local()


class _BigDecodeSlot:
    """Holds one of `_BIG_DECODE_SLOTS` for a decode of more than BIG_DECODE_PIXELS (re-entrant
    within a thread, so `read_image` can keep it over decode, conversion and downscaling)."""

    def __init__(self, pixels: int) -> None:
        self.take = pixels > BIG_DECODE_PIXELS and not getattr(_held, "on", False)

    def __enter__(self) -> None:
        if self.take:
            _BIG_DECODE_SLOTS.acquire()
            _held.on = True

    def __exit__(self, *exc: object) -> None:
        if self.take:
            _held.on = False
            _BIG_DECODE_SLOTS.release()
            release_memory()


def release_memory() -> None:
    """Hand freed heap back to the operating system (glibc `malloc_trim`) after a large decode,
    so a burst of big uploads does not leave the process hundreds of MB larger. No-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ImageInputError(UserError):
    """An image or mask that cannot be used, with a message saying why and what to do."""


def sniff_format(head: bytes) -> Optional[str]:
    """The Pillow format name of a raster file from its first 16 bytes, or None when it is not
    one of `FORMATS` (EPS, PDF, SVG, HEIC, PSD, ... are all None)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def read_bytes(source: Source, what: str = "image", limits: Limits = LIMITS) -> bytes:
    """The bytes of `source` (bytes, or a file path), at most `limits.max_file_bytes`.
    ImageInputError when the file is missing, empty, unreadable or too large."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageInputError(f"The {what} file {path.name!r} does not exist.")
        try:
            size = path.stat().st_size
            if size > limits.max_file_bytes:
                raise ImageInputError(_too_big_file(what, size, limits))
            blob = path.read_bytes()
        except OSError as e:
            raise ImageInputError(f"Could not read the {what} file {path.name!r} ({e.strerror}).") from None
    if not blob:
        raise ImageInputError(f"The {what} file is empty.")
    if len(blob) > limits.max_file_bytes:
        raise ImageInputError(_too_big_file(what, len(blob), limits))
    return blob


def _too_big_file(what: str, size: int, limits: Limits) -> str:
    return (f"The {what} file is too large ({size / 2**20:.1f} MB); use one under "
            f"{limits.max_file_bytes // 2**20} MB.")


def open_image(source: Source, what: str = "image", limits: Limits = LIMITS) -> Image.Image:
    """Decode the first frame of `source` (checked as the module docstring says) with EXIF
    orientation applied, in its own mode (not yet converted). Raises ImageInputError."""
    blob = read_bytes(source, what, limits)
    fmt = sniff_format(blob[:16])
    if fmt is None:
        raise ImageInputError(f"The {what} is not a {FORMATS_TEXT} picture; convert it to PNG or JPEG first "
                              "(HEIC, SVG, PDF and EPS are not read).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(blob), formats=[fmt])
            w, h = im.size
            check_size(w, h, what, limits)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animations: the first frame
            with _BigDecodeSlot(w * h):
                im.load()
                im = _exif_transpose(im)
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        raise ImageInputError(_too_many_pixels(what, None, limits)) from None
    except UnidentifiedImageError:
        raise ImageInputError(f"The {what} looks like {fmt} but Pillow cannot read it; export it again "
                              "as PNG or JPEG.") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        log.info("damaged %s (%s): %s", what, fmt, e)
        raise ImageInputError(f"The {what} file is damaged or truncated ({fmt}); export it again and use "
                              "the new copy.") from None
    return im


def check_size(width: int, height: int, what: str = "image", limits: Limits = LIMITS) -> None:
    """ImageInputError when `width x height` exceeds `limits.max_pixels` or a side is below
    `limits.min_side`."""
    if width * height > limits.max_pixels:
        raise ImageInputError(_too_many_pixels(what, (width, height), limits))
    if min(width, height) < limits.min_side:
        raise ImageInputError(f"The {what} is only {width}x{height} pixels; use one at least "
                              f"{limits.min_side} pixels on each side.")


def _too_many_pixels(what: str, size: Optional[tuple[int, int]], limits: Limits) -> str:
    dims = f" ({size[0]}x{size[1]} pixels)" if size else ""
    return (f"The {what} is too large{dims}; use one under {limits.max_pixels // 1_000_000} megapixels "
            f"(this app works at most at 1024 pixels a side anyway).")


def _exif_transpose(im: Image.Image) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(im)
    except Exception as e:  # a malformed EXIF block: use the pixels as stored
        log.info("ignoring unreadable EXIF orientation: %s", e)
        return im
    return out if out is not None else im


def to_rgb(im: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Any decoded PIL image as 8-bit RGB (see the module docstring for each mode).

    16-bit greyscale ("I;16*", or "I" with values in 0..65535) is divided by 257, so 65535 -> 255;
    "I" beyond that range and "F" are scaled by their own range; "F" within [0, 1] by 255.
    """
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_grey_to_u8(im), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if im.mode in ("1", "L", "P", "CMYK", "YCbCr", "RGBX"):
        return im.convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError:
        raise ImageInputError(f"Images in colour mode {im.mode} are not supported; save it as RGB PNG or JPEG.") \
            from None


def _grey_to_u8(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im, dtype=np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and hi <= 65535):
        scaled = arr / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        scaled = arr * 255.0
    elif hi > lo:
        scaled = (arr - lo) / (hi - lo) * 255.0
    else:
        scaled = np.zeros_like(arr)
    return np.clip(scaled.round(), 0, 255).astype(np.uint8)


def read_image(source: Source, what: str = "image", limits: Limits = LIMITS,
               max_side: Optional[int] = None) -> Image.Image:
    """`source` (bytes or a path) as an 8-bit RGB PIL image, read as the module docstring says.
    `max_side`: scale down (Lanczos) so the long side is at most this, inside the decode slot, so
    concurrent large uploads never hold several full-size copies; the size before scaling is in
    `image.info["original_size"]` (W, H). Raises ImageInputError with a message for the person."""
    blob = read_bytes(source, what, limits)
    with _BigDecodeSlot(_header_pixels(blob)):
        im = open_image(blob, what, limits)
        original = im.size
        try:
            rgb = to_rgb(im)
        except UserError:
            raise
        except (OSError, ValueError) as e:
            raise ImageInputError(f"The {what} could not be converted to RGB ({type(e).__name__}); save it as an "
                                  "RGB PNG or JPEG.") from None
        del im
        if max_side is not None and max(rgb.size) > max_side:
            f = max_side / max(rgb.size)
            size = (max(1, round(rgb.width * f)), max(1, round(rgb.height * f)))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    rgb.info["original_size"] = original
    return rgb


def _header_pixels(blob: bytes) -> int:
    """Pixels the file's header claims (0 when it cannot say): chooses whether to take a slot."""
    fmt = sniff_format(blob[:16])
    if fmt is None:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(blob), formats=[fmt]) as im:
                return int(im.width) * int(im.height)
    except Exception:  # the real read reports the problem
        return 0


def read_image_array(source: Source, what: str = "image", limits: Limits = LIMITS,
                     max_side: Optional[int] = None) -> np.ndarray:
    """`read_image` as an `H x W x 3` uint8 array."""
    return np.asarray(read_image(source, what, limits, max_side))


def read_rgba_array(source: Source, what: str = "painting", limits: Limits = LIMITS) -> np.ndarray:
    """`source` as `H x W x 4` uint8 RGBA (for brush layers: alpha = paint), same checks. An image
    without alpha is opaque; 16-bit greyscale is scaled as in `to_rgb`."""
    im = open_image(source, what, limits)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        im = Image.fromarray(_grey_to_u8(im), "L")
    try:
        return np.asarray(im.convert("RGBA"))
    except ValueError:
        raise ImageInputError(f"The {what} is in an unsupported colour mode ({im.mode}).") from None


def mask_from_image(im: Image.Image) -> np.ndarray:
    """`H x W` bool (True = editable) from a decoded mask image: alpha >= 0.5 where the image has
    a not-fully-opaque alpha channel (a painting on a transparent layer), else luminance >= 0.5."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            return alpha >= 128
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _grey_to_u8(im) >= 128
    return np.asarray(im.convert("L")) >= 128


def read_mask(source: Source, size: Optional[tuple[int, int]] = None, what: str = "mask",
              limits: Limits = LIMITS, require_some: bool = False) -> np.ndarray:
    """A mask file as `H x W` bool (True = editable; see `mask_from_image`), resized with nearest
    neighbour to `size = (W, H)` when given and different. `require_some`: ImageInputError when
    nothing is marked editable. Raises ImageInputError as `open_image` does."""
    im = open_image(source, what, limits)
    mask = mask_from_image(im)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        log.warning("the %s is %dx%d, the image %dx%d: resizing the %s", what, mask.shape[1], mask.shape[0],
                    size[0], size[1], what)
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize(tuple(size), Image.Resampling.NEAREST)
        mask = np.asarray(small) >= 128
    if require_some and not mask.any():
        raise ImageInputError(f"The {what} marks nothing as editable: white (or painted) pixels are editable.")
    return mask


# Pillow must never accept a truncated file silently (a half-grey image would look like an edit).
ImageFile.LOAD_TRUNCATED_IMAGES = False
