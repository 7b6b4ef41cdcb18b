"""Image preprocessing: decoding, colour, resize modes, normalisation, augmentation, guards."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from polymodal.config.preprocess import ImagePreprocess
from polymodal.data.modalities.image import ImagePreprocessor
from polymodal.errors import DecodeError, NotFittedError
from polymodal.utils.images import resize_image

from ..helpers import as_tensors, encode_values, write_image


def image(**options) -> ImagePreprocessor:
    return ImagePreprocessor("photo", ImagePreprocess(**{"size": 16, "resize": "stretch", **options}))


def chw(x: np.ndarray) -> np.ndarray:
    """Decoded images are cached (H, W, C); compare them as (C, H, W)."""
    return x.transpose(2, 0, 1)



def chw_batch(x: np.ndarray) -> np.ndarray:
    """Cached batches are (B, H, W, C); batches for the encoder are (B, C, H, W)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def gradient_rgb(height: int = 16, width: int = 16) -> np.ndarray:
    """A (H, W, 3) uint8 image whose channels vary along different axes (asymmetric)."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 255 // (height - 1), cols * 255 // (width - 1), (rows * cols) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".jpg"])
def test_file_formats_decode_like_pillow(tmp_path, suffix):
    pixels = gradient_rgb()
    path = write_image(tmp_path / f"a{suffix}", pixels)
    x = chw(image(color="rgb").decode(path))
    assert x.dtype == np.uint8 and x.shape == (3, 16, 16)
    np.testing.assert_array_equal(x, np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1))
    if suffix != ".jpg":  # lossless formats give back the written pixels
        np.testing.assert_array_equal(x, pixels.transpose(2, 0, 1))


@pytest.mark.parametrize(
    "array",
    [
        gradient_rgb(),  # (H, W, C)
        np.ascontiguousarray(gradient_rgb().transpose(2, 0, 1)),  # (C, H, W)
        gradient_rgb().astype(np.float32) / 255.0,  # floats in [0, 1]
    ],
    ids=["hwc", "chw", "float01"],
)
def test_npy_arrays_decode_like_images(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    x = chw(image(color="rgb").decode(str(tmp_path / "a.npy")))
    np.testing.assert_array_equal(x, gradient_rgb().transpose(2, 0, 1))


@pytest.mark.parametrize("color", ["gray", "rgb", "hsv"])
@pytest.mark.parametrize("layout", ["hw", "hw1", "hwc", "chw", "hwa", "float01", "shard-row"])
def test_arrays_at_the_target_size_decode_as_pillow_converts_them(tmp_path, color, layout):
    """Arrays already at the size are decoded without a resize (and, where the colour matches, without
    Pillow at all): the result is what Pillow's conversion of the same pixels gives."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    pixels = {"hw": rgba[..., 0], "hw1": rgba[..., :1], "hwc": rgba[..., :3], "chw": rgba[..., :3].transpose(2, 0, 1),
              "hwa": rgba, "float01": rgba[..., :3] / np.float32(255), "shard-row": rgba[..., :3]}[layout]
    if layout == "shard-row":
        np.save(tmp_path / "shard.npy", np.stack([pixels[::-1], pixels]))
        cell = f"{tmp_path / 'shard.npy'}#1"
    else:
        np.save(tmp_path / "a.npy", np.ascontiguousarray(pixels))
        cell = str(tmp_path / "a.npy")
    source = {"hw": "L", "hw1": "L", "hwa": "RGBA"}.get(layout, "RGB")
    reference = Image.fromarray(rgba[..., 0] if source == "L" else rgba if source == "RGBA" else rgba[..., :3])
    if source == "RGBA":  # transparent pixels show the (white) background
        reference = Image.alpha_composite(Image.new("RGBA", reference.size, (255, 255, 255, 255)), reference)
    reference = np.asarray(reference.convert("RGB").convert("HSV") if color == "hsv" else
                           reference.convert({"gray": "L", "rgb": "RGB"}[color]))
    for resize in ("stretch", "pad", "crop"):
        x = image(color=color, resize=resize).decode(cell)
        assert x.dtype == np.uint8 and x.shape == (16, 16, 1 if color == "gray" else 3)
        np.testing.assert_array_equal(x, reference.reshape(x.shape))


def test_16_bit_pixels_are_scaled_alike_from_arrays_and_files_of_either_byte_order(tmp_path):
    """A 0..60000 ramp: a uint16 .npy, a 16-bit PNG (I;16) and a big-endian TIFF (I;16B) all come out
    scaled by their maximum, not clipped at 255; integers up to 255 stay 8-bit values."""
    ramp = (np.arange(16, dtype=np.uint16) * 4000).reshape(4, 4)
    np.save(tmp_path / "ramp.npy", ramp)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    Image.fromarray(ramp.astype(">u2")).save(tmp_path / "ramp.tif")
    assert Image.open(tmp_path / "ramp.tif").mode == "I;16B"
    expected = (ramp / 60000 * 255).astype(np.uint8)
    prep = image(size=4, color="gray")
    for name in ("ramp.npy", "ramp.png", "ramp.tif"):
        np.testing.assert_array_equal(prep.decode(str(tmp_path / name))[..., 0], expected, err_msg=name)
    eight_bit = np.arange(16, dtype=np.int64).reshape(4, 4) * 17  # Python ints saved as int64
    np.save(tmp_path / "ints.npy", eight_bit)
    np.testing.assert_array_equal(prep.decode(str(tmp_path / "ints.npy"))[..., 0], eight_bit)


def test_a_value_range_keeps_each_images_absolute_brightness(tmp_path):
    """Two flat 16-bit scans, one twice as bright: scaled by their own maxima both read white;
    through ``value_range`` they read as their levels in it, from files and arrays alike, with
    values beyond the range clipped; 8-bit images are unchanged by it."""
    dim, bright = np.full((4, 4), 1000, np.uint16), np.full((4, 4), 2000, np.uint16)
    bright[0, 0] = 5000  # past the range: white
    for name, pixels in (("dim", dim), ("bright", bright)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        np.save(tmp_path / f"{name}.npy", pixels)
    by_maximum, windowed = image(size=4, color="gray"), image(size=4, color="gray", value_range=[0, 4000])
    assert (by_maximum.decode(str(tmp_path / "dim.png")) == 255).all()
    for suffix in (".png", ".npy"):
        assert (windowed.decode(str(tmp_path / f"dim{suffix}")) == 64).all()  # 1000 / 4000 * 255 = 63.75
        got = windowed.decode(str(tmp_path / f"bright{suffix}"))[..., 0]
        assert got[0, 0] == 255 and (got.ravel()[1:] == 128).all(), suffix  # 2000 / 4000 * 255 = 127.5: 128
    floats = np.linspace(-0.5, 1.5, 16, dtype=np.float32).reshape(4, 4)
    np.save(tmp_path / "floats.npy", floats)
    expected = np.clip(np.rint((floats + 1) / 2 * 255), 0, 255).astype(np.uint8)
    got = image(size=4, color="gray", value_range=[-1, 1]).decode(str(tmp_path / "floats.npy"))
    np.testing.assert_array_equal(got[..., 0], expected)
    eight_bit = write_image(tmp_path / "8.png", np.full((4, 4), 100, np.uint8))
    assert (windowed.decode(eight_bit) == 100).all()


def test_a_value_range_is_left_out_of_the_fingerprint_when_unset():
    """Runs saved before the setting keep their fingerprint and cached features; setting it
    changes both."""
    plain, windowed = image(), image(value_range=[0, 4095])
    assert "value_range" not in plain.encoding_config() and "value_range" not in plain.settings_digest_config()
    assert windowed.encoding_config()["value_range"] == [0.0, 4095.0]
    assert plain.fingerprint() != windowed.fingerprint()


@pytest.mark.parametrize("bad", [[4095, 0], [1, 1]])
def test_a_value_range_must_rise(bad):
    with pytest.raises(ValueError, match=r"expected \[low, high\] with low < high"):
        ImagePreprocess(value_range=bad)


def test_an_npy_of_text_is_a_decode_error(tmp_path):
    np.save(tmp_path / "a.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DecodeError, match="expected numeric pixels; the array's dtype is <U1"):
        image().decode(str(tmp_path / "a.npy"))


def test_npy_with_a_bad_shape_is_a_decode_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(DecodeError, match=r"got shape \(2, 3, 4, 5\)"):
        chw(image().decode(str(tmp_path / "a.npy")))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    """A phone photo stored sideways with EXIF orientation 6 ("rotate 90 degrees clockwise to
    view") decodes the way a viewer shows it, from a JPEG or a PNG."""
    pixels = np.kron(np.arange(4, dtype=np.uint8).reshape(2, 2) * 80, np.ones((8, 8), np.uint8))  # 16x16, 4 flat blocks
    pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # the Orientation tag
    path = tmp_path / f"sideways{suffix}"
    Image.fromarray(pixels).save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
    x = chw(image(color="rgb").decode(str(path))).astype(int)
    expected = np.rot90(pixels, k=-1).transpose(2, 0, 1).astype(int)
    assert np.abs(x - expected).max() <= 8  # JPEG rounding; unrotated blocks would be off by 80 or more


def test_sixteen_bit_tiff_is_scaled_to_eight_bits(tmp_path):
    pixels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 64)
    path = tmp_path / "deep.tiff"
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode.startswith("I;16")
    x = chw(image(color="gray").decode(str(path)))
    assert x[0, 0, 0] == 0 and x[0, -1, -1] == 255
    assert np.all(np.diff(x[0].ravel().astype(int)) >= 0)  # order of intensities kept


@pytest.mark.parametrize(("color", "channels", "pil_mode"), [("gray", 1, "L"), ("rgb", 3, "RGB"), ("hsv", 3, "HSV")])
def test_colour_conversion_and_channel_count(tmp_path, color, channels, pil_mode):
    pixels = gradient_rgb()
    path = write_image(tmp_path / "a.png", pixels)
    prep = image(color=color)
    x = chw(prep.decode(path))
    assert x.shape == (channels, 16, 16)
    expected = np.asarray(Image.fromarray(pixels).convert(pil_mode))
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    np.testing.assert_array_equal(x, expected)
    assert prep.encoder_context()["in_channels"] == channels


@pytest.mark.parametrize("color", ["rgb", "hsv"])
def test_gray_and_rgba_sources_become_three_channels(tmp_path, color):
    gray = write_image(tmp_path / "g.png", np.full((16, 16), 200, np.uint8))
    rgba = write_image(tmp_path / "a.png", np.dstack([gradient_rgb(), np.full((16, 16), 255, np.uint8)]))
    prep = image(color=color)
    assert chw(prep.decode(gray)).shape == (3, 16, 16)
    assert chw(prep.decode(rgba)).shape == (3, 16, 16)
    if color == "rgb":
        assert (chw(prep.decode(gray)) == 200).all()
        np.testing.assert_array_equal(chw(prep.decode(rgba)), gradient_rgb().transpose(2, 0, 1))


@pytest.mark.parametrize("resize", ["stretch", "pad", "crop"])
def test_gray_source_resized_to_rgb_matches_convert_then_resize(tmp_path, resize):
    """A grey source is resized before its channel is copied to RGB (the cheaper order); the
    pixels must equal Pillow's convert-to-RGB-then-resize."""
    pixels = np.random.default_rng(0).integers(0, 256, (13, 29), dtype=np.uint8)
    path = write_image(tmp_path / "g.png", pixels)
    prep = image(color="rgb", resize=resize, size=[24, 20])
    expected = np.asarray(resize_image(Image.fromarray(pixels).convert("RGB"), (24, 20), resize))
    got = prep.decode(path)
    assert got.shape == (24, 20, 3)
    np.testing.assert_array_equal(got, expected)


def test_pad_keeps_aspect_with_black_bars(tmp_path):
    wide_white = write_image(tmp_path / "w.png", np.full((20, 40), 255, np.uint8))
    x = chw(image(size=32, resize="pad", color="gray").decode(wide_white))[0]
    assert x.shape == (32, 32)
    assert (x[:8] == 0).all() and (x[24:] == 0).all()  # 40x20 -> 32x16, centred
    assert (x[8:24] == 255).all()


def bright_box(x: np.ndarray) -> tuple[int, int]:
    """(height, width) of the bright region of a gray image."""
    rows, cols = np.nonzero(x > 150)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.fixture
def wide_with_square(tmp_path):
    """An 80x40 gray image (value 100) with a 20x20 white square in its centre."""
    pixels = np.full((40, 80), 100, np.uint8)
    pixels[10:30, 30:50] = 255
    return write_image(tmp_path / "sq.png", pixels)


@pytest.mark.parametrize(("mode", "box"), [("pad", (10, 10)), ("crop", (20, 20)), ("stretch", (20, 10))])
def test_resize_modes_give_the_requested_shape(wide_with_square, mode, box):
    x = chw(image(size=40, resize=mode, color="gray").decode(wide_with_square))[0]
    assert x.shape == (40, 40)
    height, width = bright_box(x)
    # pad and crop keep the square square; stretch halves its width
    assert abs(height - box[0]) <= 1 and abs(width - box[1]) <= 1
    if mode == "pad":
        assert (x[:10] == 0).all() and (x[30:] == 0).all() and (x[10:30] > 0).all()


def test_rectangular_size_is_height_then_width(wide_with_square):
    x = chw(image(size=[12, 20], resize="crop", color="gray").decode(wide_with_square))
    assert x.shape == (1, 12, 20)


def test_unit_normalisation(tmp_path):
    prep = image(color="rgb")
    arrays = encode_values(prep, [write_image(tmp_path / "a.png", gradient_rgb())])
    x = prep.to_batch(as_tensors(arrays), train=False)["x"]
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(x, torch.from_numpy(chw_batch(arrays["x"])).float() / 255)


def test_standard_normalisation_fits_training_mean_and_std(tmp_path):
    rng = np.random.default_rng(0)
    paths = [write_image(tmp_path / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for i in range(4)]
    prep = image(color="rgb", normalize="standard")
    arrays = encode_values(prep, paths)
    prep.fit_features(arrays)
    pixels = chw_batch(arrays["x"]).astype(np.float64) / 255
    np.testing.assert_allclose(prep.mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(prep.std, pixels.std(axis=(0, 2, 3)), rtol=1e-5)
    x = prep.to_batch(as_tensors(arrays), train=False)["x"].double()
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64),
                               atol=1e-4, rtol=0)


def test_given_mean_and_std_are_used_and_not_refitted(tmp_path):
    prep = image(color="rgb", normalize="standard", mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5])
    arrays = encode_values(prep, [write_image(tmp_path / "a.png", gradient_rgb())])
    prep.fit_features(arrays)
    assert prep.mean.tolist() == pytest.approx([0.5, 0.4, 0.3])
    x = prep.to_batch(as_tensors(arrays), train=False)["x"]
    expected = (torch.from_numpy(chw_batch(arrays["x"])).float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)


def test_standard_normalisation_before_fit_is_refused(tmp_path):
    prep = image(normalize="standard")
    with pytest.raises(NotFittedError, match="before fit"):
        prep.to_batch(as_tensors(encode_values(prep, [write_image(tmp_path / "a.png", gradient_rgb())])), train=False)


def test_augmentation_only_in_training(tmp_path):
    prep = image(color="rgb", augment={"hflip": True})
    arrays = as_tensors(encode_values(prep, [write_image(tmp_path / f"{i}.png", gradient_rgb()) for i in range(32)]))
    plain = arrays["x"].permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    evaluation = prep.to_batch(arrays, train=False)["x"]
    torch.testing.assert_close(evaluation, plain, rtol=0, atol=0)
    train = prep.to_batch(arrays, train=True)["x"]
    flipped = torch.tensor([torch.equal(t, p.flip(-1)) for t, p in zip(train, plain)])
    unchanged = torch.tensor([torch.equal(t, p) for t, p in zip(train, plain)])
    assert (flipped | unchanged).all()  # every image is the original or its mirror
    assert flipped.any() and unchanged.any()  # P(all 32 alike) = 2**-31


def test_no_augmentation_configured_means_training_batches_are_plain(tmp_path):
    prep = image(color="rgb")
    arrays = as_tensors(encode_values(prep, [write_image(tmp_path / "a.png", gradient_rgb())]))
    assert torch.equal(prep.to_batch(arrays, train=True)["x"], prep.to_batch(arrays, train=False)["x"])


def test_decompression_bomb_guard(tmp_path):
    path = write_image(tmp_path / "big.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DecodeError, match="decompression bomb") as info:
        chw(image(max_pixels=500).decode(path))
    assert "20 = 600 pixels" in str(info.value) and info.value.path == path
    assert chw(image(max_pixels=600).decode(path)).shape == (3, 16, 16)  # at the limit is fine


def test_truncated_image_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.png"
    write_image(path, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DecodeError, match="truncated") as info:
        chw(image().decode(str(path)))
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_bytes(b"definitely not a jpeg" * 10)
    with pytest.raises(DecodeError, match="not a recognised image format") as info:
        chw(image().decode(str(path)))
    assert str(path) in str(info.value)


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(DecodeError) as info:
        chw(image().decode(str(tmp_path / "gone.png")))
    assert info.value.path == str(tmp_path / "gone.png")


def test_a_colour_mode_pillow_cannot_convert_is_a_decode_error_naming_the_file(tmp_path):
    Image.new("LAB", (4, 4)).save(tmp_path / "lab.tif")
    with pytest.raises(DecodeError, match="unsupported image colour mode LAB") as err:
        image(color="gray").decode(str(tmp_path / "lab.tif"))  # Pillow converts LAB to RGB only
    assert "lab.tif" in str(err.value)


def test_hsv_is_resized_as_rgb_so_hue_does_not_blend_across_its_wrap(tmp_path):
    """Two reds either side of hue 0 (about 250 and 3 on Pillow's 0-255 scale): interpolated as
    numbers their hues would meet near 128, a cyan. Resized as RGB and then converted, the pixels
    where they meet stay red: what converting Pillow's RGB resize gives."""
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = [255, 0, 40]
    pixels[:, 8:] = [255, 40, 0]
    path = write_image(tmp_path / "reds.png", pixels)
    for resize in ("stretch", "pad", "crop"):
        got = image(color="hsv", size=[4, 6], resize=resize).decode(path)
        expected = np.asarray(resize_image(Image.fromarray(pixels), (4, 6), resize).convert("HSV"))
        np.testing.assert_array_equal(got, expected)
    hue = image(color="hsv", size=[4, 8]).decode(path)[..., 0].astype(int)
    assert ((hue < 20) | (hue > 235)).all()  # red everywhere, no hue from the far side of the circle


@pytest.mark.parametrize("background", ["white", "black"])
def test_a_grey_png_colour_key_shows_the_background_in_rgb_as_in_gray(tmp_path, background):
    """A grey PNG whose tRNS chunk makes the value 7 transparent: those pixels are the background in
    ``rgb`` as they are in ``gray`` (the grey-to-RGB shortcut must not skip the compositing)."""
    pixels = np.full((16, 16), 7, np.uint8)
    pixels[4:12, 4:12] = 200
    path = write_image(tmp_path / "key.png", pixels, transparency=7)
    fill = 255 if background == "white" else 0
    expected = np.where(pixels == 7, fill, pixels).astype(np.uint8)
    gray = image(color="gray", background=background).decode(path)
    rgb = image(color="rgb", background=background).decode(path)
    np.testing.assert_array_equal(gray[..., 0], expected)
    np.testing.assert_array_equal(rgb, np.repeat(expected[..., None], 3, axis=2))
    np.testing.assert_array_equal(image(color="rgb", background=None).decode(path)[..., 0], pixels)  # as stored


def test_an_animated_gif_decodes_its_first_frame_and_closes_the_file(tmp_path):
    frames = [Image.fromarray(np.full((16, 16, 3), colour, np.uint8)) for colour in ([255, 0, 0], [0, 0, 255])]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        x = image(color="rgb").decode(str(tmp_path / "anim.gif"))
        gc.collect()  # an unclosed file warns when its image is collected
    assert (x == [255, 0, 0]).all()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
