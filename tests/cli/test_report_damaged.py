"""``symnets report`` on a damaged run folder (issue 18 item 12): it draws what can be drawn, says in one
line per damaged file what could not be drawn and why, and exits 0; never a traceback or "error: aborted"."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from symnets_deploy.cli.main import app  # noqa: E402

runner = CliRunner()
FIGURES = {"curves", "label_free", "scores_vs_accuracy", "confusion", "tsne"}


def _lines(path: Path, edit: Callable[[list[str]], None]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    edit(lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _nan_features(path: Path) -> None:
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["target"] = arrays["target"].astype(np.float32)
    arrays["target"][0, 0] = np.nan  # what a diverged training leaves: scikit-learn refuses NaN
    np.savez_compressed(path, **arrays)


def _edit_json(path: Path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **fields}), encoding="utf-8")


def _torn_last_line(path: Path) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"iteration": 5, "lambda": 0.')  # killed in the middle of its write


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


#: name -> (damage done to a copy of a real run, the file its one line names ("": no line), the figures then not drawn)
DAMAGES: dict[str, tuple[Callable[[Path], None], str, set[str]]] = {
    "metrics_torn_last_line": (lambda run: _torn_last_line(run / "metrics.jsonl"), "metrics.jsonl", set()),
    "metrics_garbage_line": (lambda run: _lines(run / "metrics.jsonl", lambda lines: lines.insert(2, "garbage {{")), "metrics.jsonl", set()),
    "features_truncated": (lambda run: _cut(run / "features_after.npz", 3000), "features_after.npz", {"tsne"}),
    "features_zero_bytes": (lambda run: _cut(run / "features_after.npz", 0), "features_after.npz", {"tsne"}),  # was "error: aborted"
    "features_nan": (lambda run: _nan_features(run / "features_after.npz"), "features_after.npz", {"tsne"}),
    "summary_not_json": (lambda run: (run / "summary.json").write_text("{not json"), "summary.json", set()),
    "evaluation_ragged_matrix": (lambda run: _edit_json(run / "target_evaluation.json", confusion=[[1, 2], [3]]), "target_evaluation.json", {"confusion"}),
}
#: More damages, a few files at a time (each file once): one line per damaged file, in the order the report reads them.
COMBINED = {
    "wrong_shapes": {
        "metrics_records_of_the_wrong_shape": (
            lambda run: _lines(run / "metrics.jsonl", lambda lines: lines.extend(['[1, 2]', '{"iteration": "x"}', '{"iteration": 9, "label_free": 7, "collapse": 3}'])),
            "metrics.jsonl", set()),
        "config_not_an_object": (lambda run: (run / "config.json").write_text("[3]"), "config.json", set()),
        "summary_fields_of_the_wrong_type": (
            lambda run: _edit_json(run / "summary.json", class_names=5, label_free="x", warnings=3, num_classes="a"), "summary.json", set()),
        "evaluation_not_an_object": (lambda run: (run / "target_evaluation.json").write_text("[]"), "target_evaluation.json", {"confusion"}),
        "features_before_truncated": (lambda run: _cut(run / "features_before.npz", 100), "features_before.npz", set()),  # after adaptation is drawn
        "verify_report_not_json": (lambda run: (run / "model.onnx.verify.json").write_text("{"), "model.onnx.verify.json", set()),
    },
    "not_json_or_not_npz": {
        "metrics_last_record_cut": (lambda run: _cut(run / "metrics.jsonl", -200), "metrics.jsonl", {"label_free", "scores_vs_accuracy"}),  # its only evaluation
        "config_not_json": (lambda run: (run / "config.json").write_text("{{"), "config.json", set()),
        "summary_not_utf8": (lambda run: (run / "summary.json").write_bytes(b"\x8e\xff{}"), "summary.json", set()),
        "features_not_npz": (lambda run: (run / "features_after.npz").write_text("not an archive"), "features_after.npz", {"tsne"}),
        "source_split_not_json": (lambda run: (run / "source_split.json").write_text("{{"), "", set()),  # resume reads it, the report does not
    },
    "not_objects": {
        "summary_not_an_object": (lambda run: (run / "summary.json").write_text("[1, 2]"), "summary.json", set()),
        "evaluation_not_json": (lambda run: (run / "target_evaluation.json").write_text('{"class_names": ["a"'), "target_evaluation.json", {"confusion"}),
        "features_of_the_wrong_shape": (lambda run: np.savez(run / "features_after.npz", source=np.zeros(4), source_labels=np.zeros(4, dtype=int)),
                                        "features_after.npz", {"tsne"}),
    },
}


def _report_of(tiny_run: Path, tmp_path: Path, damages: dict) -> tuple[Path, object]:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for spoil, _, _ in damages.values():
        spoil(run)
    return run, runner.invoke(app, ["report", str(run)])


def _check(run: Path, result, damages: dict) -> None:
    """Exit 0, no traceback; one ``warning:`` line per damaged file, on stderr and on the page; every figure
    that does not need a damaged file drawn, each one that does named as not drawn with the file."""
    assert result.exit_code == 0 and result.exception is None, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "error:" not in result.output  # no "error: aborted" either
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line.split(": ")[:2] for line in problems] == [["warning", str(run / name)] for _, name, _ in damages.values() if name], result.stderr
    folder = run / "report"
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert all(html.escape(line.removeprefix("warning: ")) in page for line in problems)  # the page says it too
    not_drawn = set().union(*(figures for _, _, figures in damages.values()))
    drawn = FIGURES - not_drawn
    assert sorted(re.findall(r'src="([^"]+)"', page)) == sorted(f"{figure}.png" for figure in drawn)
    assert all((folder / f"{figure}.png").is_file() for figure in drawn)
    for _, name, figures in damages.values():
        for figure in figures:
            why = result.stdout.split(f"{figure}: not drawn (")[1].splitlines()[0]
            assert name in why and f"{figure}: not drawn, " in page, why


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_run_file_costs_only_what_needs_it_and_is_named_in_one_line(damage: str, tiny_run: Path, tmp_path: Path) -> None:
    damages = {damage: DAMAGES[damage]}
    run, result = _report_of(tiny_run, tmp_path, damages)
    _check(run, result, damages)


@pytest.mark.filterwarnings("error:No artists with labels found:UserWarning")  # t-SNE classes without names are still drawn
@pytest.mark.parametrize("group", list(COMBINED))
def test_several_damaged_files_are_one_line_each(group: str, tiny_run: Path, tmp_path: Path) -> None:
    run, result = _report_of(tiny_run, tmp_path, COMBINED[group])
    _check(run, result, COMBINED[group])


def _alarm(lines: list[str]) -> None:
    last = json.loads(lines[-1])
    lines[-1] = json.dumps({**last, "collapse": ["one class takes every target image"]})


def test_a_damaged_summary_is_not_taken_for_an_unfinished_run(tiny_run: Path, tmp_path: Path) -> None:
    damages = {"summary_not_json": DAMAGES["summary_not_json"],
               "no_evaluation_or_features": (lambda run: [(run / name).unlink() for name in ("target_evaluation.json", "features_after.npz")], "", set()),
               "collapse_alarm": (lambda run: _lines(run / "metrics.jsonl", _alarm), "", set())}  # the page falls back on the latest alarm
    run, result = _report_of(tiny_run, tmp_path, damages)
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert "summary.json could not be read" in page and "(latest evaluation; summary.json could not be read): one class takes every" in page
    assert "did not finish" not in page and "did not finish" not in result.output
