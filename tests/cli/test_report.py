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


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """Each figure the report draws, by PNG name, as matplotlib holds it: its Axes tell what data was drawn.

    The figures' own saving step is wrapped, not replaced: the PNGs are still written and checked.
    """
    from symnets_deploy import report_figures

    figures, save = {}, report_figures._save

    def keep(fig, path):
        figures[Path(path).name] = fig
        return save(fig, path)

    monkeypatch.setattr(report_figures, "_save", keep)
    return figures


def _check_confusion(fig, class_names: list, confusion: list) -> None:
    """The matrix panel shows these counts in these cells, coloured by row share; the bars are per-class accuracy."""
    counts = np.array(confusion)
    (matrix,) = [ax for ax in fig.axes if ax.images]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    np.testing.assert_allclose(np.asarray(matrix.images[0].get_array()), rates)
    written = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in matrix.texts}
    assert written == {(i, j): int(c) for (i, j), c in np.ndenumerate(counts) if c}
    assert [t.get_text() for t in matrix.get_xticklabels()] == class_names == [t.get_text() for t in matrix.get_yticklabels()]
    assert f"{100 * np.trace(counts) / counts.sum():.2f} %" in matrix.get_title()
    (bars,) = [ax for ax in fig.axes if ax.patches]
    rows = counts.sum(axis=1) > 0
    np.testing.assert_allclose([p.get_width() for p in bars.patches], 100 * np.diag(counts)[rows] / counts.sum(axis=1)[rows])


def _check_tsne(fig, after: dict, before: dict) -> None:
    """Each panel holds one point per image of the features file: source and target by domain, every
    image once by class, as many per class as the file has labels."""
    for when, feats in (("before", before), ("after", after)):
        (domain,) = [ax for ax in fig.axes if ax.get_title().startswith(when) and "by domain" in ax.get_title()]
        (by_class,) = [ax for ax in fig.axes if ax.get_title().startswith(when) and "by class" in ax.get_title()]
        assert [len(c.get_offsets()) for c in domain.collections] == [len(feats["source"]), len(feats["target"])]
        points = np.concatenate([c.get_offsets() for c in domain.collections])
        assert np.isfinite(points).all() and len(np.unique(points, axis=0)) > 1
        per_colour: dict = {}
        for c in by_class.collections:
            key = tuple(np.round(c.get_facecolor()[0], 4))
            per_colour[key] = per_colour.get(key, 0) + len(c.get_offsets())
        labels = np.concatenate([feats["source_labels"], feats["target_labels"]])
        assert sorted(per_colour.values()) == sorted(np.unique(labels, return_counts=True)[1].tolist())
        # the same embedding in both rows
        np.testing.assert_array_equal(np.unique(np.concatenate([c.get_offsets() for c in by_class.collections]), axis=0), np.unique(points, axis=0))


def _check_curves(fig, records: list) -> None:
    """The loss panel has one line per loss term holding metrics.jsonl's values; the accuracy panel target Ct's."""
    steps = [r for r in records if "lr_head" in r]
    evals = [r for r in records if "acc_ct" in r]
    (losses,) = [ax for ax in fig.axes if ax.get_title().startswith("Loss terms")]
    lines = {line.get_label(): line for line in losses.lines}
    assert set(lines) == {k for r in steps for k in r if k.startswith(("cls_", "feat_"))}
    for key, line in lines.items():
        assert list(line.get_xdata()) == [r["iteration"] for r in steps]
        np.testing.assert_allclose(line.get_ydata(), [r[key] for r in steps])
    (accuracy,) = [ax for ax in fig.axes if ax.get_title().startswith("Accuracy")]
    (ct,) = [line for line in accuracy.lines if line.get_label() == "target Ct"]
    assert list(ct.get_xdata()) == [r["iteration"] for r in evals] and evals
    np.testing.assert_allclose(ct.get_ydata(), [100 * r["acc_ct"] for r in evals])


def _check_scores(label_free, against_accuracy, evals: list) -> None:
    """One panel per label-free score: over iterations (its values from metrics.jsonl), and against Ct accuracy."""
    from symnets_deploy.report_figures import SCORES

    assert evals
    for key, label, scale in SCORES:
        (over_time,) = [ax for ax in label_free.axes if ax.get_title() == label]
        expected = [r["label_free"][key] * scale if r["label_free"].get(key) is not None else np.nan for r in evals]
        np.testing.assert_allclose(over_time.lines[0].get_ydata(), expected)
        (scatter,) = [ax for ax in against_accuracy.axes if ax.get_title().split("\n")[0] == label]
        np.testing.assert_allclose(scatter.collections[0].get_offsets(), np.column_stack([expected, [100 * r["acc_ct"] for r in evals]]))


def test_a_run_gets_curves_confusion_and_tsne_in_one_page(tiny_run: Path, tmp_path: Path, drawn: dict) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    # Counts that differ in every cell (the 4-iteration model predicts one class): the figure must show these.
    evaluation = json.loads((run / "target_evaluation.json").read_text())
    evaluation["confusion"] = [[4, 1, 1], [0, 5, 1], [2, 0, 4]]
    (run / "target_evaluation.json").write_text(json.dumps(evaluation))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    folder = run / "report"
    figures = [folder / name for name in ("curves.png", "label_free.png", "scores_vs_accuracy.png", "confusion.png", "tsne.png")]
    _pngs_are_images(figures)
    assert sorted(drawn) == sorted(p.name for p in figures)
    _check_confusion(drawn["confusion.png"], evaluation["class_names"], evaluation["confusion"])
    _check_tsne(drawn["tsne.png"], *(dict(np.load(run / f"features_{when}.npz")) for when in ("after", "before")))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    _check_curves(drawn["curves.png"], records)
    _check_scores(drawn["label_free.png"], drawn["scores_vs_accuracy.png"], [r for r in records if "label_free" in r])
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
    # two accuracies of the same model, each saying what it counts (issue 19 item 13)
    summary = json.loads((run / "summary.json").read_text())
    check = json.loads((run / "model.onnx.verify.json").read_text())
    assert f"<th>target accuracy (Ct, all {summary['target_images']} target images)</th><td>{100 * summary['target_acc_ct']:.2f} %</td>" in text
    assert "<th>check images</th><th>accuracy on the check images</th>" in text
    assert f"<td>ct</td><td>passed</td><td>{check['num_images']}</td><td>{100 * check['accuracy']['onnxruntime']['accuracy']:.2f} %</td>" in text


def test_without_the_extra_report_exits_4_and_writes_nothing(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = error_line(runner.invoke(app, ["report", str(tiny_run), "--out", str(tmp_path / "out")]), 4)
    assert "pip install 'symnets-deploy[report]'" in line
    assert not (tmp_path / "out").exists()


def test_report_of_a_folder_that_is_no_run_is_a_usage_error(tmp_path: Path) -> None:
    assert "not a run folder" in error_line(runner.invoke(app, ["report", str(tmp_path)]), 2)


def test_evaluate_draws_the_confusion_matrix_of_an_artifact(tiny_onnx: Path, shapes_root: Path, tmp_path: Path, drawn: dict) -> None:  # noqa: F811
    from symnets_deploy.evaluation import evaluate_artifact

    result = runner.invoke(app, ["evaluate", str(tiny_onnx), str(shapes_root / "sketches"), "--report", str(tmp_path / "fig")])
    assert result.exit_code == 0, result.output
    _pngs_are_images([tmp_path / "fig" / "confusion.png"])
    expected = evaluate_artifact(tiny_onnx, shapes_root / "sketches")  # the same evaluation, run again here
    assert expected.images == 18
    _check_confusion(drawn["confusion.png"], list(expected.class_names), expected.matrix.tolist())


def _cells(text: str) -> dict[str, str]:
    """The page's two-column rows, ``{header: cell}`` (summary and configuration)."""
    import html

    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", text)}


def test_the_page_says_how_to_read_it(tiny_run: Path, tmp_path: Path) -> None:
    """The t-SNE caption explains the figure instead of promising mixed domains; the CUDA-graph option says which step
    ran; a run with few evaluations says why its accuracy curves are dots (issue 19 item 13)."""
    from symnets_deploy.report import write_run_report

    text = write_run_report(tiny_run, tmp_path / "out").html.read_text(encoding="utf-8")
    assert "mix the domains" not in text
    assert "Read this figure the same way, by class" in text and "Figure 3" in text and "near the source points of the same class" in text
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["step"] == "eager"
    assert _cells(text)["cuda_graph"] == "True (applies on CUDA in one process only; the step that ran: eager)"
    assert summary["eval_every"] == 0  # 4 iterations afford no evaluation before the end
    assert ("Accuracy: 1 evaluation (iteration 4): without --eval-every, a run evaluates only as often as a small share of its "
            "compute allows: this one at the end only; give --eval-every N for more points.") in text


def test_few_evaluations_are_explained_and_enough_are_not() -> None:
    from symnets_deploy.report import few_evaluations

    evals = [{"iteration": i, "acc_ct": 0.5} for i in (100, 200)] + [{"iteration": 150, "lr_head": 0.01}]
    assert few_evaluations(evals, {"eval_every": 100, "iterations": 200}, None).startswith("2 evaluations (iteration 100, 200): --eval-every 100 over 200 iterations")
    assert few_evaluations(evals + [{"iteration": 300, "label_free": {}}], {}, None) is None
    assert few_evaluations([], {}, {"eval_every": 0}).startswith("0 evaluations: without --eval-every")


def test_the_page_compares_the_run_with_other_runs(tiny_run: Path, tmp_path: Path) -> None:
    """The demo's headline, source-only against SymNets, on the page (issue 19 item 13)."""
    from symnets_deploy.report import write_run_report

    baseline = tmp_path / "run_source_only"
    baseline.mkdir()
    summary = json.loads((tiny_run / "summary.json").read_text())
    (baseline / "summary.json").write_text(json.dumps({**summary, "method": "source-only", "target_acc_ct": 0.125,
                                                        "label_free": {**summary["label_free"], "v_measure": 0.5}}))
    text = write_run_report(tiny_run, tmp_path / "out", compare=[baseline, tmp_path / "gone"]).html.read_text(encoding="utf-8")
    table = text.split("<h2>Compared with other runs</h2>")[1].split("</table>")[0]
    rows = {row[0]: row[1:] for row in (re.findall(r"<t[hd]>([^<]*)</t[hd]>", tr) for tr in table.split("</tr>")) if row}
    assert rows["run"] == [f"{tiny_run.name} (this run)", "run_source_only", "gone"]
    assert rows["method"] == ["symnets", "source-only", "n/a (no summary.json)"]
    assert rows[f"target accuracy (Ct, all {summary['target_images']} target images; labels used to evaluate only)"][:2] == [
        f"{100 * summary['target_acc_ct']:.2f} %", "12.50 %"]
    assert rows["V-measure (label-free)"][1] == "0.500"
    assert "Compared with" not in write_run_report(tiny_run, tmp_path / "alone").html.read_text(encoding="utf-8")


def test_the_accuracy_panel_says_why_it_holds_few_points(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The note is drawn under the accuracy panel itself, where a reader sees the dots (issue 19 item 13)."""
    from symnets_deploy import report_figures
    from symnets_deploy.run_reading import read_metrics

    drawn, save = [], report_figures._save
    monkeypatch.setattr(report_figures, "_save", lambda fig, path: (drawn.extend(ax.get_xlabel() for ax in fig.axes), save(fig, path))[1])
    records = read_metrics(tiny_run / "metrics.jsonl").records
    report_figures.plot_curves(records, tmp_path / "curves.png", accuracy_note="1 evaluation (iteration 4): at the end only")
    assert "iteration\n1 evaluation (iteration 4): at the end only" in drawn
    drawn.clear()
    report_figures.plot_curves(records, tmp_path / "plain.png")
    assert "iteration" in drawn and not any("evaluation" in label for label in drawn)


def test_report_compare_puts_the_other_run_on_the_page_and_refuses_a_folder_that_is_no_run(tiny_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from symnets_deploy.cli.main import app
    from tests.cli_checks import error_line

    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "summary.json").write_text((tiny_run / "summary.json").read_text())
    done = CliRunner().invoke(app, ["report", str(tiny_run), "--out", str(tmp_path / "out"), "--compare", str(baseline)])
    assert done.exit_code == 0, done.output
    assert "<h2>Compared with other runs</h2>" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "no summary.json" in error_line(CliRunner().invoke(app, ["report", str(tiny_run), "--compare", str(tmp_path / "nothing")]), 2)
