"""Interrupted training loses nothing (issue 9).

Ctrl-C and SIGTERM save a checkpoint and say how to resume (case 3); SIGKILL at a random
iteration after the first periodic checkpoint, then ``--resume``, ends bit-identical to a run
that was never interrupted (the in-process exact-resume tests are in tests/train/test_resume.py).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")


def _train(shapes_root: Path, out: Path, *extra: str, iterations: int = 1000, log_every: int = 5) -> subprocess.Popen:
    args = ["train", "--source", "photos", "--target", "sketches", "--data-root", str(shapes_root), "--backbone", "tiny",
            "--iterations", str(iterations), "--batch-size", "4", "--image-size", "32", "--device", "cpu",
            "--log-every", str(log_every), "--out", str(out), "--no-cache", "--no-report", *extra]
    return subprocess.Popen([sys.executable, "-m", "symnets_deploy.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _resume(out: Path) -> None:
    resumed = subprocess.run([sys.executable, "-m", "symnets_deploy.cli", "train", "--resume", str(out)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr


def _wait_for_training(out: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
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
    _resume(out)
    assert json.loads((out / "summary.json").read_text())["iterations"] == 1000
    assert int(torch.load(out / "last.pt", map_location="cpu", weights_only=True)["iteration"]) == 1000


def test_sigkill_at_a_random_iteration_then_resume_is_bit_identical(shapes_root, tmp_path):
    import torch

    iterations, options = 400, ("--checkpoint-every", "25", "--seed", "5")
    straight = tmp_path / "straight"
    done = _train(shapes_root, straight, *options, iterations=iterations, log_every=1)
    assert done.wait(timeout=300) == 0, done.communicate()

    killed = tmp_path / "killed"
    proc = _train(shapes_root, killed, *options, iterations=iterations, log_every=1)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists():  # the first periodic checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    delay = random.Random().uniform(0.0, 1.0)  # at ~140 it/s here: somewhere in iterations 25-200
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (delay {delay:.2f} s)"
    at_kill = int(torch.load(killed / "last.pt", map_location="cpu", weights_only=True)["iteration"])
    logged = [json.loads(line)["iteration"] for line in (killed / "metrics.jsonl").read_text().splitlines()[:-1]]
    assert 25 <= at_kill < iterations and at_kill % 25 == 0, at_kill

    _resume(killed)
    a, b = (torch.load(run / "last.pt", map_location="cpu", weights_only=True) for run in (straight, killed))
    print(f"\nSIGKILL after {delay:.2f} s: last logged iteration {max(logged, default=0)}, last checkpoint {at_kill}")
    where = f"killed after {delay:.2f} s at iteration {max(logged, default=0)}, resumed from {at_kill}"
    assert a["iteration"] == b["iteration"] == iterations, where
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), where
    assert all(torch.equal(x["momentum_buffer"], y["momentum_buffer"]) for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())), where
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["card"]["metrics"] == b["card"]["metrics"], where
    steps = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (straight, killed)]
    drop_time = [[{k: v for k, v in r.items() if k != "images_per_s"} for r in run] for run in steps]
    assert drop_time[0] == drop_time[1], where
