"""Prediction files: CSV or JSON Lines, written atomically (temp file + rename) unless to stdout.

Columns / keys, in order: path, label, index, confidence, topk_labels, topk_probs, status,
error (``predictor.FIELDS``). In CSV, the top-k lists are JSON arrays inside one cell and an
error row leaves label, index and confidence empty; in JSONL they are lists and nulls. Both
parse back with the standard library (``csv`` + ``json``, or ``json`` per line).

CSV is opened in spreadsheets, and its text cells come from untrusted places (class names from a
model card, paths from the file system). A text cell starting with ``= + - @``, tab or carriage
return is a formula to Excel and LibreOffice (OWASP "CSV injection"), so it gets a leading ``'``
in CSV: ``=HYPERLINK(...)`` is written ``'=HYPERLINK(...)``. Numbers (index, confidence) are
written by us and stay numbers; the top-k cells start with ``[`` and hold the names unchanged.
JSON Lines is for programs and holds every value exactly.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, TextIO

from symnets_deploy.atomic import atomic_write, exclusive
from symnets_deploy.enums import OutputFormat, parse_choice
from symnets_deploy.errors import UsageError
from symnets_deploy.predictor import FIELDS, Prediction

#: ``--output`` value meaning standard output.
STDOUT = "-"

#: Output suffix -> format, when ``--format`` is not given.
SUFFIX_FORMATS = {".csv": OutputFormat.csv, ".jsonl": OutputFormat.jsonl, ".ndjson": OutputFormat.jsonl}

#: Probabilities are written with this many decimals (float32 carries about 7 digits).
DECIMALS = 6

#: First characters that make a spreadsheet evaluate a CSV cell (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class WriteStats:
    """What a write produced.

    Attributes:
        rows: predictions written (one per input).
        failures: rows with ``status == "error"``.
    """

    rows: int
    failures: int


def resolve_format(output: str | Path, fmt: Optional[OutputFormat | str] = None) -> OutputFormat:
    """The output format: ``fmt`` if given, else from the suffix of ``output`` (CSV for stdout).

    Raises:
        UsageError: unknown format, or a file suffix that names none (pass ``--format``).
    """
    if fmt is not None:
        return parse_choice(OutputFormat, fmt, "output format")
    if str(output) == STDOUT:
        return OutputFormat.csv
    found = SUFFIX_FORMATS.get(Path(output).suffix.lower())
    if found is None:
        raise UsageError(f"{output}: cannot tell the output format from the suffix (use .csv or .jsonl, or pass --format)")
    return found


def prediction_record(prediction: Prediction) -> dict[str, Any]:
    """One prediction as a JSONL object.

    Args:
        prediction: any result, ok or error.

    Returns:
        ``{field: value}`` in ``FIELDS`` order: lists for the top-k, None for the missing
        values of an error row, probabilities rounded to ``DECIMALS``.
    """
    record = prediction.to_dict()
    if record["confidence"] is not None:
        record["confidence"] = round(record["confidence"], DECIMALS)
    record["topk_probs"] = [round(p, DECIMALS) for p in record["topk_probs"]]
    return record


def csv_row(prediction: Prediction) -> list[str]:
    """One prediction as CSV cells.

    Args:
        prediction: any result, ok or error.

    Returns:
        Strings in ``FIELDS`` order: the top-k lists as JSON arrays, None as an empty cell, and
        text that a spreadsheet would run as a formula prefixed with ``'`` (module docstring).
    """
    record = prediction_record(prediction)
    cells = []
    for key in FIELDS:
        value = record[key]
        if isinstance(value, list):
            cells.append(json.dumps(value, ensure_ascii=False))
        elif isinstance(value, str):
            cells.append(neutralise_formula(value))
        else:
            cells.append("" if value is None else str(value))
    return cells


def neutralise_formula(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would evaluate it (``FORMULA_STARTS``)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_predictions(
    predictions: Iterable[Prediction], output: str | Path, fmt: Optional[OutputFormat | str] = None, *, stdout: Optional[TextIO] = None
) -> WriteStats:
    """Stream predictions to a CSV or JSONL file, or to standard output.

    A file appears only when complete: rows go to a temp file beside it, renamed at the
    end, so an interrupted run leaves no half-written output. Standard output is written
    row by row as predictions arrive.

    Args:
        predictions: results in the order to write (consumed once, lazily).
        output: a file path, or ``"-"`` for standard output.
        fmt: ``csv`` or ``jsonl``; None decides from ``output`` (``resolve_format``).
        stdout: the stream used for ``"-"`` (default ``sys.stdout``).

    Returns:
        ``WriteStats(rows, failures)``.

    Raises:
        UsageError: unknown format, or ``output`` is an existing folder.
    """
    fmt = resolve_format(output, fmt)
    if str(output) == STDOUT:
        if stdout is None and hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="surrogateescape")  # file names that are not UTF-8 print as their bytes, like ls
        return _write(predictions, stdout if stdout is not None else sys.stdout, fmt)
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; --output needs a file name such as preds.csv")
    stats: list[WriteStats] = []

    def write(tmp: Path) -> None:
        # A file name that is not UTF-8 is written as its original bytes (CSV); JSONL escapes it instead.
        with tmp.open("w", encoding="utf-8", errors="surrogateescape", newline="") as stream:
            stats.append(_write(predictions, stream, fmt))

    with exclusive(path, "writing predictions to"):  # a second predict to the same file is refused, not raced
        atomic_write(path, write)
    return stats[0]


def _json_line(record: dict) -> str:
    """One JSON object; a record holding a non-UTF-8 file name (a lone surrogate) is written
    ASCII-escaped, so every line stays valid UTF-8 JSON and ``os.fsencode`` restores the name."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True)
    return line


def _write(predictions: Iterable[Prediction], stream: TextIO, fmt: OutputFormat) -> WriteStats:
    rows = failures = 0
    if fmt is OutputFormat.csv:
        # The writer quotes a cell holding CR only when CR is in its line terminator (Python 3.11):
        # a file name with CR would split its row. Rows are built with CRLF and written with LF.
        writer = csv.writer(_LineFeedRows(stream), lineterminator="\r\n")
        writer.writerow(FIELDS)
    for prediction in predictions:
        if fmt is OutputFormat.csv:
            writer.writerow(csv_row(prediction))
        else:
            stream.write(_json_line(prediction_record(prediction)) + "\n")
        rows += 1
        failures += not prediction.ok
    stream.flush()
    return WriteStats(rows, failures)


class _LineFeedRows:
    """A stream for ``csv.writer``, which writes each row in one call: CRLF row ends become LF."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, row: str) -> int:
        return self.stream.write(row[:-2] + "\n" if row.endswith("\r\n") else row)
