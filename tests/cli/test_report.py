"""``symnets report`` and ``symnets evaluate --report``: figures a user can open (issue 11)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from symnets_deploy.cli.main import app  # noqa: E402
from tests.cli_checks import error_line  # noqa: E402
from tests.runtime.conftest import tiny_onnx  # noqa: E402,F401  (fixture)

runner = CliRunner()


def _pngs_are_images(paths) -> None:
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300, path
            pixels = np.asarray(image.convert("L"))
            assert pixels.std() > 5, f"{path} is blank"  # something was drawn


def _references(page: Path) -> list[Path]:
    return [page.parent / src for src in re.findall(r'src="([^"]+)"', page.read_text(encoding="utf-8"))]


def test_a_run_gets_curves_confusion_and_tsne_in_one_page(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    folder = run / "report"
    figures = [folder / name for name in ("curves.png", "label_free.png", "scores_vs_accuracy.png", "confusion.png", "tsne.png")]
    _pngs_are_images(figures)
    page = folder / "report.html"
    refs = _references(page)
    assert sorted(refs) == sorted(figures) and all(ref.is_file() for ref in refs)
    text = page.read_text(encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text())
    assert f"{100 * summary['target_acc_ct']:.2f} %" in text and "photos → sketches" in text
    assert "No exported artifacts" in text
    assert "from class folders, used for evaluation only" in text and "oracle" in text  # target labels evaluate, never train


def test_a_run_without_features_or_evaluation_says_what_is_missing(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for name in ("features_after.npz", "features_before.npz", "target_evaluation.json"):
        (run / name).unlink()
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "tsne: not drawn" in result.stdout and "confusion: not drawn" in result.stdout
    assert [p.name for p in _references(tmp_path / "out" / "report.html")] == ["curves.png", "label_free.png", "scores_vs_accuracy.png"]
    assert "not drawn" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_the_artifacts_of_the_run_are_listed_with_their_checks(shapes_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny",
            "--iterations", "3", "--batch-size", "4", "--image-size", "32", "--device", "cpu", "--out", str(run), "--export", "onnx"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"report: {run / 'report' / 'report.html'}" in result.stdout  # drawn at the end of training
    text = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert "model.onnx" in text and "passed" in text and "model.onnx.verify.json" in text


def test_without_the_extra_report_exits_4_and_writes_nothing(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = error_line(runner.invoke(app, ["report", str(tiny_run), "--out", str(tmp_path / "out")]), 4)
    assert "pip install 'symnets-deploy[report]'" in line
    assert not (tmp_path / "out").exists()


def test_report_of_a_folder_that_is_no_run_is_a_usage_error(tmp_path: Path) -> None:
    assert "not a run folder" in error_line(runner.invoke(app, ["report", str(tmp_path)]), 2)


def test_evaluate_draws_the_confusion_matrix_of_an_artifact(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:  # noqa: F811
    result = runner.invoke(app, ["evaluate", str(tiny_onnx), str(shapes_root / "sketches"), "--report", str(tmp_path / "fig")])
    assert result.exit_code == 0, result.output
    _pngs_are_images([tmp_path / "fig" / "confusion.png"])
