"""``symnets predict --ray``: the same rows from a Ray Data job on a local cluster (issue 12)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
ray = pytest.importorskip("ray")

from symnets_deploy.cli.main import app  # noqa: E402
from symnets_deploy.predictor import FIELDS  # noqa: E402
from tests.runtime.conftest import BAD, GOOD, mixed_folder, tiny_onnx  # noqa: E402,F401  (fixtures)

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(mixed_folder: Path, tmp_path_factory) -> Path:
    """The runtime's mixed folder (every image mode, every kind of bad file) plus a name that is not UTF-8."""
    root = tmp_path_factory.mktemp("ray") / "images"
    shutil.copytree(mixed_folder, root)
    Image.new("RGB", (12, 9), (200, 30, 30)).save(os.fsencode(root) + b"/odd\xff.png")
    return root


def test_predict_on_a_local_ray_cluster_gives_the_same_rows(tiny_onnx: Path, folder: Path, tmp_path: Path) -> None:
    plain, on_ray = tmp_path / "plain.csv", tmp_path / "ray.csv"
    first = runner.invoke(app, ["predict", str(folder), "--engine", str(tiny_onnx), "--output", str(plain)])
    second = runner.invoke(app, ["predict", str(folder), "--engine", str(tiny_onnx), "--output", str(on_ray), "--ray", "local", "--ray-actors", "2"])
    assert first.exit_code == second.exit_code == 3, (first.output, second.output)  # the bad files
    assert on_ray.read_bytes() == plain.read_bytes()
    text = plain.read_text(encoding="utf-8", errors="surrogateescape")
    assert sum(",error," in line for line in text.splitlines()[1:]) == len(BAD) and len(text.strip().splitlines()) == 1 + len(GOOD) + len(BAD) + 1
    assert "on Ray (2 actors, local)" in second.stderr and not ray.is_initialized()  # the local cluster was shut down


def test_ray_and_plain_predict_give_the_same_monitoring_summary(tiny_onnx: Path, folder: Path, shapes_root: Path, tmp_path: Path) -> None:
    import json

    from symnets_deploy.reference import profile_artifact

    profiled = tmp_path / "tiny.profiled.onnx"
    profile_artifact(tiny_onnx, shapes_root / "sketches", output=profiled)
    runs = {}
    for name, extra in (("plain", []), ("ray", ["--ray", "local", "--ray-actors", "2"])):
        result = runner.invoke(app, ["predict", str(folder), "--engine", str(profiled), "--output", str(tmp_path / f"{name}.csv"),
                                     "--summary", str(tmp_path / f"{name}.json"), *extra])
        assert result.exit_code == 3, result.output  # the bad files
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()  # flags included
    plain, on_ray = runs["plain"], runs["ray"]
    assert plain.keys() == on_ray.keys() and plain["images"] == len(GOOD) + 1
    for key, value in plain.items():  # sums over other batches: equal up to rounding
        assert on_ray[key] == (pytest.approx(value) if isinstance(value, (float, list)) else value), key


def test_a_users_ray_dataset_gets_the_prediction_columns(tiny_onnx: Path, folder: Path) -> None:
    from symnets_deploy.ray_batch import COLUMNS, predict_dataset

    paths = sorted(str(p) for p in folder.rglob("*.png") if p.name.isascii())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = predict_dataset(ray.data.from_items([{"path": p, "camera": i} for i, p in enumerate(paths)]), tiny_onnx, concurrency=1).take_all()
    finally:
        ray.shutdown()
    assert sorted(r["path"] for r in rows) == paths and sorted(r["camera"] for r in rows) == list(range(len(paths)))
    assert set(COLUMNS) <= set(rows[0]) and set(FIELDS) <= set(rows[0])
    assert {r["status"] for r in rows} <= {"ok", "error"} and any(r["status"] == "ok" for r in rows)
