"""Reading a run folder that may be damaged (a run killed mid-write, a copy cut short, a file edited by hand).

Each reader returns what it could read plus the problems it found, and never raises for damage, so
``symnets report`` draws everything that does not need a damaged file, and ``symnets select`` and
``--resume`` skip a torn ``metrics.jsonl`` line instead of crashing on it. Torch-free: train/ reads
``metrics.jsonl`` through ``read_metrics`` too.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from symnets_deploy.evaluation import Evaluation


class Unreadable(Exception):
    """A run file that is there but cannot be used; the message says why."""


class Problems(dict):
    """The damaged files of a run folder, ``{path: (why, consequence)}``: each is one line of the page
    and of stderr, and the report draws everything that does not need them."""

    def read(self, reader, path: Path, consequence: str) -> Any:
        """``reader(path)``; None when the file is absent, or damaged (then noted with ``consequence``)."""
        if not path.is_file():
            return None
        try:
            return reader(path)
        except Unreadable as exc:
            self[path] = (str(exc), consequence)
            return None

    def why(self, path: Path) -> Optional[str]:
        return f"{path}: {self[path][0]}" if path in self else None

    def lines(self) -> tuple[str, ...]:
        return tuple(f"{path}: {why}; {consequence}" for path, (why, consequence) in self.items())


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (``config.json``, ``summary.json``, ``*.verify.json``...).

    Raises:
        Unreadable: not readable, not JSON, or JSON but not an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 or not JSON
        raise Unreadable(f"not readable as JSON ({_short(exc)})") from None
    if not isinstance(data, dict):
        raise Unreadable(f"a JSON {type(data).__name__}, not an object")
    return data


def _is_record(record: Any) -> bool:
    """A metrics record the readers can use: an object with an integer iteration (and, when present,
    ``label_free`` an object and ``collapse`` a list)."""
    return (isinstance(record, dict) and type(record.get("iteration")) is int and isinstance(record.get("label_free", {}), dict)
            and isinstance(record.get("collapse", []), list))


class MetricsLines(NamedTuple):
    """What ``read_metrics`` found in ``metrics.jsonl``.

    Attributes:
        records: the usable records, in file order (``_is_record``).
        bad: the 1-based numbers of the other non-blank lines (not JSON, or JSON of the wrong shape).
        lines: how many lines the file has.
        torn: the last line is among ``bad`` and has no newline: cut short, as by a run killed while writing it.
    """

    records: list[dict[str, Any]]
    bad: list[int]
    lines: int
    torn: bool


def read_metrics(path: Path) -> MetricsLines:
    """``metrics.jsonl``, one JSON object per line, with the lines that are no record set aside.

    Raises:
        OSError: the file cannot be read at all (damage inside it never raises).
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    records, bad = [], []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if _is_record(record):
            records.append(record)
        else:
            bad.append(number)
    return MetricsLines(records, bad, len(lines), bool(bad) and bad[-1] == len(lines) and not text.endswith("\n"))


def metrics_records(path: Path, problems: Problems) -> list[dict[str, Any]]:
    """The usable records of ``metrics.jsonl``; the others (a last line torn by a kill, garbage) are skipped and noted."""
    try:
        metrics = read_metrics(path)
    except OSError as exc:
        problems[path] = (f"cannot be read ({_short(exc)})", "no curve or score is drawn")
        return []
    bad = metrics.bad
    if bad:
        listed = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        why = f"line{'s' if len(bad) > 1 else ''} {listed} of {metrics.lines} {'are not metrics records' if len(bad) > 1 else 'is not a metrics record'}"
        problems[path] = (why + (" (the last one cut short, as by a run stopped while writing it)" if metrics.torn else ""), "skipped, the figures use the other lines")
    return metrics.records


#: ``summary.json`` fields the report uses, each with the test its value must pass (other fields are only shown).
_SUMMARY_FIELDS = {
    "class_names": lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "target_labels": lambda v: isinstance(v, str),
    "warnings": lambda v: isinstance(v, list),
    "label_free": lambda v: isinstance(v, dict) and isinstance(v.get("class_shares") or [], list),
}


def checked_summary(summary: Optional[dict[str, Any]], path: Path, problems: Problems) -> Optional[dict[str, Any]]:
    """``summary`` without the fields of the wrong type (noted)."""
    wrong = [key for key, valid in _SUMMARY_FIELDS.items() if summary is not None and key in summary and not valid(summary[key])]
    if wrong:
        problems[path] = (f"{'fields' if len(wrong) > 1 else 'field'} of the wrong type: {', '.join(wrong)}", "left out of the page")
        summary = {k: v for k, v in summary.items() if k not in wrong}
    return summary


def read_evaluation(path: Path) -> Evaluation:
    """``target_evaluation.json``: class names and a K x K confusion matrix of counts.

    Raises:
        Unreadable: not a JSON object, or either field missing or of the wrong shape.
    """
    data = read_json_object(path)
    names, confusion = data.get("class_names"), data.get("confusion")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise Unreadable("class_names is not a list of class names")
    k = len(names)
    if not (isinstance(confusion, list) and len(confusion) == k and all(
            isinstance(row, list) and len(row) == k and all(type(c) is int and c >= 0 for c in row) for row in confusion)):
        raise Unreadable(f"confusion is not a {k} x {k} matrix of counts")
    return Evaluation(tuple(names), tuple(tuple(row) for row in confusion))


_FEATURE_ARRAYS = ("source", "source_labels", "target", "target_labels")


def read_features(path: Path) -> dict[str, np.ndarray]:
    """``features_*.npz``, checked for the t-SNE: ``source`` [Ns,D] and ``target`` [Nt,D] as float32, all
    finite (scikit-learn refuses NaN), ``*_labels`` [N] int; at least 3 images.

    Raises:
        Unreadable: not an .npz archive, an array missing, or arrays of the wrong shape or values.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
    if not head:
        raise Unreadable("empty (0 bytes)")
    if not head.startswith(b"PK"):  # not a zip: np.load would try a pickle or a plain .npy
        raise Unreadable("not an .npz archive")
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in _FEATURE_ARRAYS if key in data.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:  # EOFError: click would call it "aborted"
        raise Unreadable(f"not a readable .npz ({_short(exc)})") from None
    absent = [key for key in _FEATURE_ARRAYS if key not in arrays]
    if absent:
        raise Unreadable(f"no {', '.join(absent)} array")
    source, target = arrays["source"], arrays["target"]
    if not (source.ndim == target.ndim == 2 and source.shape[1] == target.shape[1] >= 2 and {source.dtype.kind, target.dtype.kind} <= set("fiu")):
        raise Unreadable(f"features of shapes {source.shape} and {target.shape} ({source.dtype}, {target.dtype}), not numbers [N,D] of one D >= 2")
    for key, rows in (("source_labels", len(source)), ("target_labels", len(target))):
        if arrays[key].shape != (rows,) or arrays[key].dtype.kind not in "iu" or (arrays[key] < -1).any():
            raise Unreadable(f"{key} of shape {arrays[key].shape} ({arrays[key].dtype}), not {rows} class indices")
    with np.errstate(over="ignore"):
        arrays["source"], arrays["target"] = source.astype(np.float32), target.astype(np.float32)
    rows = np.concatenate([arrays["source"], arrays["target"]])
    if len(rows) < 3:
        raise Unreadable(f"{len(rows)} images, too few for a t-SNE")
    if not np.isfinite(rows).all():
        raise Unreadable(f"{int((~np.isfinite(rows)).any(axis=1).sum())} of {len(rows)} feature rows are NaN or infinite (did the training diverge?)")
    return arrays


def artifact_rows(run: Path, problems: Problems) -> list[dict[str, Any]]:
    """One row per ``*.verify.json`` in the run folder: the artifact, its precision, head and check (accuracy on its check images)."""
    rows = []
    for report in sorted(run.glob("*.verify.json")):
        data = problems.read(read_json_object, report, "its artifact's check is shown as unreadable") or {}
        accuracy = data.get("accuracy") if isinstance(data.get("accuracy"), dict) else {}
        candidate = next((v for k, v in accuracy.items() if k != "torch" and isinstance(v, dict)), {})
        artifact = str(data.get("artifact", report.name[: -len(".verify.json")]))
        rows.append({
            "artifact": artifact, "present": (run / artifact).is_file(), "precision": str(data.get("precision", "?")),
            "format": str(data.get("format", "?")), "head": str(data.get("head", "?")), "passed": data.get("passed") is True, "images": data.get("num_images"),
            "accuracy": candidate.get("accuracy"), "report": report.name, "readable": report not in problems,
        })
    return rows
