"""Shared fixtures: real data when ../shared is present, small generated datasets, tiny runs.

Like Polygraphy's ``ONNX_MODELS``: a few named artifacts built once per session and reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Decoded-domain caches of test runs go to a temp folder, not the user's ~/.cache."""
    import os

    previous = os.environ.get("SYMNETS_CACHE_DIR")
    os.environ["SYMNETS_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded_cache"))
    yield
    if previous is None:
        os.environ.pop("SYMNETS_CACHE_DIR", None)
    else:
        os.environ["SYMNETS_CACHE_DIR"] = previous


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (a fresh clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def office_root() -> Path:
    """../shared/data/office_caltech10 (amazon, dslr, webcam; 10 classes), or skip."""
    return _shared("office_caltech10")


@pytest.fixture(scope="session")
def digits_root() -> Path:
    """../shared/data/digits_mnist_usps (mnist, usps; 16x16 digits), or skip."""
    return _shared("digits_mnist_usps")


def make_shapes_dataset(root: Path, domains=("photos", "sketches"), classes=("circle", "square", "triangle"), per_class: int = 6, seed: int = 0) -> Path:
    """Write a small two-domain dataset: a class is a shape, a domain is a colour scheme."""
    rng = np.random.default_rng(seed)
    schemes = {0: ((250, 250, 250), (200, 30, 30)), 1: ((20, 20, 60), (240, 220, 40))}
    for d, domain in enumerate(domains):
        background, ink = schemes[d % 2]
        for c, cls in enumerate(classes):
            folder = root / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = int(rng.integers(40, 64)), int(rng.integers(40, 64))
                img = Image.new("RGB", (w, h), background)
                draw = ImageDraw.Draw(img)
                x0, y0 = int(rng.integers(2, 10)), int(rng.integers(2, 10))
                x1, y1 = w - int(rng.integers(2, 10)), h - int(rng.integers(2, 10))
                if cls == "circle":
                    draw.ellipse((x0, y0, x1, y1), fill=ink)
                elif cls == "square":
                    draw.rectangle((x0, y0, x1, y1), fill=ink)
                else:
                    draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=ink)
                img.save(folder / f"{cls}_{i}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A generated dataset with domains photos/sketches and classes circle/square/triangle."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"))


def _train_run(out: Path, data_root: Path, **overrides) -> Path:
    from symnets_deploy.train.config import TrainConfig
    from symnets_deploy.train.trainer import train

    config = TrainConfig(source="photos", target="sketches", data_root=str(data_root), device="cpu", out=str(out), log_every=1, **overrides)
    train(config)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shapes_root) -> Path:
    """A run folder (last.pt etc.) of the tiny backbone, 4 iterations at 32x32."""
    return _train_run(tmp_path_factory.mktemp("tiny_run"), shapes_root, backbone="tiny", iterations=4, batch_size=4, image_size=32)


@pytest.fixture(scope="session")
def lite0_run(tmp_path_factory, shapes_root) -> Path:
    """A run folder of efficientnet_lite0 (ImageNet weights), 2 iterations at 224x224."""
    return _train_run(tmp_path_factory.mktemp("lite0_run"), shapes_root, backbone="efficientnet_lite0", iterations=2, batch_size=2)
