"""Shared fixtures: real data when ../shared is present, small generated datasets, tiny runs.

Like Polygraphy's ``ONNX_MODELS``: a few named artifacts built once per session and reused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
def trained_onnx() -> Path:
    """../shared/fixtures/a2w_lite0_h200.onnx: efficientnet_lite0 adapted A->W on a GPU (Ct 97.63 %), or skip."""
    path = SHARED_DATA.parent / "fixtures" / "a2w_lite0_h200.onnx"
    if not path.is_file():
        pytest.skip(f"trained model {path} is absent (a fresh clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def digits_root() -> Path:
    """../shared/data/digits_mnist_usps (mnist, usps; 16x16 digits), or skip."""
    return _shared("digits_mnist_usps")


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """The built-in generator (train.synthetic) at test size: domains photos (studio style) and
    sketches (street style), classes circle/square/triangle, 6 PNG/JPEG images each."""
    from symnets_deploy.train.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("shapes"), per_class=6, domains=("photos", "sketches"), classes=("circle", "square", "triangle"))


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
