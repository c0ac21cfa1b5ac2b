"""``symnets export`` / ``symnets verify`` through Typer's CliRunner: tables, files and exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from tests.cli_checks import error_line  # noqa: E402

runner = CliRunner()
ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


def test_help_lists_the_options():
    result = runner.invoke(app, ["export", "--help"], env=ENV)
    assert result.exit_code == 0, result.output
    for option in ("--checkpoint", "--from-onnx", "--format", "--precision", "--head", "--output", "--calibration-images",
                   "--max-images", "--calibration-size", "--min-batch", "--opt-batch", "--max-batch"):
        assert option in result.output, option
    result = runner.invoke(app, ["verify", "--help"], env=ENV)
    assert result.exit_code == 0 and "--checkpoint" in result.output and "--images" in result.output


def test_export_then_verify(tiny_run, shapes_root, tmp_path):
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "--checkpoint", str(tiny_run / "last.pt"), "--output", str(out),
                                 "--calibration-images", str(shapes_root / "sketches"), "--max-images", "12"], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    header, logits, probs, accuracy, summary = result.stdout.strip().splitlines()
    assert header.split()[:2] == ["check", "output"]
    assert accuracy.startswith("accuracy on the labeled check images: torch ") and "/12)" in accuracy  # sketches/<class>/<image>
    assert logits.split()[:4] == ["onnxruntime", "vs", "torch", "logits"] and logits.endswith("pass")
    assert "passed on 12 images" in summary and str(out) in summary
    report = json.loads((tmp_path / "model.onnx.verify.json").read_text())
    assert report["passed"] and report["images"]["count"] == 12

    result = runner.invoke(app, ["verify", str(out), "--checkpoint", str(tiny_run / "last.pt"), "--max-images", "6"], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "passed on 6 images" in result.stdout


def test_default_output_sits_next_to_the_checkpoint(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "last.pt", run / "last.pt")
    result = runner.invoke(app, ["export", "--checkpoint", str(run / "last.pt"), "--precision", "fp16", "--head", "paired"], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "model.fp16.onnx", "model.fp16.onnx.verify.json"]
    assert json.loads((run / "model.fp16.onnx.verify.json").read_text())["head"] == "paired"


@pytest.mark.parametrize("args, code, words", [
    (["--format", "tflite"], 2, "tflite"),
    (["--precision", "int4"], 2, "int4"),
    (["--max-batch", "8"], 2, "apply to --format trt only"),
    (["--format", "trt", "--min-batch", "8", "--opt-batch", "4"], 2, "min-batch <= --opt-batch"),
    (["--output", "model.plan"], 2, "needs the suffix .onnx"),
    (["--opset", "17"], 2, "opset 17"),
    (["--max-images", "0"], 2, "max-images"),
])
def test_bad_options_exit_2(tiny_run, tmp_path, args, code, words):
    result = runner.invoke(app, ["export", "--checkpoint", str(tiny_run / "last.pt"), *args], env=ENV)
    assert result.exit_code == code, result.output
    assert words in result.output
    assert not list(tiny_run.glob("model*"))


def test_a_missing_checkpoint_or_onnx_is_exit_2_before_anything_loads(tmp_path):
    """A path typed wrong is bad usage (README: a missing file is 2, as predict does), said in one line (issue 19 item 12)."""
    missing = tmp_path / "nope.pt"
    result = runner.invoke(app, ["export", "--checkpoint", str(missing)], env=ENV)
    assert error_line(result, 2) == f"error: {missing}: checkpoint not found"
    assert "reading" not in result.output  # refused before the export starts
    line = error_line(runner.invoke(app, ["export", "--checkpoint", str(tmp_path)], env=ENV), 2)
    assert line.startswith(f"error: {tmp_path}: checkpoint not found") and "no last.pt" in line
    line = error_line(runner.invoke(app, ["export", "--from-onnx", str(tmp_path / "nope.onnx"), "--precision", "int8"], env=ENV), 2)
    assert line == f"error: {tmp_path / 'nope.onnx'}: ONNX file not found"
    assert sorted(tmp_path.iterdir()) == []


def test_verify_of_a_run_folder_or_a_checkpoint_says_what_to_give(tiny_run, tmp_path):
    """``verify RUN`` names the models in the folder; ``verify last.pt`` says to export first (exit 2)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes((tiny_run / "last.pt").read_bytes())
    args = ["--checkpoint", str(run / "last.pt")]
    line = error_line(runner.invoke(app, ["verify", str(run), *args], env=ENV), 2)
    assert "is a run folder without an exported model" in line and f"symnets export --checkpoint {run}" in line
    line = error_line(runner.invoke(app, ["verify", str(run / "last.pt"), *args], env=ENV), 2)
    assert "is a training checkpoint, not an exported model" in line and "symnets export" in line
    (run / "model.int8.onnx").write_bytes(b"x")
    line = error_line(runner.invoke(app, ["verify", str(run), *args], env=ENV), 2)
    assert f"{run}: is a folder" in line and "model.int8.onnx" in line
    assert "artifact not found" in error_line(runner.invoke(app, ["verify", str(run / "model.onnx"), *args], env=ENV), 2)


def test_empty_calibration_folder_exits_2(tiny_run, tmp_path):
    (tmp_path / "empty").mkdir()
    line = error_line(runner.invoke(app, ["export", "--checkpoint", str(tiny_run / "last.pt"), "--output", str(tmp_path / "m.onnx"),
                                              "--calibration-images", str(tmp_path / "empty")], env=ENV), 2)
    assert "no readable images" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_verify_unknown_artifact_type_exits_2(tiny_run, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"x")
    line = error_line(runner.invoke(app, ["verify", str(path), "--checkpoint", str(tiny_run / "last.pt")], env=ENV), 2)
    assert ".onnx" in line and ".plan" in line


def test_verify_a_file_that_is_not_onnx_exits_5(tiny_run, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"definitely not protobuf")
    error_line(runner.invoke(app, ["verify", str(path), "--checkpoint", str(tiny_run / "last.pt")], env=ENV), 5)
