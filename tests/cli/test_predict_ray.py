"""``symnets predict --ray``: the same rows from a Ray Data job on a local cluster (issue 12), and the same
one-line failures as without ``--ray``, in seconds, before any cluster starts (issue 18 item 9)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
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
def folder(mixed_folder: Path, tmp_path_factory) -> Path:  # noqa: F811
    """The runtime's mixed folder (every image mode, every kind of bad file) plus a name that is not UTF-8."""
    root = tmp_path_factory.mktemp("ray") / "images"
    shutil.copytree(mixed_folder, root)
    Image.new("RGB", (12, 9), (200, 30, 30)).save(os.fsencode(root) + b"/odd\xff.png")
    return root


def test_predict_on_a_local_ray_cluster_gives_the_same_rows(tiny_onnx: Path, folder: Path, tmp_path: Path, closed_port: int, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed_port}")  # local means a new cluster here, not this one (Ray's default)
    plain, on_ray = tmp_path / "plain.csv", tmp_path / "ray.csv"
    first = runner.invoke(app, ["predict", str(folder), "--engine", str(tiny_onnx), "--output", str(plain)])
    second = runner.invoke(app, ["predict", str(folder), "--engine", str(tiny_onnx), "--output", str(on_ray), "--ray", "local", "--ray-actors", "2"])
    assert first.exit_code == second.exit_code == 3, (first.output, second.output)  # the bad files
    assert on_ray.read_bytes() == plain.read_bytes()
    text = plain.read_text(encoding="utf-8", errors="surrogateescape")
    assert sum(",error," in line for line in text.splitlines()[1:]) == len(BAD) and len(text.strip().splitlines()) == 1 + len(GOOD) + len(BAD) + 1
    assert "on Ray (2 actors, local)" in second.stderr and not ray.is_initialized()  # the local cluster was shut down


def test_ray_and_plain_predict_give_the_same_monitoring_summary(tiny_onnx: Path, folder: Path, shapes_root: Path, tmp_path: Path) -> None:  # noqa: F811
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


@pytest.fixture
def bad_card(tiny_onnx: Path, tmp_path: Path) -> Path:  # noqa: F811
    """The tiny model with a card that cannot be read: plain ``predict`` refuses it with one line, exit 5."""
    from symnets_deploy.onnx_metadata import set_metadata

    path = tmp_path / "bad_card.onnx"
    path.write_bytes(set_metadata(tiny_onnx.read_bytes(), {"symnets.card": "{}"}))
    return path


@pytest.fixture
def closed_port():
    """A local port that refuses connections (bound, never listening) for as long as the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_bad_model_under_ray_is_the_one_line_of_plain_predict_before_any_cluster_starts(bad_card: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    plain = runner.invoke(app, ["predict", str(folder), "-e", str(bad_card), "-o", str(out)])
    on_ray = runner.invoke(app, ["predict", str(folder), "-e", str(bad_card), "-o", str(out), "--ray", "local"])
    assert plain.exit_code == on_ray.exit_code == 5, on_ray.output  # was exit 1 after 256 lines of Ray tracebacks
    assert on_ray.stderr == plain.stderr and on_ray.stderr.startswith("error: ") and on_ray.stderr.count("\n") == 1
    assert not ray.is_initialized() and not out.exists()


@pytest.mark.parametrize("address, code, message", [
    ("127.0.0.1:notaport", 2, "not a Ray address (valid: local, auto, HOST:PORT or ray://HOST:PORT)"),
    ("http://127.0.0.1:8265", 2, "not a Ray address"),
    ("headnode", 2, "not a Ray address"),
    ("ray://127.0.0.1:10001", 4, "pip install 'ray[client]'"),
])
def test_a_bad_ray_address_is_one_line_before_the_model_is_opened(address: str, code: int, message: str, bad_card: Path, folder: Path) -> None:
    from symnets_deploy._optional import is_available

    if code == 4 and is_available("grpc"):
        pytest.skip("Ray Client (ray[client]) is installed here")
    result = runner.invoke(app, ["predict", str(folder), "-e", str(bad_card), "--ray", address])
    assert result.exit_code == code, result.output  # ray:// was a ValueError traceback (exit 1)
    assert result.stderr.startswith(f"error: --ray {address}: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert not ray.is_initialized()


@pytest.mark.parametrize("how", ["address", "RAY_ADDRESS"])
def test_an_address_where_no_cluster_answers_fails_in_seconds(how: str, closed_port: int, tiny_onnx: Path, folder: Path, tmp_path: Path) -> None:  # noqa: F811
    address = f"127.0.0.1:{closed_port}"
    env = {**os.environ, "RAY_ADDRESS": address} if how == "RAY_ADDRESS" else {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    argv = [sys.executable, "-m", "symnets_deploy.cli", "predict", str(folder), "-e", str(tiny_onnx), "-o", str(tmp_path / "p.csv"),
            "--ray", address if how == "address" else "auto"]
    # A subprocess with a deadline: Ray used to retry this address for about 13 minutes.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --ray ") and f"no Ray cluster answers at {address}" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the library-level tests below (they come last: the CLI tests start their own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_an_error_an_actor_raises_comes_back_as_our_one_line(local_ray, bad_card: Path, folder: Path) -> None:
    from symnets_deploy.errors import ArtifactError
    from symnets_deploy.predictor import Predictor
    from symnets_deploy.ray_batch import predict_paths_ray

    with pytest.raises(ArtifactError) as plain:
        Predictor.load(bad_card)
    with pytest.raises(ArtifactError) as on_ray:  # was ray.exceptions.ActorDiedError with two tracebacks as its text
        predict_paths_ray(sorted(folder.rglob("*.png"))[:3], bad_card, concurrency=1)
    assert str(on_ray.value) == str(plain.value) and "\n" not in str(on_ray.value)


def _plain(paths, engine: Path) -> dict[str, dict]:
    """The plain ``Predictor``'s rows by path (``Prediction.to_dict``), in one process, batch 16."""
    from symnets_deploy.predictor import Predictor

    with Predictor.load(engine, device="cpu") as predictor:
        return {p.path: p.to_dict() for p in predictor.predict_paths([str(path) for path in paths])}


def _assert_same_row(got: dict, expected: dict) -> None:
    """Labels, indices, statuses and errors equal; probabilities equal up to float rounding (Ray's
    batches hold other images than the plain run's, and ONNX Runtime may sum in another order)."""
    exact = ("path", "label", "index", "topk_labels", "status", "error", "low_confidence", "unusual")
    assert {k: got[k] for k in exact} == {k: expected[k] for k in exact}
    if expected["status"] == "ok":
        assert float(got["confidence"]) == pytest.approx(expected["confidence"], rel=1e-5, abs=1e-7), got["path"]
        assert [float(v) for v in got["topk_probs"]] == pytest.approx(expected["topk_probs"], rel=1e-5, abs=1e-7), got["path"]
    else:
        assert got["confidence"] is None and list(got["topk_probs"]) == []


def test_a_users_ray_dataset_gets_the_prediction_columns(local_ray, tiny_onnx: Path, folder: Path) -> None:  # noqa: F811
    from symnets_deploy.ray_batch import COLUMNS, predict_dataset

    paths = sorted(str(p) for p in folder.rglob("*.png") if p.name.isascii())
    rows = predict_dataset(ray.data.from_items([{"path": p, "camera": i} for i, p in enumerate(paths)]), tiny_onnx, concurrency=1).take_all()
    assert sorted(r["path"] for r in rows) == paths and sorted(r["camera"] for r in rows) == list(range(len(paths)))
    assert set(COLUMNS) <= set(rows[0]) and set(FIELDS) <= set(rows[0])
    assert {r["status"] for r in rows} <= {"ok", "error"} and any(r["status"] == "ok" for r in rows)
    plain = _plain(paths, tiny_onnx)
    for row in rows:  # the columns hold the plain Predictor's answers for that row's file
        _assert_same_row({name: row[name] for name in FIELDS}, plain[row["path"]])


def test_predict_on_ray_gives_the_plain_predictors_labels_and_probabilities(local_ray, tiny_onnx: Path, folder: Path) -> None:  # noqa: F811
    from symnets_deploy.ray_batch import predict_paths_ray

    paths = sorted(p for p in folder.rglob("*") if p.is_file())  # good and bad files, and a name that is not UTF-8
    on_ray = predict_paths_ray(paths, tiny_onnx, concurrency=2, batch_size=4)
    plain = _plain(paths, tiny_onnx)
    assert [p.path for p in on_ray] == [str(path) for path in paths]  # in the order given
    for prediction in on_ray:
        _assert_same_row(prediction.to_dict(), plain[prediction.path])
    ok = [p for p in on_ray if p.ok]
    assert len(ok) > len(GOOD) and len(on_ray) - len(ok) >= len(BAD)  # both kinds of rows were compared
    assert len({p.confidence for p in ok}) > 1  # images that differ: a comparison of real answers, not of one constant
