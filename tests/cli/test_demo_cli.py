"""`symnets demo`: the whole pipeline on the built-in dataset, with the baseline it beats (issue 11)."""

from __future__ import annotations

import csv
import json
import re

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

pytest.importorskip("matplotlib")


def test_demo_trains_both_exports_predicts_reports_and_beats_the_baseline(tmp_path):
    out = tmp_path / "demo"
    # The default length: at 20 or 40 iterations the source-only baseline is still ahead (measured 76.9 vs 73.1 and 95.0 vs 93.8 %).
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (row,) = re.findall(r"\| target accuracy \(Ct, (\d+) images; labels used to evaluate only\) \| ([\d.]+) % \| ([\d.]+) % \|", result.stdout)
    images, source_only, symnets = int(row[0]), float(row[1]), float(row[2])
    assert symnets > source_only, result.stdout  # adaptation helps on the generated street domain
    for label, key in (("held-out source accuracy (Ct)", "source_val_acc_ct"), ("cluster V-measure", "v_measure")):
        (cells,) = re.findall(rf"\| {re.escape(label)} \(no target label\) \| ([\d.]+)(?: %)? \| ([\d.]+)(?: %)? \|", result.stdout)
        saved = json.loads((out / "run" / "summary.json").read_text())["label_free"][key]
        assert float(cells[1]) == pytest.approx(100 * saved if key == "source_val_acc_ct" else saved, abs=0.051)
    assert json.loads((out / "run_source_only" / "summary.json").read_text())["method"] == "source-only"
    assert round(100 * json.loads((out / "run" / "summary.json").read_text())["target_acc_ct"], 1) == symnets
    assert "ONNX check: passed" in result.stdout and "images/s" in result.stdout and "total" in result.stdout
    for name in ("run/last.pt", "run/model.onnx", "run/model.onnx.verify.json", "predictions.csv", "run/report/report.html", "run/report/tsne.png"):
        assert (out / name).is_file(), name
    assert str(out / "run" / "report" / "report.html") in result.stdout
    # the page shows what the demo printed: the checked model of the run, and the source-only run beside it (issue 19 item 13)
    page = (out / "run" / "report" / "report.html").read_text(encoding="utf-8")
    assert "No exported artifacts" not in page and "<td>model.onnx</td><td>onnx</td><td>fp32</td><td>ct</td><td>passed</td>" in page
    table = page.split("<h2>Compared with other runs</h2>")[1].split("</table>")[0]
    assert "<th>run_source_only</th>" in table and "<td>source-only</td>" in table
    for run in ("run", "run_source_only"):
        assert f"<td>{100 * json.loads((out / run / 'summary.json').read_text())['target_acc_ct']:.2f} %</td>" in table, run
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == images == len(sorted((out / "data" / "street").rglob("*.*")))
    assert all(r["status"] == "ok" and r["label"] in {"circle", "cross", "square", "triangle"} for r in rows)
