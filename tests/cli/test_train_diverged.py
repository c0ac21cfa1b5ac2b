"""A training whose loss becomes NaN stops with exit 8 and keeps only finite weights (issue 18, item 5)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

torch = pytest.importorskip("torch")
runner = CliRunner()


def _train(shapes_root, out, *extra):
    return runner.invoke(app, [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny", "--image-size", "32",
        "--iterations", "20", "--batch-size", "4", "--device", "cpu", "--out", str(out), "--threads", "1", "--no-report", *extra,
    ])


def test_a_non_finite_option_is_refused_before_anything_is_written(shapes_root, tmp_path):
    result = _train(shapes_root, tmp_path / "run", "--lr", "nan")
    assert result.exit_code == 2 and "--lr nan" in result.output and "finite" in result.output
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_exit_8_and_keeps_the_last_finite_checkpoint(shapes_root, tmp_path):
    run = tmp_path / "run"
    result = _train(shapes_root, run, "--lr", "1e12", "--log-every", "5", "--checkpoint-every", "2", "--export", "onnx")
    assert result.exit_code == 8, result.output
    assert "training diverged" in result.output and "try a lower --lr" in result.output and "Traceback" not in result.output
    # The first step already takes the weights to inf (checked before any checkpoint is written).
    assert "no checkpoint was written" in result.output and not (run / "last.pt").exists()
    assert not (run / "summary.json").exists() and not (run / "model.onnx").exists()  # nothing blames the export
    for line in (run / "metrics.jsonl").read_text().splitlines():
        assert all(not isinstance(v, float) or math.isfinite(v) for v in json.loads(line).values())


def test_a_run_that_diverges_later_keeps_its_last_finite_checkpoint(shapes_root, tmp_path):
    run = tmp_path / "run"
    result = _train(shapes_root, run, "--lr", "1e4", "--checkpoint-every", "1", "--log-every", "1")
    assert result.exit_code == 8, result.output  # measured: the weights overflow at iteration 3-5
    assert f"the last checkpoint with finite weights is {run / 'last.pt'}" in result.output
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert 1 <= ckpt["iteration"] < 20
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
