"""prepare_image: any PIL image -> RGB at a size the SD model accepts, with the point scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stabledrag.diffusion.images import prepare_image, to_rgb, valid_size
from stabledrag.tensors import image_to_tensor, tensor_to_uint8


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "1", "CMYK", "I;16", "I", "F"])
def test_any_mode_becomes_rgb_with_valid_size(mode):
    img = Image.new("RGB", (300, 451), (10, 200, 30)).convert(mode)
    out, (sx, sy) = prepare_image(img, 512)
    assert out.mode == "RGB"
    assert out.width % 64 == 0 and out.height % 64 == 0 and max(out.size) == 512
    assert sx == pytest.approx(out.width / 300) and sy == pytest.approx(out.height / 451)


def test_aspect_ratio_is_kept_to_the_grid_and_extremes_survive():
    assert valid_size(300, 451, 512) == (320, 512)
    assert valid_size(451, 300, 512) == (512, 320)
    assert valid_size(5000, 10, 512) == (512, 64)  # at least one grid step
    assert valid_size(64, 64, 64) == (64, 64)
    assert valid_size(100, 100, 500) == (512, 512)  # target rounded to the grid
    with pytest.raises(ValueError):
        valid_size(0, 10, 512)


def test_transparent_pixels_are_flattened_onto_white():
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = to_rgb(img)
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)


def test_sixteen_bit_greyscale_is_scaled_by_its_bit_depth_not_clipped():
    arr = np.linspace(0, 60000, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = np.asarray(to_rgb(Image.fromarray(arr)))
    assert out.min() == 0 and out.max() == round(60000 / 257)  # as a viewer shows it, not clipped at 255


def test_prepared_image_is_a_fixed_point_and_huge_images_shrink():
    img = Image.fromarray((np.random.RandomState(0).rand(128, 192, 3) * 255).astype(np.uint8))
    same, scale = prepare_image(img, 192)
    assert scale == (1.0, 1.0) and np.array_equal(np.asarray(same), np.asarray(img))
    huge = Image.new("RGB", (6000, 4000), (1, 2, 3))
    out, (sx, sy) = prepare_image(huge, 512)
    assert out.size == (512, 320) and sx == pytest.approx(512 / 6000)


def test_tensor_round_trip():
    img = Image.fromarray((np.random.RandomState(1).rand(16, 8, 3) * 255).astype(np.uint8))
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 16, 8) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(tensor_to_uint8(t), np.asarray(img))
    assert torch.equal(image_to_tensor(np.asarray(img)), t)  # an array gives the same tensor
