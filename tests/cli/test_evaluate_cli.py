"""``symnets evaluate`` through Typer's CliRunner: printed accuracy, the JSON file, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from symnets_deploy.card import ONNX_CARD_KEY  # noqa: E402
from symnets_deploy.cli.main import app  # noqa: E402

from tests.cli_checks import error_line  # noqa: E402
from tests.runtime.conftest import tiny_onnx  # noqa: E402,F401  (fixture)
from tests.runtime.test_evaluation import JSON_KEYS, reference  # noqa: E402

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def test_prints_accuracy_and_writes_json(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    folder, out = shapes_root / "sketches", tmp_path / "eval.json"
    result = invoke(tiny_onnx, folder, "--json", out, "--top-k", 2, "--device", "cpu", "--batch-size", 4)
    assert result.exit_code == 0, result.output
    _, _, labels, probs = reference(tiny_onnx, folder)
    expected = float(np.mean(probs.argmax(axis=1) == labels))
    data = json.loads(out.read_text())
    assert JSON_KEYS <= set(data) and data["accuracy"] == pytest.approx(expected)
    assert data["images"] == 18 and data["failed"] == [] and data["top_k"] == 2
    assert result.stdout.startswith(f"accuracy {100 * expected:.2f} % (") and "top-2" in result.stdout
    assert "confusion matrix" in result.stdout and all(name in result.stdout for name in data["class_names"])


def test_corrupt_image_exits_3_after_writing_json(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    folder, out = shutil.copytree(shapes_root / "sketches", tmp_path / "labeled"), tmp_path / "eval.json"
    (folder / "square" / "broken.jpg").write_bytes(b"garbage, not a JPEG")
    result = invoke(tiny_onnx, folder, "--json", out, "--device", "cpu")
    assert result.exit_code == 3, result.output
    saved, error = result.stderr.strip().splitlines()  # the JSON is written before the error is raised
    assert saved == f"results -> {out}" and error.startswith("error: 1 of 19 images could not be predicted")
    assert "broken.jpg" in error and "Traceback" not in result.output
    data = json.loads(out.read_text())
    assert data["images"] == 18 and [f["path"] for f in data["failed"]] == [str(folder / "square" / "broken.jpg")]
    assert result.stdout.startswith("accuracy ") and "1 failed" in result.stdout


def test_unknown_class_folders_exit_2(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    shutil.copytree(shapes_root / "sketches" / "circle", tmp_path / "circle")
    shutil.copytree(shapes_root / "sketches" / "circle", tmp_path / "hexagon")
    result = invoke(tiny_onnx, tmp_path, "--json", tmp_path / "eval.json")
    assert f"{tmp_path}: folders hexagon are not classes of the model" in error_line(result, 2)
    assert not (tmp_path / "eval.json").exists()


def test_missing_artifact_exits_2_and_cardless_artifact_exits_5(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    assert "not found" in error_line(invoke(tmp_path / "missing.onnx", shapes_root / "sketches"), 2)
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_onnx))
    keep = [p for p in model.metadata_props if p.key != ONNX_CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, str(tmp_path / "bare.onnx"))
    assert "no model card" in error_line(invoke(tmp_path / "bare.onnx", shapes_root / "sketches"), 5)


def test_bad_options_exit_2(tiny_onnx: Path, shapes_root: Path) -> None:
    assert invoke(tiny_onnx, shapes_root / "sketches", "--top-k", 0).exit_code == 2
    assert invoke(tiny_onnx).exit_code == 2  # DATA_DIR is required


def test_evaluate_runs_with_torch_blocked(tiny_onnx: Path, shapes_root: Path) -> None:
    from tests.runtime.test_runtime_no_torch_predict import run_python

    code = "from symnets_deploy.cli.main import main\nsys.argv = ['symnets', 'evaluate', *sys.argv[1:]]\nmain()\n"
    proc = run_python(code, tiny_onnx, shapes_root / "sketches", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("accuracy ") and "/18 images), 0 failed" in proc.stdout.splitlines()[0]
