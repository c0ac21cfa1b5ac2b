"""Predict-time monitoring on the GPU-trained A->W model: `symnets profile`, `predict --summary`, drift, exit 7 (issue 17)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

pytest.importorskip("onnxruntime")

runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}


def _subset(root: Path, dest: Path, per_class: int, transform=None) -> Path:
    """The first ``per_class`` images of each class folder, optionally transformed (saved as PNG)."""
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(cls.glob("*.jpg"))[:per_class]:
            if transform is None:
                shutil.copy(image, dest / cls.name / image.name)
            else:
                transform(Image.open(image).convert("RGB")).save(dest / cls.name / (image.stem + ".png"))
    return dest


@pytest.fixture(scope="module")
def profiled(trained_onnx, office_root, tmp_path_factory) -> Path:
    """The fixture with a profile of its whole target domain (webcam), made without torch by `symnets profile`."""
    out = tmp_path_factory.mktemp("profiled") / "a2w.profiled.onnx"
    result = runner.invoke(app, ["profile", str(trained_onnx), str(office_root / "webcam"), "--output", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "295 images" in result.stdout
    return out


def test_profile_writes_a_copy_with_the_same_weights_and_refuses_its_input(profiled, trained_onnx):
    from symnets_deploy.info import describe_file

    original, copy = describe_file(trained_onnx), describe_file(profiled)
    assert copy["weights_sha256"] == original["weights_sha256"] and copy["classes"] == original["classes"]
    assert isinstance(original["reference_profile"], str) and "symnets profile" in original["reference_profile"]
    assert copy["reference_profile"]["images"] == 295 and copy["reference_profile"]["estimator"] == "confidence"
    result = runner.invoke(app, ["profile", str(trained_onnx), "unused", "--output", str(trained_onnx)], env=ENV)
    assert result.exit_code == 2


def test_predict_on_a_domain_as_accurate_as_the_target_reports_no_drift(profiled, office_root, tmp_path):
    summary = tmp_path / "d.json"
    result = runner.invoke(app, ["predict", str(office_root / "dslr"), "--engine", str(profiled), "-o", str(tmp_path / "d.csv"), "--summary", str(summary)], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(summary.read_text())
    assert {"images", "estimated_accuracy", "reference_estimated_accuracy", "drift", "reasons", "low_confidence_share", "class_shares"} <= set(data)
    assert data["images"] == 157 and data["drift"] is False
    truth = _accuracy(tmp_path / "d.csv")
    assert abs(data["estimated_accuracy"] - truth) <= 0.03  # "done when": within 3 points (no label used)
    assert "estimated accuracy" in result.output and "no label" in result.output


def test_blurred_images_drift_and_fail_on_drift_exits_7(profiled, office_root, tmp_path):
    blurred = _subset(office_root / "webcam", tmp_path / "blurred", 10, lambda im: im.filter(ImageFilter.GaussianBlur(4)))
    result = runner.invoke(app, ["predict", str(blurred), "--engine", str(profiled), "-o", str(tmp_path / "b.csv"), "--summary", str(tmp_path / "b.json"), "--fail-on-drift"], env=ENV)
    assert result.exit_code == 7, result.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["drift"] is True and data["reasons"]
    assert data["estimated_accuracy"] < data["reference_estimated_accuracy"] - 0.05
    rows = (tmp_path / "b.csv").read_text().splitlines()
    assert rows[0].endswith("low_confidence,unusual") and any(",True," in r or r.endswith("True") for r in rows[1:])


def test_a_model_without_profile_predicts_as_before_and_says_how_to_add_one(trained_onnx, office_root, tmp_path):
    images = _subset(office_root / "dslr", tmp_path / "few", 1)
    result = runner.invoke(app, ["predict", str(images), "--engine", str(trained_onnx), "-o", str(tmp_path / "p.csv")], env=ENV)
    assert result.exit_code == 0, result.output
    assert "symnets profile" in result.output
    result = runner.invoke(app, ["predict", str(images), "--engine", str(trained_onnx), "-o", str(tmp_path / "q.csv"), "--summary", str(tmp_path / "s.json")], env=ENV)
    assert result.exit_code == 2 and "symnets profile" in result.output and not (tmp_path / "q.csv").exists()


def _accuracy(csv_path: Path) -> float:
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    return float(np.mean([Path(r["path"]).parent.name == r["label"] for r in rows]))


def test_evaluate_shows_the_label_free_estimate_beside_the_true_accuracy(profiled, office_root, tmp_path):
    result = runner.invoke(app, ["evaluate", str(profiled), str(office_root / "dslr"), "--json", str(tmp_path / "e.json")], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["monitoring"]["drift"] is False and data["monitoring"]["images"] == data["images"] == 157
    assert abs(data["monitoring"]["estimated_accuracy"] - data["accuracy"]) <= 0.03
    assert "estimated without labels" in result.stdout
