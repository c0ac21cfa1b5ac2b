"""Model cards are read from files anyone can edit: a bad one is one line, exit 5 (issue 18, item 14).

Cards are changed with ``onnx_metadata.set_metadata_file``, which rewrites only the metadata, so
the graph stays the one ``symnets export`` wrote.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from symnets_deploy.card import ONNX_CARD_KEY  # noqa: E402
from symnets_deploy.cli.main import app  # noqa: E402
from symnets_deploy.onnx_metadata import read_metadata, set_metadata_file  # noqa: E402
from tests.cli_checks import error_line  # noqa: E402
from tests.runtime.conftest import tiny_onnx  # noqa: E402,F401  (fixture)

runner = CliRunner()


def with_card(src: Path, dst: Path, **changes) -> Path:
    """A copy of ``src`` whose card has ``changes`` applied (the graph is untouched)."""
    card = json.loads(read_metadata(src.read_bytes())[ONNX_CARD_KEY])
    return set_metadata_file(src, dst, {ONNX_CARD_KEY: json.dumps({**card, **changes})})


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_unknown_interpolation_is_one_line_exit_5(command: str, tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:  # noqa: F811
    # Used to be a ValueError traceback from PreprocessConfig, after the model had loaded.
    model = with_card(tiny_onnx, tmp_path / "lanczos.onnx", interpolation="lanczos9")
    args = ["predict", "-e", str(model)] if command == "predict" else ["evaluate", str(model)]
    line = error_line(runner.invoke(app, [*args, str(shapes_root / "sketches")]), 5)
    assert str(model) in line and "unknown interpolation 'lanczos9'" in line and "bilinear" in line


def test_csv_predictions_neutralise_formula_class_names(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:  # noqa: F811
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1", "@SUM(A1)"]
    model = with_card(tiny_onnx, tmp_path / "hostile.onnx", class_names=hostile)
    result = runner.invoke(app, ["predict", "-e", str(model), str(shapes_root / "sketches"), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and all(row["label"] == "'" + hostile[int(row["index"])] for row in rows)
    assert all(sorted(json.loads(row["topk_labels"])) == sorted(hostile) for row in rows)
