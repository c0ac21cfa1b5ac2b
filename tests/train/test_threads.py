"""One intra-op thread while other jobs crowd the CPU, all of them when it is quiet (issue 19, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.train.threads import CONTENDED, ThreadFit, cpu_pressure  # noqa: E402


def _pressure(tmp_path: Path, avg10: float) -> Path:
    path = tmp_path / "cpu"
    path.write_text(f"some avg10={avg10:.2f} avg60=1.00 avg300=1.00 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    return path


def test_the_pressure_file_is_read_and_its_absence_changes_nothing(tmp_path):
    assert cpu_pressure(_pressure(tmp_path, 67.72)) == pytest.approx(67.72)
    assert cpu_pressure(tmp_path / "missing") is None
    (tmp_path / "garbage").write_text("not the format\n")
    assert cpu_pressure(tmp_path / "garbage") is None


def test_threads_follow_the_pressure_and_come_back(tmp_path):
    before = torch.get_num_threads()
    path = tmp_path / "cpu"
    fit = ThreadFit(wanted=2, path=path)
    try:
        path.write_text(_pressure(tmp_path, CONTENDED + 40).read_text())
        assert fit.update() == 1 and torch.get_num_threads() == 1
        path.write_text(_pressure(tmp_path, CONTENDED - 20).read_text())
        assert fit.update() == 2 and torch.get_num_threads() == 2
        path.unlink()
        assert fit.update() == 2  # no pressure information: as many as wanted
        path.write_text(_pressure(tmp_path, 99.0).read_text())
        fit.update()
        fit.restore()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
