"""Atomic writes leave nothing behind, clean up after killed writers, and refuse a second live writer (issue 9, cases 9 and 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from symnets_deploy.atomic import atomic_write, exclusive, remove_stale_temps
from symnets_deploy.errors import UsageError


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_the_next_write_removes_temps_of_killed_writers_only(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    dead = tmp_path / f".last.pt.{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".last.pt.{os.getppid()}.def456.tmp"  # a process that is running
    other = tmp_path / f".other.pt.{_dead_pid()}.abc123.tmp"
    for path in (dead, live, other):
        path.write_bytes(b"half a checkpoint")
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
    assert not dead.exists() and live.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "other.pt") == [other]


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.csv", boom)
    assert list(tmp_path.iterdir()) == []


def test_a_second_live_writer_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path: Path) -> None:
    target = tmp_path / "preds.csv"
    lock = tmp_path / "preds.csv.lock"
    lock.write_text(str(os.getppid()))  # held by a running process
    with pytest.raises(UsageError, match=f"pid {os.getppid()}"):
        with exclusive(target):
            pass
    lock.write_text(str(_dead_pid()))
    with exclusive(target):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_predict_to_an_output_another_predict_is_writing_exits_2(tmp_path: Path, tiny_onnx: Path, shapes_root: Path) -> None:
    from typer.testing import CliRunner

    from symnets_deploy.cli.main import app
    from tests.cli_checks import error_line

    out = tmp_path / "preds.csv"
    (tmp_path / "preds.csv.lock").write_text(str(os.getppid()))
    result = CliRunner().invoke(app, ["predict", str(shapes_root), "--engine", str(tiny_onnx), "--output", str(out)])
    assert "another process" in error_line(result, 2) and not out.exists()


def test_an_output_folder_that_cannot_be_written_is_a_storage_error() -> None:
    from symnets_deploy.errors import StorageError

    with pytest.raises(StorageError, match="^/proc/preds.csv: No such file or directory$"):
        with exclusive(Path("/proc/preds.csv")):
            pass


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_a_lock_held_by_a_zombie_is_taken_over(tmp_path) -> None:
    """A process killed after its parent died stays a zombie where init does not reap; it holds nothing."""
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child.pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()[0] != b"Z":  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    out = tmp_path / "preds.csv"
    (tmp_path / "preds.csv.lock").write_text(str(child.pid))
    with exclusive(out):
        assert (tmp_path / "preds.csv.lock").read_text() == str(os.getpid())
    child.wait()
