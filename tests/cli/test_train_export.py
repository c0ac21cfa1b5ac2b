"""``symnets train --export``: from image folders to checked artifacts in one command (issue 10)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from symnets_deploy.cli.main import app  # noqa: E402
from symnets_deploy.enums import Precision  # noqa: E402
from symnets_deploy.export.tolerances import TOLERANCES, Tol  # noqa: E402
from tests.cli_checks import error_line  # noqa: E402

runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def _args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(data_root), "--backbone", "tiny",
        "--iterations", "4", "--batch-size", "4", "--image-size", "32", "--device", "cpu", "--out", str(out), *extra,
    ]


def test_export_leaves_checked_variants_next_to_the_run(shapes_root, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, _args(shapes_root, out, "--export", "onnx,fp16,int8"), env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        assert (out / name).is_file(), name
        report = json.loads((out / f"{name}.verify.json").read_text())
        assert report["passed"] is True and report["num_images"] == 18  # the whole target domain
        assert report["accuracy"] and report["images"]["labeled"] is True
    lines = result.stdout.splitlines()
    assert any(line.startswith("stages: setup") and "export fp16" in line and "total" in line for line in lines)
    assert sum(" passed on 18 images, accuracy " in line for line in lines) == 3
    # The artifacts are what `symnets export` makes from last.pt: verify agrees, by the weights' hash.
    verified = runner.invoke(app, ["verify", str(out / "model.onnx"), "--checkpoint", str(out / "last.pt")], env=ENV)
    assert verified.exit_code == 0, verified.output


def test_a_failing_variant_exits_6_and_keeps_the_run_and_the_others(shapes_root, tmp_path, monkeypatch):
    # An fp16 bound no real conversion meets: the check runs for real and fails.
    monkeypatch.setitem(TOLERANCES, Precision.fp16, Tol(bounds={"probs": {"max": 0.0}}, top1=1.0))
    out = tmp_path / "run"
    result = runner.invoke(app, _args(shapes_root, out, "--export", "fp16,onnx"), env=ENV)
    line = error_line(result, 6)
    assert "fp16: equivalence check failed" in line and str(out) in line
    assert (out / "last.pt").is_file() and (out / "summary.json").is_file()
    assert (out / "model.onnx").is_file() and json.loads((out / "model.onnx.verify.json").read_text())["passed"] is True
    assert not (out / "model.fp16.onnx").exists()
    assert json.loads((out / "model.fp16.onnx.verify.json").read_text())["passed"] is False
    assert "fp16: FAILED" in result.stdout


@pytest.mark.parametrize("variants, code, words", [
    ("onnx,fp32", 2, "unknown variant(s) 'fp32'"),
    ("onnx,onnx", 2, "listed twice"),
    ("trt", 4, "needs 'tensorrt'"),
])
def test_bad_export_lists_fail_before_any_training(shapes_root, tmp_path, monkeypatch, variants, code, words):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on this machine, also where TensorRT is installed
    out = tmp_path / "run"
    line = error_line(runner.invoke(app, _args(shapes_root, out, "--export", variants), env=ENV), code)
    assert words in line
    assert not (out / "config.json").exists() and not (out / "last.pt").exists()
