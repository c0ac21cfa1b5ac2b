"""Progress reaches a log file: plain lines at a steady interval when stderr is not a terminal (issue 19, item 11)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from symnets_deploy.cli.main import app
from symnets_deploy.cli.progress import TrainProgress


def test_without_a_terminal_progress_is_plain_lines_at_the_interval(capsys):
    progress = TrainProgress(interval=0.0)  # every record: the interval itself is the only difference
    progress.start(total=4, completed=0)
    for iteration in range(1, 5):
        progress.advance(iteration, {"cls_total": 1.5, "images_per_s": 100.0 * iteration})
    progress.stop()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert "img/s=400" in lines[-1] and "(100%)" in lines[-1] and "cls=1.500" in lines[-1]


def test_a_long_interval_prints_only_the_last_line(capsys):
    progress = TrainProgress(interval=3600.0)
    progress.start(total=10, completed=4)  # a resumed run
    for iteration in range(5, 11):
        progress.advance(iteration, {"images_per_s": 5.0})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train ")]
    assert len(lines) == 1 and lines[0].startswith("train 10/10 (100%)")


def test_a_training_written_to_a_file_shows_progress_and_says_what_each_rate_is(shapes_root, tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny", "--image-size", "32",
        "--iterations", "3", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-report", "--no-cache",
    ])
    assert result.exit_code == 0, result.output
    assert re.search(r"^train 3/3 \(100%\) \d+:\d\d:\d\d elapsed", result.stderr, re.M), result.stderr
    assert "img/s mean over the training" in result.stdout
