"""Accuracy estimators that need no label of the images they judge (numpy only).

Each reads the model's confidences (top-1 softmax probabilities) on new images: average
confidence (AC), AC after temperature scaling fitted on labeled held-out images, ATC (Garg et al.,
ICLR 2022: the share above a threshold fitted on labeled held-out images) and DoC (Guillory et
al., ICCV 2021: a labeled reference's accuracy minus its drop in average confidence).
``monitoring`` builds profiles and verdicts on top of them; ``bench/monitoring.py`` compares them.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Optional

import numpy as np

from symnets_deploy.label_free import is_finite, softmax

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _check_logits(logits: Any, name: str = "logits", *, finite: bool = False, k: Optional[int] = None) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0 or k not in (None, z.shape[1]):
        raise ValueError(f"{name} must be [N,K]{'' if k is None else f' with K = {k}'}, got shape {z.shape}")
    if finite and not np.isfinite(z).all():
        raise ValueError(f"{name} hold NaN or inf: a profile needs a model that predicts finite logits")
    return z


def _check_conf(conf: Any) -> np.ndarray:
    c = np.asarray(conf, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise ValueError("an accuracy estimate needs at least one confidence")
    return c


def energy(logits: np.ndarray) -> np.ndarray:
    """Stable logsumexp of each row (minus Liu et al.'s energy score: higher = more familiar input).

    Args: logits: [N,K] real scores. Raises: ValueError: not [N,K] with K >= 1.
    Returns: [N] float64; NaN for a row with NaN, +inf with +inf, -inf when all are -inf.
    """
    with np.errstate(invalid="ignore"):
        return np.logaddexp.reduce(_check_logits(logits), axis=1)


def confidences(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Top-1 probability of each row of softmax(logits / temperature).

    Args: logits: [N,K] real scores; temperature: T > 0 (T > 1 softens). Returns: [N] float64 in 1/K..1 (NaN where
        ``softmax`` gives NaN). Raises: ValueError: not [N,K], or a temperature that is not a finite number > 0.
    """
    z = _check_logits(logits)
    if not (is_finite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return softmax(z / temperature).max(axis=1)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the T > 0 minimising the mean NLL of labels under softmax(z / T).

    The NLL is convex in 1/T, so unimodal in log T: golden-section search on [log 0.05, log 20], 80 steps.
    Args: logits: [N,K] finite logits of labeled held-out images; labels: [N] int classes in 0..K-1.
    Returns: T in 0.05..20 (a bound when the optimum lies beyond it; separable data gives 0.05); 1.0 when N < 2
        or the NLL does not depend on T (each row's logits all equal).
    Raises: ValueError: bad shapes, non-finite logits, or a label outside 0..K-1.
    """
    z, y = _check_logits(logits, finite=True), np.asarray(labels)
    ints = y.size == 0 or np.issubdtype(y.dtype, np.integer) and 0 <= y.min() <= y.max() < z.shape[1]
    if y.shape != (len(z),) or not ints:
        raise ValueError(f"labels must be [N] ints in 0..K-1 for logits {z.shape}, got {y.dtype} {reprlib.repr(y)}")
    if len(y) < 2:
        return 1.0
    true = z[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        return float(np.mean(energy(z / math.exp(log_t)) - true / math.exp(log_t)))
    a, b = math.log(0.05), math.log(20.0)
    if np.ptp([nll(a), nll(0.0), nll(b)]) < 1e-12:
        return 1.0  # flat: golden section would drift to a bound
    for _ in range(80):
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        # Ties only where the NLL underflows to 0 (separable data): keep the smaller T.
        a, b = (a, d) if nll(c) <= nll(d) else (c, b)
    return math.exp((a + b) / 2.0)


def atc_threshold(conf_labeled: np.ndarray, correct: np.ndarray) -> float:
    """ATC threshold (Garg et al., ICLR 2022): the share of labeled images with confidence > t equals accuracy.

    With confidences sorted high to low, c(1) >= ... >= c(n), and k correct, t = (c(k) + c(k+1)) / 2 taking c(0) = 1,
    c(n+1) = 0: all correct gives c(n) / 2, none (1 + c(1)) / 2; a tie c(k) == c(k+1) puts the share below accuracy.
    Args: conf_labeled: [N] confidences (T = 1) of labeled images, 0..1, N >= 1; correct: [N] bool (or 0/1).
    Returns: t in 0..1. Raises: ValueError: empty or mismatched inputs, or a non-finite confidence.
    """
    c = np.asarray(conf_labeled, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct).reshape(-1) != 0
    if c.size == 0 or ok.shape != c.shape or not np.isfinite(c).all():
        raise ValueError(f"atc_threshold needs equal non-empty finite [N] inputs, got {c.shape} and {ok.shape}")
    s, k = np.concatenate([[1.0], np.sort(c)[::-1], [0.0]]), int(np.count_nonzero(ok))
    return float((s[k] + s[k + 1]) / 2.0)


def estimate_confidence(conf: np.ndarray) -> float:
    """Average confidence (AC). Args: conf: [N] 0..1, N >= 1. Returns: mean(conf). Raises: ValueError: N == 0."""
    return float(_check_conf(conf).mean())


def estimate_atc(conf: np.ndarray, threshold: float) -> float:
    """ATC. Args: conf: [N] 0..1, N >= 1. Returns: mean(conf > threshold). Raises: ValueError: N == 0."""
    return float(np.mean(_check_conf(conf) > threshold))


def estimate_doc(conf: np.ndarray, reference_accuracy: float, reference_mean_conf: float) -> float:
    """DoC. Args: conf: [N] 0..1, N >= 1; reference_accuracy, reference_mean_conf: on labeled images, 0..1.
    Returns: clip(reference_accuracy - (reference_mean_conf - mean(conf)), 0, 1). Raises: ValueError: N == 0."""
    return float(np.clip(reference_accuracy - (reference_mean_conf - _check_conf(conf).mean()), 0.0, 1.0))
