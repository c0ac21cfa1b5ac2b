"""Nothing a user owns is overwritten or deleted (issue 18, items 1-3)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app
from tests.runtime.conftest import tiny_onnx  # noqa: F401  (fixture)

pytest.importorskip("onnxruntime")

runner = CliRunner()


@pytest.fixture
def model(tiny_onnx, tmp_path):  # noqa: F811
    copy = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, copy)
    return copy


@pytest.mark.parametrize("args", [
    lambda m, imgs, first: ["predict", "-e", str(m), str(imgs), "-o", str(m), "--format", "csv"],
    lambda m, imgs, first: ["predict", "-e", str(m), str(imgs), "-o", str(first), "--format", "csv"],
    lambda m, imgs, first: ["predict", "-e", str(m), str(imgs), "-o", str(m.parent / "link.csv"), "--format", "csv"],
    lambda m, imgs, first: ["evaluate", str(m), str(imgs), "--json", str(m)],
])
def test_an_output_that_is_an_input_is_refused_and_nothing_changes(model, shapes_root, tmp_path, args):
    images = tmp_path / "imgs"
    shutil.copytree(shapes_root / "sketches", images)
    first = sorted(images.rglob("*.png"))[0]
    os.link(model, tmp_path / "link.csv")  # another name for the model
    before = {p: p.read_bytes() for p in (model, first)}
    result = runner.invoke(app, args(model, images, first))
    assert result.exit_code == 2, result.output
    assert "would overwrite" in result.output and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in before} == before


def test_summary_may_not_be_the_model_or_the_output(model, shapes_root, tmp_path):
    result = runner.invoke(app, ["predict", "-e", str(model), str(shapes_root / "sketches"), "-o", str(tmp_path / "p.csv"), "--summary", str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "same file" in result.output


def _train(shapes_root: Path, out: Path, *extra: str):
    return runner.invoke(app, [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny", "--image-size", "32",
        "--iterations", "2", "--batch-size", "4", "--device", "cpu", "--out", str(out), "--threads", "1", *extra,
    ])


def test_overwrite_replaces_everything_the_run_wrote_and_nothing_else(shapes_root, tmp_path):
    run = tmp_path / "run"
    assert _train(shapes_root, run, "--export", "onnx", "--keep-every", "1").exit_code == 0
    (run / "report" / "thesis.tex").write_text("my thesis")  # the user's, in a folder the run made
    (run / "notes.txt").write_text("mine")
    result = _train(shapes_root, run, "--overwrite", "--no-report")
    assert result.exit_code == 0, result.output
    assert not (run / "model.onnx").exists() and not (run / "model.onnx.verify.json").exists()  # the old run's artifacts are gone
    assert (run / "report" / "thesis.tex").read_text() == "my thesis" and (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (run / "report").iterdir()) == ["thesis.tex"]  # the old figures are gone
    assert not (run / "checkpoints").exists()  # ours alone: removed


def test_a_folder_with_a_foreign_config_json_is_never_treated_as_a_run(shapes_root, tmp_path):
    folder = tmp_path / "project"
    (folder / "report").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"editor": "vim"}))
    (folder / "report" / "thesis.tex").write_text("my thesis")
    result = _train(shapes_root, folder, "--overwrite")
    assert result.exit_code == 2 and "not a symnets run" in result.output
    assert (folder / "report" / "thesis.tex").read_text() == "my thesis"
    assert json.loads((folder / "config.json").read_text()) == {"editor": "vim"}


def test_export_never_writes_over_the_model_it_converts(model):
    before = model.read_bytes()
    result = runner.invoke(app, ["export", "--from-onnx", str(model), "--precision", "int8", "--output", str(model)])
    assert result.exit_code == 2 and "would replace the model" in result.output
    assert model.read_bytes() == before


def test_a_fifo_in_an_input_folder_gets_an_error_row_instead_of_a_hang(model, shapes_root, tmp_path):
    import subprocess
    import sys

    images = tmp_path / "imgs"
    shutil.copytree(shapes_root / "sketches", images)
    os.mkfifo(images / "pipe.png")
    out = tmp_path / "p.csv"
    done = subprocess.run([sys.executable, "-m", "symnets_deploy.cli", "predict", str(images), "-e", str(model), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    (row,) = [line for line in out.read_text().splitlines() if "pipe.png" in line]
    assert ",error," in row and "not a regular file" in row
