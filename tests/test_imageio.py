"""The one image/mask reader (`stabledrag.imageio`), once with every kind of file it may meet."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stabledrag.errors import UserError
from stabledrag.imageio import (ImageInputError, read_image, read_image_array, read_mask, read_rgba_array,
                                sniff_format)
from stabledrag.limits import Limits


def _save(im, fmt="PNG", **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w=40, h=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 100)], -1).astype(np.uint8)


def test_error_type_is_a_user_error():
    assert issubclass(ImageInputError, UserError) and issubclass(ImageInputError, ValueError)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_round_trip(fmt):
    arr = _gradient()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    assert (read_image_array(_save(Image.fromarray(arr), fmt, **kw)) == arr).all()


def test_jpeg_is_read():
    arr = _gradient()
    out = read_image_array(_save(Image.fromarray(arr), "JPEG", quality=95))
    assert out.shape == arr.shape and np.abs(out.astype(int) - arr).mean() < 4


def test_path_and_bytes_read_the_same(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(_gradient()).save(p)
    assert (read_image_array(str(p)) == read_image_array(p.read_bytes())).all()


def test_16_bit_grey_is_scaled_by_its_bit_depth():
    # issue 13 #7: a mid-grey 16-bit PNG must stay mid-grey (not 98 % white)
    arr = np.full((30, 40), 32896, np.uint16)  # 32896 / 257 = 128
    arr[:, :20] = 65535
    arr[:5, :5] = 0
    im = Image.fromarray(arr)
    assert im.mode.startswith("I;16")
    out = read_image_array(_save(im))
    assert out[20, 30].tolist() == [128, 128, 128]
    assert out[20, 10].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("orientation,expect_size", [(1, (40, 30)), (3, (40, 30)), (6, (30, 40)), (8, (30, 40))])
def test_exif_orientation_is_applied(orientation, expect_size):
    # issue 13 #8: points refer to what a person sees, so the reader rotates like a viewer does
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)  # a red top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = read_image(_save(Image.fromarray(arr), "PNG", exif=exif.tobytes()))
    assert out.size == expect_size
    red = np.argwhere(np.asarray(out)[..., 0] == 255)
    assert len(red) == 1
    y, x = red[0]
    corner = {1: (0, 0), 3: (29, 39), 6: (0, 29), 8: (39, 0)}[orientation]
    assert (y, x) == corner


def test_transparency_is_composited_on_white():
    # issue 13 #9: the hidden colour under alpha 0 never shows
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = (10, 200, 10)  # hidden green
    rgba[:, 20:, 3] = 255
    out = read_image_array(_save(Image.fromarray(rgba, "RGBA")))
    assert out[5, 5].tolist() == [255, 255, 255]
    assert out[5, 30].tolist() == [10, 200, 10]
    la = Image.fromarray(np.stack([np.full((30, 40), 50, np.uint8), np.zeros((30, 40), np.uint8)], -1), "LA")
    assert read_image_array(_save(la))[0, 0].tolist() == [255, 255, 255]


def test_palette_with_transparency_and_cmyk():
    p = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p.info["transparency"] = int(np.asarray(p)[0, 0])
    out = read_image_array(_save(p, transparency=int(np.asarray(p)[0, 0])))
    assert out[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    out = read_image_array(_save(cmyk, "JPEG", quality=95))
    assert out.shape == (30, 40, 3) and out[15, 20, 0] > 200 and out[15, 20, 1] < 60


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    blob = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = read_image_array(blob)
    assert out[10, 10, 0] > 200 and out[10, 10, 2] < 50


def test_huge_image_is_refused_before_decoding():
    # a PNG header claiming 13000 x 13000 in a few KB: refused by its header, with the size
    blob = _png_header_only(13000, 13000)
    with pytest.raises(ImageInputError, match=r"too large \(13000x13000 pixels\).*40 megapixels"):
        read_image(blob)
    with pytest.raises(ImageInputError, match="too large"):
        read_image(_save(Image.new("RGB", (200, 100))), limits=Limits(max_pixels=10_000))


def test_50_to_179_megapixels_is_too_large_not_damaged():
    # issue 13 #14: such an upload was told it was "damaged or truncated"
    with pytest.raises(ImageInputError, match="too large"):
        read_image(_png_header_only(9000, 9000))  # 81 MP
    with pytest.raises(ImageInputError, match="too large"):
        read_image(_png_header_only(20000, 20000))  # 400 MP: Pillow's own bomb check


def test_tiny_image_is_refused():
    # issue 13 #14: an 8x8 upload was accepted silently
    with pytest.raises(ImageInputError, match=r"only 8x8 pixels; use one at least 16"):
        read_image(_save(Image.new("RGB", (8, 8))))


def test_truncated_file_is_reported_as_damaged():
    blob = _save(Image.fromarray(_gradient(200, 150)))
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        read_image(blob[: len(blob) // 2])


@pytest.mark.parametrize("blob", [
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n",  # EPS: Ghostscript must never run
    b"\xc5\xd0\xd3\xc6" + b"\0" * 40,  # DOS EPS binary header
    b"%PDF-1.4 not an image",
    b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    b"8BPS" + b"\0" * 40,  # PSD
    b"\0\0\0\x18ftypheic" + b"\0" * 16,
])
def test_non_raster_formats_are_refused_before_pillow(blob, monkeypatch):
    import PIL.Image

    def never(*a, **k):
        raise AssertionError("Pillow must not be asked to open a non-raster file")

    monkeypatch.setattr(PIL.Image, "open", never)
    with pytest.raises(ImageInputError, match="not a PNG, JPEG, WebP, BMP, GIF or TIFF picture"):
        read_image(blob)


def test_eps_named_png_is_refused():
    assert sniff_format(b"%!PS-Adobe-3.0 EPSF") is None
    with pytest.raises(ImageInputError, match="not a PNG"):
        read_mask(b"%!PS-Adobe-3.0 EPSF-3.0\n")


def test_file_byte_limit_and_missing_file(tmp_path):
    blob = _save(Image.fromarray(_gradient()))
    with pytest.raises(ImageInputError, match="too large.*under"):
        read_image(blob, limits=Limits(max_file_bytes=100))
    with pytest.raises(ImageInputError, match=r"'nope.png' does not exist") as e:
        read_image(str(tmp_path / "nope.png"))
    assert str(tmp_path) not in str(e.value)  # no server path in the message
    with pytest.raises(ImageInputError, match="empty"):
        read_image(b"")


def test_masks_rgba_alpha_is_paint_else_luminance():
    a = np.zeros((30, 40, 4), np.uint8)
    a[..., :3] = 255  # white everywhere, but only the opaque part is painted
    a[10:20, 10:20, 3] = 200
    m = read_mask(_save(Image.fromarray(a, "RGBA")))
    assert m.sum() == 100 and m[15, 15] and not m[0, 0]
    la = np.zeros((30, 40, 2), np.uint8)
    la[:5, :, 1] = 255
    assert read_mask(_save(Image.fromarray(la, "LA"))).sum() == 5 * 40
    grey = np.zeros((30, 40), np.uint8)
    grey[:, :10] = 255
    grey[:, 10:20] = 100  # below 0.5: not editable
    assert read_mask(_save(Image.fromarray(grey))).sum() == 30 * 10
    opaque = np.dstack([np.stack([grey] * 3, -1), np.full((30, 40), 255, np.uint8)])
    assert read_mask(_save(Image.fromarray(opaque, "RGBA"))).sum() == 30 * 10  # fully opaque: luminance
    m16 = np.zeros((30, 40), np.uint16)
    m16[:, :4] = 65535
    assert read_mask(_save(Image.fromarray(m16))).sum() == 30 * 4


def test_mask_resized_to_the_image_and_empty_mask():
    grey = np.zeros((30, 40), np.uint8)
    grey[:, :20] = 255
    m = read_mask(_save(Image.fromarray(grey)), size=(80, 60))
    assert m.shape == (60, 80) and m[:, :40].all() and not m[:, 40:].any()
    with pytest.raises(ImageInputError, match="marks nothing as editable"):
        read_mask(_save(Image.new("L", (40, 30))), require_some=True)


def test_brush_layer_keeps_its_alpha():
    a = np.zeros((30, 40, 4), np.uint8)
    a[3:6, 3:6] = (255, 0, 180, 160)
    assert (read_rgba_array(_save(Image.fromarray(a, "RGBA"))) == a).all()


def _png_header_only(w, h):
    """A PNG whose IHDR claims w x h, with a tiny (invalid) IDAT: a bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))
