"""Paper 4.1 schedules (after RevGrad): annealed learning rate and the progressive lambda.

``p`` is training progress in [0, 1]; we step it every iteration (the released code steps
it per epoch; per-iteration is smoother).
"""

from __future__ import annotations

import math


def annealed_lr(lr0: float, p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """lr_p = lr0 / (1 + alpha * p) ** beta."""
    return lr0 / (1.0 + alpha * p) ** beta


def confusion_weight(p: float, gamma: float = 10.0) -> float:
    """lambda_p = 2 / (1 + exp(-gamma * p)) - 1, rising from 0 to about 1."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def progress(iteration: int, total: int) -> float:
    """p for a 0-based iteration out of ``total``: 0 at the first step, 1 after the last."""
    return min(1.0, iteration / max(1, total))
