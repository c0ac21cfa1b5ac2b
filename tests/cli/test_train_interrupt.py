"""Ctrl-C and SIGTERM during training save a checkpoint and say how to resume (issue 9, case 3)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")


def _train(shapes_root: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = ["train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny",
            "--iterations", "1000", "--batch-size", "4", "--image-size", "32", "--device", "cpu", "--log-every", "5",
            "--out", str(out), "--no-cache", *extra]
    return subprocess.Popen([sys.executable, "-m", "symnets_deploy.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(out: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_and_resume_finishes_the_run(shapes_root, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = _train(shapes_root, out)  # default options: no periodic checkpoints
    _wait_for_training(out, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"symnets train --resume {out}" in errors[0] and "Traceback" not in stderr
    import torch

    stopped = int(torch.load(out / "last.pt", map_location="cpu", weights_only=True)["iteration"])
    assert 0 < stopped < 1000 and f"at iteration {stopped} of 1000" in errors[0]
    resumed = subprocess.run([sys.executable, "-m", "symnets_deploy.cli", "train", "--resume", str(out)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "summary.json").read_text())["iterations"] == 1000
    assert int(torch.load(out / "last.pt", map_location="cpu", weights_only=True)["iteration"]) == 1000
