"""Runtime fixtures: ONNX artifacts made by the project's own exporter, and image folders.

``tiny_onnx`` / ``lite0_onnx`` come from ``export_onnx`` on the session's training runs, so
the runtime is tested on exactly what ``symnets export`` ships. ``mixed_folder`` holds good
images of every mode the runtime must handle and one file of each kind it must refuse.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: Statuses the mixed folder's files must get.
GOOD = ("rgb.jpg", "gray.png", "palette.gif", "rgba.png", "cmyk.jpg", "gray16.png", "exif_rotated.jpg", "upper_case.JPEG", "nested/deep.webp")
BAD = {
    "empty.jpg": "empty file",
    "truncated.jpg": "cannot decode",
    "not_an_image.png": "not an image",
    "bomb.png": "pixels",
    "gray_alpha16.tif": "not an image",
}


_EXPORTED: dict[Path, Path] = {}


def _export(run: Path, out: Path) -> Path:
    # Memoised per run: tests/cli imports these fixtures too, and one export per session is enough.
    if run not in _EXPORTED:
        pytest.importorskip("torch")
        from symnets_deploy.export.onnx import export_onnx
        from symnets_deploy.train.checkpoint import model_from_checkpoint

        model, card, _ = model_from_checkpoint(run / "last.pt")
        _EXPORTED[run] = export_onnx(model, card, out)
    return _EXPORTED[run]


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported by ``export_onnx`` (3 classes, 32x32 input, fp32)."""
    return _export(tiny_run, tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def lite0_onnx(lite0_run, tmp_path_factory) -> Path:
    """The efficientnet_lite0 run exported by ``export_onnx`` (3 classes, 224x224 input, fp32)."""
    return _export(lite0_run, tmp_path_factory.mktemp("lite0_onnx") / "lite0.onnx")


def pattern(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB test picture (gradients, a bar, blobs): rotation and colour changes show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 7.0)], axis=-1)
    img[: height // 3, : width // 4] = (250, 20, 20)
    for _ in range(6):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(4, 12)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (decompression-bomb bait)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def gray_alpha16_tiff() -> bytes:
    """A TIFF declaring 16-bit gray + alpha, a sample layout Pillow has no mode for."""
    buf = io.BytesIO()
    Image.new("LA", (8, 8)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    entry = data.find(struct.pack("<HHI", 258, 3, 2))  # BitsPerSample, SHORT x 2, stored inline
    data[entry + 8 : entry + 12] = struct.pack("<HH", 16, 16)
    return bytes(data)


def make_mixed_folder(root: Path) -> Path:
    """Write ``GOOD`` and ``BAD`` files (plus a non-image that scans skip) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nested").mkdir(exist_ok=True)
    rgb = pattern()
    Image.fromarray(rgb).save(root / "rgb.jpg", quality=90)
    Image.fromarray(rgb).convert("L").save(root / "gray.png")
    Image.fromarray(rgb).quantize(32).save(root / "palette.gif")
    rgba = np.dstack([rgb, np.where(np.arange(rgb.shape[1]) < 40, 255, 0)[None, :].repeat(rgb.shape[0], 0)]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", quality=90)
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "gray16.png")
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb))).save(root / "exif_rotated.jpg", quality=90, exif=exif_orientation(6))
    Image.fromarray(rgb).save(root / "upper_case.JPEG", quality=90)
    Image.fromarray(rgb).save(root / "nested" / "deep.webp", lossless=True)
    (root / "empty.jpg").write_bytes(b"")
    whole = jpeg_bytes(pattern(320, 240, seed=1))
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "not_an_image.png").write_text("these are notes, not pixels\n")
    (root / "bomb.png").write_bytes(bomb_png())
    (root / "gray_alpha16.tif").write_bytes(gray_alpha16_tiff())
    (root / "notes.txt").write_text("skipped by folder scans\n")
    return root


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory) -> Path:
    """A folder of ``GOOD`` images (every mode) and ``BAD`` files (every failure kind)."""
    return make_mixed_folder(tmp_path_factory.mktemp("mixed"))
