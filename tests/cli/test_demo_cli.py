"""`symnets demo`: the whole pipeline on the built-in dataset leaves every artifact and agrees with itself."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from symnets_deploy.cli.main import app


def test_demo_runs_train_export_predict(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--iterations", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "ONNX check passed" in result.output
    for name in ("run/last.pt", "run/summary.json", "model.onnx", "model.onnx.verify.json", "predictions.csv"):
        assert (out / name).is_file(), name
    assert json.loads((out / "model.onnx.verify.json").read_text())["passed"] is True
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    street = sorted((out / "data" / "street").rglob("*.*"))
    assert len(rows) == len(street) > 0
    assert all(r["status"] == "ok" and r["label"] in {"circle", "cross", "square", "triangle"} for r in rows)
