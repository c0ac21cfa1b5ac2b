"""Paper 4.1 schedules: lr_p = lr0 / (1 + 10 p)^0.75 and lambda_p = 2 / (1 + exp(-10 p)) - 1."""

from __future__ import annotations

import json
import math

import pytest

from symnets_deploy.train.schedules import annealed_lr, confusion_weight, progress


@pytest.mark.parametrize("lr0", [0.01, 0.001])
def test_annealed_lr_at_0_half_and_1(lr0):
    assert annealed_lr(lr0, 0.0) == pytest.approx(lr0)
    # (1 + 10 * 0.5) = 6 and (1 + 10) = 11, to the power 0.75, written as exp(0.75 ln x).
    assert annealed_lr(lr0, 0.5) == pytest.approx(lr0 * math.exp(-0.75 * math.log(6.0)), rel=1e-12)
    assert annealed_lr(lr0, 1.0) == pytest.approx(lr0 * math.exp(-0.75 * math.log(11.0)), rel=1e-12)
    # Numerically: 0.01 / 6^0.75 = 0.0026084..., 0.01 / 11^0.75 = 0.0016556...
    if lr0 == 0.01:
        assert annealed_lr(lr0, 0.5) == pytest.approx(0.0026084743, rel=1e-7)
        assert annealed_lr(lr0, 1.0) == pytest.approx(0.0016556003, rel=1e-7)


def test_annealed_lr_custom_alpha_beta_and_monotone():
    assert annealed_lr(1.0, 1.0, alpha=3.0, beta=0.5) == pytest.approx(0.5)  # 1 / sqrt(4)
    values = [annealed_lr(0.01, i / 20) for i in range(21)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # The head/backbone ratio (paper: 10x) is kept at every p.
    for p in (0.0, 0.37, 1.0):
        assert annealed_lr(0.01, p) / annealed_lr(0.001, p) == pytest.approx(10.0)


def test_confusion_weight_at_0_half_and_1():
    # 2 / (1 + e^-x) - 1 == tanh(x / 2): an independent way to get the same numbers.
    assert confusion_weight(0.0) == pytest.approx(0.0, abs=1e-15)
    assert confusion_weight(0.5) == pytest.approx(math.tanh(2.5), rel=1e-12)
    assert confusion_weight(1.0) == pytest.approx(math.tanh(5.0), rel=1e-12)
    assert confusion_weight(0.5) == pytest.approx(0.98661429815, rel=1e-9)
    assert confusion_weight(1.0) == pytest.approx(0.99990920426, rel=1e-9)
    assert confusion_weight(0.25, gamma=2.0) == pytest.approx(math.tanh(0.25), rel=1e-12)


def test_confusion_weight_rises_within_0_1():
    values = [confusion_weight(i / 50) for i in range(51)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert all(a < b for a, b in zip(values, values[1:]))


def test_progress():
    assert progress(0, 100) == 0.0
    assert progress(50, 100) == 0.5
    assert progress(99, 100) == pytest.approx(0.99)
    assert progress(100, 100) == 1.0
    assert progress(250, 100) == 1.0  # clamped
    assert progress(0, 0) == 0.0  # no division by zero
    assert progress(3, 0) == 1.0


def test_trainer_logs_the_schedule(tiny_run):
    """The tiny run (4 iterations, log_every=1) logs lr and lambda of p = (iteration - 1) / 4."""
    config = json.loads((tiny_run / "config.json").read_text())
    total, lr = config["iterations"], config["lr"]
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "lr_head" in r]
    assert [r["iteration"] for r in steps] == list(range(1, total + 1))
    for r in steps:
        p = (r["iteration"] - 1) / total
        assert r["lambda"] == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1, rel=1e-9, abs=1e-12)
        assert r["lr_head"] == pytest.approx(lr / (1 + 10 * p) ** 0.75, rel=1e-9)
        assert r["lr_backbone"] == pytest.approx(lr * config["backbone_lr_mult"] / (1 + 10 * p) ** 0.75, rel=1e-9)
