"""`symnets train` on a flat target folder, as a user whose camera images have no labels (issue 16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}


def test_a_flat_target_trains_exports_reports_and_info_shows_the_scores(shapes_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_root / "photos", data / "photos")
    (data / "camera" / "monday").mkdir(parents=True)
    for i, path in enumerate(sorted((shapes_root / "sketches").rglob("*.*"))):
        shutil.copy2(path, data / "camera" / ("monday" if i % 2 else "") / f"frame_{i:03d}{path.suffix}")
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--source", "photos", "--target", "camera", "--data-root", str(data), "--backbone", "tiny", "--image-size", "32",
        "--iterations", "6", "--batch-size", "4", "--device", "cpu", "--out", str(run), "--export", "onnx", "--threads", "1",
    ], env=ENV)
    assert result.exit_code == 0, result.output
    assert "target labels: none" in result.output and "target acc" not in result.stdout
    assert "label-free: source-val Ct" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target_labels"] == "none" and summary["target_acc_ct"] is None
    verify = json.loads((run / "model.onnx.verify.json").read_text())
    assert verify["passed"] and not verify.get("accuracy")  # no labels: agreement only
    assert (run / "report" / "report.html").is_file() and (run / "report" / "label_free.png").is_file()
    info = runner.invoke(app, ["info", str(run / "model.onnx"), "--json"], env=ENV)
    assert info.exit_code == 0, info.output
    facts = json.loads(info.stdout)
    assert facts["target_labels"].startswith("none") and facts["target_accuracy_percent"] is None
    assert facts["label_free"]["v_measure"] == pytest.approx(summary["label_free"]["v_measure"], abs=1e-4)
    assert facts["label_free"]["source_val_acc_ct"] == pytest.approx(summary["label_free"]["source_val_acc_ct"], abs=1e-4)


def test_target_labels_ignore_says_so_and_reports_no_accuracy(shapes_root, tmp_path):
    result = runner.invoke(app, [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny", "--image-size", "32",
        "--iterations", "3", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-report", "--target-labels", "ignore",
    ], env=ENV)
    assert result.exit_code == 0, result.output
    assert "target labels: none (--target-labels ignore)" in result.output and "target acc" not in result.stdout
    labeled = runner.invoke(app, [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny", "--image-size", "32",
        "--iterations", "3", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "labeled"), "--no-report",
    ], env=ENV)
    assert labeled.exit_code == 0, labeled.output
    assert "target labels: from class folders, used for evaluation only" in labeled.output
    assert "(class folders, evaluation only)" in labeled.stdout
