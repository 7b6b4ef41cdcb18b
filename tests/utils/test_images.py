"""Colour conversion with transparency (``polymodal.utils.images.converted``), shared by training
and the deployment runtime."""

from __future__ import annotations

import numpy as np
from PIL import Image

from polymodal.utils.images import converted


def palette_with_transparent_entry() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putdata([0, 1])
    image.info["transparency"] = 0  # entry 0 (colour 10, 20, 30) is transparent
    return image


def test_a_palettes_transparent_entry_shows_the_background_and_none_keeps_its_colour():
    image = palette_with_transparent_entry()
    assert np.asarray(converted(image, "RGB", "white")).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    assert np.asarray(converted(image, "RGB", "black")).tolist() == [[[0, 0, 0], [200, 100, 50]]]
    assert np.asarray(converted(image, "RGB", None)).tolist() == [[[10, 20, 30], [200, 100, 50]]]  # Pillow's


def test_a_png_colour_key_is_transparency_too(tmp_path):
    Image.fromarray(np.array([[[10, 20, 30], [1, 2, 3]]], np.uint8)).save(tmp_path / "k.png", transparency=(10, 20, 30))
    image = Image.open(tmp_path / "k.png")
    assert image.mode == "RGB" and "transparency" in image.info
    assert np.asarray(converted(image, "RGB", "white")).tolist() == [[[255, 255, 255], [1, 2, 3]]]
    assert np.asarray(converted(image, "L", "black"))[0, 0] == 0
    assert np.asarray(converted(image, "RGB", None)).tolist() == [[[10, 20, 30], [1, 2, 3]]]


def test_opaque_images_convert_as_pillow_converts_them():
    rgb = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    for target in ("RGB", "L", "HSV"):
        expected = rgb.convert(target)
        assert np.array_equal(np.asarray(converted(rgb, target, "white")), np.asarray(expected))


def test_grey_means_one_channel_or_colour_channels_within_three_levels_of_each_other():
    from polymodal.utils.images import grey_image, grey_pixels

    level = np.full((4, 4, 3), 100, dtype=np.uint8)
    within, beyond = level.copy(), level.copy()
    within[1, 2] = (100, 103, 101)  # a compression's rounding
    beyond[1, 2] = (100, 104, 100)
    assert grey_pixels(within) and not grey_pixels(beyond)
    rgba = np.dstack([within, np.full((4, 4), 7, dtype=np.uint8)])  # alpha is no colour
    assert grey_image(Image.fromarray(rgba, "RGBA")) and not grey_image(Image.fromarray(beyond))
    for mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        assert grey_image(Image.new(mode, (4, 4))), mode
    palette = Image.new("P", (4, 4))
    palette.putpalette([200, 0, 0] * 256)  # every entry red
    assert not grey_image(palette)
