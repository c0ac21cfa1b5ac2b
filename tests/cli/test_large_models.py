"""A huge or zero-filled ``.onnx`` is refused at once, in one line, by every command that loads one (issue 18, item 6).

Before, the external-data check read the whole file and walked its zeros two bytes per step:
20 MB took 6 s, and a 3 GB sparse file over 5 minutes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from symnets_deploy.cli.main import app

from tests.cli_checks import error_line

runner = CliRunner()

REFUSALS = {
    3 * 2**30: r"3\.0 GiB, over the 2 GiB that a protobuf ModelProto can hold.*refused before reading it",  # sparse: no disk used
    4 * 2**20: r"not a well-formed ONNX file \(malformed protobuf at byte 0: field number 0\)",
}


def _zeros(folder: Path, size: int) -> Path:
    path = folder / "big.onnx"
    path.touch()
    os.truncate(path, size)
    return path


@pytest.mark.parametrize("size", list(REFUSALS), ids=["3GiB-sparse", "4MiB-zeros"])
@pytest.mark.parametrize("command", ["info", "predict", "evaluate", "verify"])
def test_a_huge_or_zero_file_is_one_line_and_exit_5(tmp_path: Path, shapes_root: Path, command: str, size: int) -> None:
    if command == "verify":
        pytest.importorskip("torch")
    model = _zeros(tmp_path, size)
    args = {
        "info": [str(model)],
        "predict": [str(shapes_root / "sketches"), "--engine", str(model), "--output", str(tmp_path / "out.csv")],
        "evaluate": [str(model), str(shapes_root / "sketches")],
        "verify": [str(model), "--checkpoint", str(tmp_path / "last.pt")],  # the artifact is opened before the checkpoint is read
    }[command]
    if command == "verify":
        (tmp_path / "last.pt").write_bytes(b"never read")
    line = error_line(runner.invoke(app, [command, *args]), 5)
    assert line.startswith(f"error: {model}: ") and re.search(REFUSALS[size], line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["big.onnx"] + (["last.pt"] if command == "verify" else []))  # no output written
