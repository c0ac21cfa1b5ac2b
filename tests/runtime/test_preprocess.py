"""The one evaluation preprocessing: config, geometry, every Pillow mode, broken files, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from symnets_deploy.card import ModelCard
from symnets_deploy.errors import ImageError
from symnets_deploy.preprocess import (
    PreprocessConfig,
    open_image,
    preprocess_image,
    resize_center_crop,
    resize_shorter,
    to_batch,
    to_rgb,
)

# resize == the shorter side of the test images: no resampling, so pixels can be checked exactly.
EXACT = PreprocessConfig(resize=32, crop=32)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _crop_of(img: Image.Image, cfg: PreprocessConfig = EXACT) -> np.ndarray:
    out = preprocess_image(img, cfg)
    assert out.shape == (cfg.crop, cfg.crop, 3) and out.dtype == np.uint8
    return out


# -- config ------------------------------------------------------------------------------------
def test_config_defaults_and_validation():
    cfg = PreprocessConfig()
    assert (cfg.resize, cfg.crop, cfg.interpolation) == (256, 224, "bilinear")
    PreprocessConfig(resize=224, crop=224)  # crop == resize is allowed
    for bad in (dict(resize=200, crop=224), dict(resize=256, crop=0), dict(resize=256, crop=-3)):
        with pytest.raises(ValueError, match="crop"):
            PreprocessConfig(**bad)
    with pytest.raises(ValueError, match="nearest"):
        PreprocessConfig(interpolation="nearest")
    with pytest.raises(AttributeError):
        cfg.crop = 10  # frozen


def test_config_from_card_and_describe():
    card = ModelCard(class_names=("a", "b"), input_size=96, resize_size=110, mean=(0.5,) * 3, std=(0.5,) * 3, backbone="tiny", interpolation="bicubic")
    cfg = PreprocessConfig.from_card(card)
    assert (cfg.resize, cfg.crop, cfg.interpolation) == (110, 96, "bicubic")
    text = cfg.describe()
    assert "110" in text and "96x96" in text and "bicubic" in text


# -- geometry ----------------------------------------------------------------------------------
def test_center_crop_is_the_middle_window():
    arr = _noise(40, 50)  # h=40, w=50
    cfg = PreprocessConfig(resize=40, crop=30)
    out = preprocess_image(arr, cfg)
    top, left = (40 - 30) // 2, (50 - 30) // 2
    assert np.array_equal(out, arr[top : top + 30, left : left + 30])


@pytest.mark.parametrize("wh,size,expected", [((100, 50), 25, (50, 25)), ((50, 100), 25, (25, 50)), ((30, 30), 64, (64, 64)), ((333, 256), 256, (333, 256)), ((1000, 3), 10, (3333, 10))])
def test_resize_shorter(wh, size, expected):
    img = Image.new("RGB", wh, (10, 20, 30))
    out = resize_shorter(img, size)
    assert out.size == expected
    assert min(out.size) == size
    # A uniform image stays uniform whatever the filter does.
    assert np.all(np.asarray(out) == (10, 20, 30))


def test_output_shape_dtype_and_resize():
    out = preprocess_image(_noise(90, 160), PreprocessConfig(resize=64, crop=56))
    assert out.shape == (56, 56, 3) and out.dtype == np.uint8
    # Downscaling averages: a horizontal ramp stays a ramp.
    ramp = np.tile(np.linspace(0, 255, 160).astype(np.uint8)[None, :, None], (90, 1, 3))
    out = preprocess_image(ramp, PreprocessConfig(resize=45, crop=40))
    row = out[20, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0) and row[-1] - row[0] > 50


def test_to_batch_float32_nchw_0_255():
    a, b = _noise(8, 8, 1), _noise(8, 8, 2)
    a[0, 0] = (255, 255, 255)
    batch = to_batch([a, b])
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"]
    assert np.array_equal(batch[0], a.transpose(2, 0, 1).astype(np.float32))
    assert np.array_equal(batch[1], b.transpose(2, 0, 1).astype(np.float32))
    assert batch.max() == 255.0 and batch.min() >= 0.0  # not normalised: that is in the graph
    assert to_batch(iter([a])).shape == (1, 3, 8, 8)  # any iterable


def test_accepts_paths_pil_images_and_arrays(tmp_path):
    arr = _noise(32, 48, 3)
    path = tmp_path / "img.png"
    Image.fromarray(arr).save(path)
    cfg = PreprocessConfig(resize=32, crop=24)
    expected = arr[4:28, 12:36]
    for image in (path, str(path), Image.fromarray(arr), arr, np.ascontiguousarray(arr[:, ::-1][:, ::-1])):
        assert np.array_equal(preprocess_image(image, cfg), expected)
    gray = arr[:, :, 0]
    assert np.array_equal(preprocess_image(gray, cfg), np.repeat(gray[4:28, 12:36, None], 3, axis=2))
    rgba = np.dstack([arr, np.full((32, 48), 255, np.uint8)])
    assert np.array_equal(preprocess_image(rgba, cfg), expected)


def test_bad_inputs_are_image_errors():
    with pytest.raises(ImageError, match="uint8"):
        preprocess_image(np.zeros((8, 8, 3), np.float32), EXACT)
    with pytest.raises(ImageError, match="shape"):
        preprocess_image(np.zeros((8, 8, 2), np.uint8), EXACT)
    with pytest.raises(ImageError, match="int"):
        preprocess_image(42, EXACT)


# -- EXIF orientation --------------------------------------------------------------------------
def test_exif_orientation_6_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # as stored: 40 wide, 20 high
    stored[:, :20] = (220, 30, 30)  # left half red
    stored[:, 20:] = (30, 30, 220)  # right half blue
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, quality=95, exif=exif.tobytes())
    assert Image.open(path).size == (40, 20)

    shown = np.asarray(open_image(path))
    expected = np.rot90(stored, k=-1)  # clockwise: the left half ends on top
    assert shown.shape == expected.shape == (40, 20, 3)
    assert np.abs(shown.astype(int) - expected).mean() < 3
    assert shown[5, 10, 0] > 180 and shown[35, 10, 2] > 180  # red on top, blue below
    # preprocess_image applies it for paths and for PIL images alike.
    cfg = PreprocessConfig(resize=20, crop=20)
    from_path = preprocess_image(path, cfg)
    from_pil = preprocess_image(Image.open(path), cfg)
    assert np.array_equal(from_path, from_pil)
    assert from_path[2, 10, 0] > 180 and from_path[2, 10, 2] < 80  # top row of the crop is red


# -- every mode to 8-bit RGB -------------------------------------------------------------------
def _save_and_preprocess(img: Image.Image, path: Path) -> np.ndarray:
    img.save(path)
    return preprocess_image(path, EXACT)


def test_grayscale_L(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    out = _save_and_preprocess(Image.fromarray(arr, "L"), tmp_path / "l.png")
    assert np.array_equal(out, np.repeat(arr[:, :, None], 3, axis=2))


def test_mode_1(tmp_path):
    arr = np.zeros((32, 32), bool)
    arr[:, 16:] = True
    out = _save_and_preprocess(Image.fromarray(arr).convert("1"), tmp_path / "bw.png")
    assert np.all(out[:, :16] == 0) and np.all(out[:, 16:] == 255)


def _palette_image() -> Image.Image:
    img = Image.new("P", (32, 32), 0)
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 - 3) * 3)
    img.paste(1, (0, 0, 16, 32))  # left half index 1 (green), right half index 0 (red)
    return img


def test_palette_P(tmp_path):
    out = _save_and_preprocess(_palette_image(), tmp_path / "p.png")
    assert np.all(out[:, :16] == (0, 255, 0)) and np.all(out[:, 16:] == (255, 0, 0))


def test_palette_P_with_transparency(tmp_path):
    path = tmp_path / "p_t.png"
    _palette_image().save(path, transparency=0)  # red index transparent
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    out = preprocess_image(path, EXACT)
    assert np.all(out[:, :16] == (0, 255, 0))
    assert np.all(out[:, 16:] == (255, 255, 255))  # over white, not the hidden red


def test_palette_gif_with_transparency(tmp_path):
    path = tmp_path / "p_t.gif"
    _palette_image().save(path, transparency=0)
    out = preprocess_image(path, EXACT)
    assert np.all(out[:, :16] == (0, 255, 0)) and np.all(out[:, 16:] == (255, 255, 255))


def test_rgba_composited_over_white(tmp_path):
    arr = np.zeros((32, 32, 4), np.uint8)
    arr[:, :, :3] = (0, 0, 200)
    arr[:8, :, 3] = 0  # transparent
    arr[8:16, :, 3] = 255  # opaque
    arr[16:, :, 3] = 128  # half
    out = _save_and_preprocess(Image.fromarray(arr, "RGBA"), tmp_path / "rgba.png")
    assert np.all(out[:8] == 255)
    assert np.all(out[8:16] == (0, 0, 200))
    a = 128 / 255
    expected = np.array([(1 - a) * 255, (1 - a) * 255, a * 200 + (1 - a) * 255])
    assert np.all(np.abs(out[16:].astype(float) - expected) <= 1.0)


def test_LA(tmp_path):
    arr = np.zeros((32, 32, 2), np.uint8)
    arr[:, :, 0] = 40
    arr[:, 16:, 1] = 255
    out = _save_and_preprocess(Image.fromarray(arr, "LA"), tmp_path / "la.png")
    assert np.all(out[:, :16] == 255) and np.all(out[:, 16:] == 40)


def test_cmyk(tmp_path):
    img = Image.new("CMYK", (32, 32), (0, 0, 0, 0))  # no ink: white
    img.paste((0, 255, 255, 0), (16, 0, 32, 32))  # magenta + yellow: red
    out = _save_and_preprocess(img, tmp_path / "cmyk.tif")
    assert Image.open(tmp_path / "cmyk.tif").mode == "CMYK"
    assert np.all(out[:, :16] == 255)
    assert np.all(out[:, 16:] == (255, 0, 0))


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)
    out = preprocess_image(path, EXACT)
    assert np.abs(out.astype(int) - (255, 0, 0)).mean() < 8


def test_16_bit_png(tmp_path):
    arr = np.zeros((32, 32), np.uint16)
    arr[:, 8:16] = 257 * 128
    arr[:, 16:24] = 1000  # dark in 16 bits: 1000 / 257 ~ 3.9
    arr[:, 24:] = 65535
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = preprocess_image(path, EXACT)
    assert out.dtype == np.uint8
    assert np.all(out[:, :8] == 0)
    assert np.all(out[:, 8:16] == 128)
    assert np.all(out[:, 16:24] == round(1000 / 257))
    assert np.all(out[:, 24:] == 255)
    assert np.all(out[:, :, 0] == out[:, :, 2])  # gray


def test_mode_I(tmp_path):
    wide = np.zeros((32, 32), np.int32)
    wide[:, 16:] = 65535
    out = _crop_of(Image.fromarray(wide, "I"))
    assert np.all(out[:, :16] == 0) and np.all(out[:, 16:] == 255)
    small = np.full((32, 32), 200, np.int32)  # an 8-bit range kept as is
    assert np.all(_crop_of(Image.fromarray(small, "I")) == 200)


def test_mode_F():
    unit = np.zeros((32, 32), np.float32)
    unit[:, 16:] = 1.0
    unit[:, :8] = 0.5
    out = _crop_of(Image.fromarray(unit, "F"))
    assert np.all(out[:, 16:] == 255) and np.all(out[:, :8] == 128) and np.all(out[:, 8:16] == 0)
    byte_range = np.full((32, 32), 77.0, np.float32)
    assert np.all(_crop_of(Image.fromarray(byte_range, "F")) == 77)
    clipped = np.full((32, 32), 1000.0, np.float32)
    assert np.all(_crop_of(Image.fromarray(clipped, "F")) == 255)


def test_all_modes_give_uint8_rgb():
    for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "I", "I;16", "F"):
        img = Image.new(mode, (40, 32))
        out = to_rgb(img)
        assert out.mode == "RGB", mode
        crop = resize_center_crop(out, EXACT)
        assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8, mode


# -- broken files ------------------------------------------------------------------------------
def _image_error(path: Path, **kw) -> str:
    with pytest.raises(ImageError) as info:
        open_image(path, **kw)
    msg = str(info.value)
    assert path.name in msg
    assert "\n" not in msg
    if not kw:
        with pytest.raises(ImageError):
            preprocess_image(path, EXACT)
    return msg


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in _image_error(path)


def test_truncated_jpeg(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(_noise(200, 200)).save(full, quality=90)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    _image_error(path)


def test_text_file_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    assert "not an image" in _image_error(path)


def test_directory(tmp_path):
    path = tmp_path / "folder.jpg"
    path.mkdir()
    _image_error(path)


def test_missing_file(tmp_path):
    assert "no such file" in _image_error(tmp_path / "ghost.png")


def test_over_max_pixels(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (30, 20)).save(path)
    msg = _image_error(path, max_pixels=599)
    assert "30x20" in msg and "599" in msg
    assert open_image(path, max_pixels=600).size == (30, 20)  # at the limit is fine


# -- draft decoding ----------------------------------------------------------------------------
def test_draft_decoding_of_a_large_jpeg_stays_close(tmp_path):
    h, w = 1200, 1600
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // w, y * 255 // h, ((x // 100 + y // 100) % 2) * 200 + 20], axis=2).astype(np.uint8)
    path = tmp_path / "large.jpg"
    Image.fromarray(arr).save(path, quality=90)
    cfg = PreprocessConfig(resize=256, crop=224)

    drafted = open_image(path, draft_size=cfg.resize)
    assert drafted.size[0] < w and min(drafted.size) >= cfg.resize  # reduced, yet never below the resize
    assert drafted.size[0] / drafted.size[1] == pytest.approx(w / h, rel=0.01)

    fast = preprocess_image(path, cfg)  # paths use the draft
    full = resize_center_crop(open_image(path), cfg)  # full-resolution decode
    assert fast.shape == full.shape == (224, 224, 3)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3
