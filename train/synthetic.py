"""A small built-in two-domain dataset, generated on the fly, for the demo and the tests.

Classes are shapes; the ``studio`` domain draws them in bright colours on light, clean
backgrounds, the ``street`` domain on mid-grey, noisy backgrounds, rotated and blurred.
Labels transfer, appearance does not: a real (if easy) domain shift, needing no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "cross", "square", "triangle")
DOMAINS = ("studio", "street")


def _shape(draw: ImageDraw.ImageDraw, cls: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if cls == "circle":
        draw.ellipse(box, fill=fill)
    elif cls == "square":
        draw.rectangle(box, fill=fill)
    elif cls == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=fill)
    else:
        w, h = (x1 - x0) // 3, (y1 - y0) // 3
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=fill)
        draw.rectangle((x0, y0 + h, x1, y1 - h), fill=fill)


def render(cls: str, domain: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class ``cls`` in the style of ``domain``."""
    w, h = int(rng.integers(56, 96)), int(rng.integers(56, 96))
    if domain == "studio":
        background = tuple(int(v) for v in rng.integers(215, 256, 3))
        ink = tuple(int(v) for v in rng.integers(0, 120, 3))
        img = Image.new("RGB", (w, h), background)
    else:
        base = rng.integers(120, 200, 3)
        noise = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(noise, "RGB")
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    side = int(min(w, h) * rng.uniform(0.5, 0.8))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    _shape(ImageDraw.Draw(layer), cls, (x0, y0, x0 + side, y0 + side), ink + (255,))
    if domain == "street":
        layer = layer.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR, center=(x0 + side / 2, y0 + side / 2))
    img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    return img.filter(ImageFilter.GaussianBlur(0.8)) if domain == "street" else img


def make_dataset(root: Path, per_class: int = 40, seed: int = 0, domains=DOMAINS, classes=CLASSES) -> Path:
    """Write ``root/<domain>/<class>/<n>.png|jpg`` and return ``root``."""
    root = Path(root)
    for d, domain in enumerate(domains):
        for c, cls in enumerate(classes):
            folder = root / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, d, c])
            for i in range(per_class):
                img = render(cls, DOMAINS[d % len(DOMAINS)], rng)
                img.save(folder / f"{cls}_{i:03d}.{'jpg' if i % 2 else 'png'}", quality=92)
    return root
