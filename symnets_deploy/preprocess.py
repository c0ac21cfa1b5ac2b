"""The one implementation of evaluation preprocessing (DESIGN.md section 2).

Training's evaluation, export's equivalence check and ``predict`` all call these functions, so
train/serve skew cannot creep in. Normalisation is NOT done here: it lives inside the exported
graph, which takes float32 RGB values in 0..255.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Union

import numpy as np
from PIL import Image, ImageOps

from symnets_deploy.errors import ImageError

if TYPE_CHECKING:  # card.py imports INTERPOLATIONS from here to validate cards
    from symnets_deploy.card import ModelCard

#: File extensions treated as images (compared lower-case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})

#: Images with more pixels than this are refused (decompression-bomb guard), about 16k x 11k.
MAX_PIXELS = 178_956_970

_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}

#: Resize filter names a model card may ask for: the one list, which ``ModelCard`` validates against.
INTERPOLATIONS = tuple(_FILTERS)

ImageInput = Union[str, Path, Image.Image, np.ndarray]


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a network input.

    Attributes:
        resize: the shorter side is resized to this many pixels (antialiased).
        crop: side of the square center crop, pixels.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
    """

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"need 0 < crop <= resize, got crop={self.crop}, resize={self.resize}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r} (valid: {', '.join(INTERPOLATIONS)})")

    @classmethod
    def from_card(cls, card: ModelCard) -> "PreprocessConfig":
        """The preprocessing a model card prescribes (``ModelCard`` has validated every value)."""
        return cls(resize=card.resize_size, crop=card.input_size, interpolation=card.interpolation)

    def describe(self) -> str:
        """Readable one-line description for logs and docs."""
        return (
            f"EXIF-orient, RGB, resize shorter side to {self.resize} ({self.interpolation}, antialiased), "
            f"center-crop {self.crop}x{self.crop}, float32 0..255 NCHW"
        )


def open_image(path: str | Path, *, draft_size: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image file as an EXIF-oriented RGB image.

    Args:
        path: image file.
        draft_size: if given, JPEGs may be decoded at a reduced DCT scale as long as the
            shorter side stays >= this many pixels (the later antialiased resize does the rest).
        max_pixels: refuse larger images (decompression bombs).

    Returns:
        A loaded ``PIL.Image`` in mode RGB.

    Raises:
        ImageError: unreadable, truncated, empty, too large or of an unsupported mode,
            with a one-line reason naming the file.
    """
    path = Path(path)
    try:
        kind = os.stat(path).st_mode
        if not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
            # Opening a FIFO or a device blocks until a writer appears: never, for a folder scan.
            raise ImageError(f"{path}: not a regular file (a FIFO, socket or device)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(f"{path}: {width}x{height} pixels exceeds the limit of {max_pixels}")
                if draft_size is not None and img.format == "JPEG":
                    # draft() keeps both sides >= the requested size, so quality is preserved.
                    scale = min(width, height) / draft_size
                    img.draft("RGB", (max(1, round(width / scale)), max(1, round(height / scale))))
                img.load()
                # In place: a copy of every image without an orientation tag would cost as much as decoding it.
                ImageOps.exif_transpose(img, in_place=True)
                return to_rgb(img)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: decompression bomb refused ({exc})") from None
    except Image.UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        reason = "empty file" if size == 0 else "not an image Pillow can read"
        raise ImageError(f"{path}: {reason}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        # Pillow's decoders raise all of these on corrupt data.
        raise ImageError(f"{path}: cannot decode ({_one_line(exc)})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Alpha is composited over white (product photos sit on white); 16- and 32-bit integer
    grayscale is scaled from the 0..65535 range; float grayscale is read as 0..1 when its
    maximum is <= 1, else as 0..255.

    Raises:
        ImageError: a mode with no sensible RGB meaning.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        if mode == "I" and arr.max(initial=0) <= 255:
            scaled = arr
        else:
            scaled = arr / 257.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    raise ImageError(f"unsupported image mode {mode!r}")


def resize_shorter(img: Image.Image, size: int, interpolation: str = "bilinear") -> Image.Image:
    """Resize so that the shorter side is ``size`` pixels (antialiased), keeping the aspect ratio.

    Training augmentation starts from this same resize, so it is defined once, here.
    """
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) == (width, height):
        return img
    return img.resize((new_w, new_h), _FILTERS[interpolation], reducing_gap=None)


def resize_center_crop(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize the shorter side to ``cfg.resize`` and center-crop ``cfg.crop``.

    Args:
        img: an RGB ``PIL.Image``.
        cfg: the preprocessing config.

    Returns:
        uint8 array [crop, crop, 3], RGB.
    """
    img = resize_shorter(img, cfg.resize, cfg.interpolation)
    new_w, new_h = img.size
    left, top = (new_w - cfg.crop) // 2, (new_h - cfg.crop) // 2
    img = img.crop((left, top, left + cfg.crop, top + cfg.crop))
    return np.asarray(img, dtype=np.uint8)


def preprocess_image(image: ImageInput, cfg: PreprocessConfig) -> np.ndarray:
    """One image (file path, PIL image or HWC/HW uint8 array) to a network-ready crop.

    Args:
        image: a path, a ``PIL.Image`` of any mode, or a uint8 array [H,W] or [H,W,3|4].
        cfg: the preprocessing config.

    Returns:
        uint8 array [crop, crop, 3], RGB.

    Raises:
        ImageError: the image cannot be read or converted.
    """
    if isinstance(image, (str, Path)):
        img = open_image(image, draft_size=cfg.resize)
    elif isinstance(image, Image.Image):
        img = to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, np.ndarray):
        img = _array_to_rgb(image)
    else:
        raise ImageError(f"unsupported image type {type(image).__name__}")
    return resize_center_crop(img, cfg)


def to_batch(crops: Iterable[np.ndarray]) -> np.ndarray:
    """Stack uint8 HWC crops into the graph input.

    Returns:
        float32 array [N, 3, H, W] holding RGB values 0..255 (the ONNX ``images`` input).
    """
    # Transpose the uint8 bytes, then widen: half the time of one strided converting copy.
    planar = np.ascontiguousarray(np.stack(list(crops)).transpose(0, 3, 1, 2))
    return planar.astype(np.float32)


def _array_to_rgb(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageError(f"arrays must be uint8 HWC RGB, got dtype {arr.dtype}")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        return to_rgb(Image.fromarray(arr))
    raise ImageError(f"arrays must be [H,W], [H,W,3] or [H,W,4], got shape {arr.shape}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
