"""`symnets select`: kept checkpoints of several runs ranked without target labels, the choice exported (issue 16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

pytest.importorskip("torch")

runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
ITERATIONS = 12


def _train(data: Path, target: str, out: Path, *extra: str) -> Path:
    args = ["train", "--source", "photos", "--target", target, "--data-root", str(data), "--backbone", "tiny", "--image-size", "32",
            "--iterations", str(ITERATIONS), "--batch-size", "4", "--device", "cpu", "--seed", "2", "--threads", "1",
            "--out", str(out), "--keep-every", "6", "--no-report", *extra]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def data(shapes_root, tmp_path_factory) -> Path:
    """The shapes domains and ``sketches_flat``, the target's images without class folders."""
    root = tmp_path_factory.mktemp("select_data")
    for domain in ("photos", "sketches"):
        shutil.copytree(shapes_root / domain, root / domain)
    (root / "sketches_flat").mkdir()
    for path in sorted((root / "sketches").rglob("*.*")):
        shutil.copy2(path, root / "sketches_flat" / f"{path.parent.name}_{path.name}")
    return root


@pytest.fixture(scope="module")
def labeled_runs(data, tmp_path_factory) -> list[Path]:
    """A source-only run, a SymNets run, and a SymNets run whose learning rate (3,000x the default) collapses it."""
    folder = tmp_path_factory.mktemp("labeled_runs")
    return [
        _train(data, "sketches", folder / "source_only", "--method", "source-only"),
        _train(data, "sketches", folder / "symnets"),
        _train(data, "sketches", folder / "collapsed", "--lr", "30"),
    ]


def test_select_ranks_every_kept_checkpoint_and_puts_a_collapsed_run_last(labeled_runs, tmp_path):
    result = runner.invoke(app, ["select", *map(str, labeled_runs), "--out", str(tmp_path / "chosen")], env=ENV)
    assert result.exit_code == 0, result.output
    selection = json.loads((tmp_path / "chosen" / "selection.json").read_text())
    candidates = selection["candidates"]
    assert len(candidates) == 6  # iterations 6 and 12 of three runs
    assert [c["rank"] for c in candidates] == list(range(1, 7))
    collapsed = [c for c in candidates if Path(c["run"]).name == "collapsed"]
    assert all(c["collapse"] for c in collapsed)  # the alarm fired on both of its checkpoints
    warnings = json.loads((labeled_runs[2] / "summary.json").read_text())["warnings"]
    assert any(w.startswith("target predictions collapsed") for w in warnings)  # and the run warned at its end
    assert [Path(c["run"]).name for c in candidates[-2:]] == ["collapsed", "collapsed"]  # ranked last
    assert selection["chosen"] == candidates[0] and Path(selection["chosen"]["run"]).name != "collapsed"
    for c in candidates:
        assert {"source_val_acc_ct", "v_measure", "target_mean_confidence", "class_shares"} <= set(c["scores"])
        assert c["oracle_target_acc"] is not None  # the target has class folders: shown, not used
    assert "not used for the choice" in result.stdout and "oracle" in selection["target_labels"]
    assert "source_only" in result.stdout and "(collapsed)" in result.stdout
    # The choice does not depend on the oracle column: the same scores without it choose the same.
    from symnets_deploy.selection import selection_order

    unlabeled = [dict(c["scores"]) for c in candidates]
    assert selection_order(unlabeled, [bool(c["collapse"]) for c in candidates])[0] == 0


def test_select_on_unlabeled_runs_exports_and_checks_the_choice(data, tmp_path):
    runs = [
        _train(data, "sketches_flat", tmp_path / "source_only", "--method", "source-only"),
        _train(data, "sketches_flat", tmp_path / "symnets_a"),
        _train(data, "sketches_flat", tmp_path / "symnets_b", "--lr", "0.03"),
        _train(data, "sketches_flat", tmp_path / "symnets_c", "--lambda-gamma", "3"),
    ]
    out = tmp_path / "chosen"
    result = runner.invoke(app, ["select", *map(str, runs), "--out", str(out), "--export", "onnx"], env=ENV)
    assert result.exit_code == 0, result.output
    selection = json.loads((out / "selection.json").read_text())
    assert len(selection["candidates"]) == 8 and selection["target_labels"] == "none"
    assert all(c["oracle_target_acc"] is None for c in selection["candidates"])
    assert "oracle" not in result.stdout
    assert (out / "model.onnx").is_file() and json.loads((out / "model.onnx.verify.json").read_text())["passed"]
    from symnets_deploy.info import describe_file

    facts = describe_file(out / "model.onnx")
    chosen = selection["chosen"]
    assert facts["label_free"]["v_measure"] == pytest.approx(chosen["scores"]["v_measure"], abs=1e-4)
    assert facts["target_labels"].startswith("none")
    info = runner.invoke(app, ["info", str(out / "model.onnx")], env=ENV)
    assert info.exit_code == 0 and "v_measure" in info.stdout and "source_val_acc_ct" in info.stdout


def test_select_refuses_runs_of_other_domains_and_folders_that_are_not_runs(labeled_runs, data, tmp_path):
    other = _train(data, "sketches_flat", tmp_path / "other_target")
    result = runner.invoke(app, ["select", str(labeled_runs[0]), str(other), "--out", str(tmp_path / "x")], env=ENV)
    assert result.exit_code == 2 and "different domains" in result.output
    result = runner.invoke(app, ["select", str(tmp_path), "--out", str(tmp_path / "x")], env=ENV)
    assert result.exit_code == 2 and "not a run folder" in result.output
    assert not (tmp_path / "x" / "selection.json").exists()
