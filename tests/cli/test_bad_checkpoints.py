"""Damaged or foreign checkpoints: one line, exit 5, in every command that reads one (issue 9, cases 6 and 8)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from symnets_deploy.cli.main import app  # noqa: E402
from tests.cli_checks import error_line  # noqa: E402

runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (os.system, ("echo this-should-never-run",))


def _run_with(tiny_run: Path, folder: Path, write) -> Path:
    """A copy of a finished run folder whose last.pt is replaced by ``write(path)``."""
    shutil.copytree(tiny_run, folder)
    write(folder / "last.pt")
    return folder


@pytest.fixture(params=["empty", "pickle"])
def bad_run(request, tiny_run, tmp_path):
    writers = {
        "empty": lambda path: path.write_bytes(b""),
        "pickle": lambda path: torch.save({"format": "symnets-checkpoint/1", "payload": _RunsCode()}, path),
    }
    return request.param, _run_with(tiny_run, tmp_path / "run", writers[request.param])


def _commands(run: Path, tmp_path: Path) -> dict[str, list[str]]:
    return {
        "export": ["export", "--checkpoint", str(run / "last.pt"), "--output", str(tmp_path / "out.onnx")],
        "train --resume": ["train", "--resume", str(run)],
    }


def test_every_command_refuses_a_bad_checkpoint_with_one_line(bad_run, tmp_path, capfd):
    kind, run = bad_run
    for name, args in _commands(run, tmp_path).items():
        line = error_line(runner.invoke(app, args, env=ENV), 5)
        assert str(run / "last.pt") in line, (name, line)
        if kind == "empty":
            assert "empty file (0 bytes)" in line
        else:
            assert "could run code" in line and "weights_only" not in line
    assert "this-should-never-run" not in capfd.readouterr().out
    assert not (tmp_path / "out.onnx").exists()


def test_verify_refuses_a_bad_checkpoint(bad_run, tiny_run, tmp_path):
    from symnets_deploy.export.api import ExportConfig, run_export

    kind, run = bad_run
    artifact = run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), output=str(tmp_path / "model.onnx"))).artifact
    line = error_line(runner.invoke(app, ["verify", str(artifact), "--checkpoint", str(run / "last.pt")], env=ENV), 5)
    assert ("empty file" in line) if kind == "empty" else ("could run code" in line)
