"""Scores of a trained model that need no target labels, from its logits alone (numpy only).

Ericsson et al. (2023): the V-measure between k-means clusters and predicted classes ranks domain-adapted models
best, source-val accuracy is strong, entropy and SND rank poorly (kept as baselines). Deterministic: k-means starts
from the predicted-class centroids, never from a seed, so ``symnets select`` is repeatable.

    scores = label_free_scores(target_ct, target_cs, val_ct, val_cs, val_labels)
    print(describe(scores))

``symnets_deploy.selection`` ranks checkpoints by these scores.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from symnets_deploy.clusters import class_counts, cluster_agreement

#: The public keys of ``label_free_scores``, in order (its extra keys follow them).
SCORE_KEYS = ("source_val_acc_ct", "source_val_acc_cs", "target_mean_confidence", "target_entropy", "im_diversity",
              "class_shares", "cs_ct_agreement", "v_measure")



def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def is_finite(x: Any) -> bool:
    return x is not None and math.isfinite(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits (the row max is subtracted first).

    Args:
        logits: [N,K] real scores, any numeric dtype.

    Returns:
        [N,K] float64 in 0..1, rows summing to 1; a row with NaN or +inf, or only -inf, is all NaN (no warning).
    """
    x = np.asarray(logits, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)  # log 1 = 0: 0 log 0 = 0, yet NaN stays NaN


def mean_confidence(probs: np.ndarray) -> float:
    """Mean over images of the top-1 probability.

    Args:
        probs: [N,K] probabilities (as from ``softmax``).

    Returns:
        1/K..1; NaN when N == 0 or a row is NaN.
    """
    return _mean(np.asarray(probs, dtype=np.float64).max(axis=1))


def mean_entropy(probs: np.ndarray) -> float:
    """Mean over images of the prediction entropy ``-sum p log p`` (0 log 0 = 0).

    Args:
        probs: [N,K] probabilities.

    Returns:
        Nats, 0..log K; NaN when N == 0 or a row is NaN.
    """
    return _mean(_entropy(probs))


def im_diversity(probs: np.ndarray) -> float:
    """Entropy of the mean prediction over log K: the diversity half of information maximization.

    Args:
        probs: [N,K] probabilities.

    Returns:
        0..1 (1 = classes predicted equally often on average, 0 = collapse); 1.0 when K == 1; NaN when N == 0 or a
        row is NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[0] == 0:
        return float("nan")
    # Clipped: rounding can put a collapsed model's value a hair below 0, which would print as -0.000.
    return 1.0 if p.shape[1] == 1 else float(np.clip(_entropy(p.mean(axis=0)) / math.log(p.shape[1]), 0.0, 1.0)) + 0.0  # + 0.0: no -0.0


def information_maximization(probs: np.ndarray) -> float:
    """The IM objective ``H(mean p) - mean H(p)``, a single-score baseline for benchmarks.

    Args:
        probs: [N,K] probabilities.

    Returns:
        Nats, 0..log K (higher = confident and diverse); NaN when N == 0 or a row is NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    return float(_entropy(p.mean(axis=0)) - _entropy(p).mean()) if p.shape[0] else float("nan")


def class_shares(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of images predicted as each class.

    Args:
        predicted: [N] int classes in 0..K-1.
        num_classes: K.

    Returns:
        [K] float64 summing to 1, 0 for never-predicted classes; all zeros when N == 0.

    Raises:
        ValueError: a class outside 0..K-1.
    """
    counts = class_counts(predicted, num_classes).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of positions where two labelings agree (e.g. argmax Cs and argmax Ct).

    Args:
        a, b: int arrays of one shape.

    Returns:
        0..1; NaN when empty.

    Raises:
        ValueError: the shapes differ.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"agreement needs equal shapes, got {a.shape} and {b.shape}")
    return _mean(a == b)


def soft_neighborhood_density(probs: np.ndarray, temperature: float = 0.05, max_points: int = 1000) -> float:
    """Soft neighbourhood density (SND, Saito et al., ICCV 2021), a negative-control baseline.

    Rows are L2-normalised, the cosine-similarity matrix loses its diagonal, each row of sim/temperature goes
    through a softmax; SND is the mean row entropy (nats). The paper's code fills the diagonal with -1/temperature
    and adds 1e-5 inside the log; we drop the diagonal and use 0 log 0 = 0 exactly.

    Args:
        probs: [N,K] probabilities.
        temperature: softmax temperature, > 0.
        max_points: at most this many rows, spread evenly over the indices (the matrix is quadratic).

    Returns:
        SND, higher = "better" by that paper; NaN with fewer than 2 rows or a NaN row.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[0] < 2:
        return float("nan")
    p = p[np.linspace(0, p.shape[0] - 1, min(p.shape[0], max_points)).astype(np.int64)]  # step >= 1: unique
    with np.errstate(invalid="ignore", divide="ignore"):
        u = p / np.linalg.norm(p, axis=1, keepdims=True)
    m = len(u)
    sim = (u @ u.T)[~np.eye(m, dtype=bool)].reshape(m, m - 1)
    return _mean(_entropy(softmax(sim / temperature)))


def _logits(a: Any, name: str) -> np.ndarray:
    z = np.asarray(a, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"{name} must be [N,K] logits, got shape {z.shape}")
    return z


def _accuracy(logits: Optional[np.ndarray], labels: np.ndarray) -> Optional[float]:
    if logits is None or labels.size == 0:
        return None
    return float((np.isfinite(logits).all(axis=1) & (logits.argmax(axis=1) == labels)).mean())


def label_free_scores(target_ct: np.ndarray, target_cs: np.ndarray, val_ct: Optional[np.ndarray] = None,
                      val_cs: Optional[np.ndarray] = None, val_labels: Optional[np.ndarray] = None) -> dict[str, Any]:
    """All label-free scores of one model, for summary.json, the card and ``symnets select``.

    Non-finite logits (a diverged run) never raise. A row with any NaN/inf logit is a failed prediction: wrong in
    the accuracies, a disagreement in ``cs_ct_agreement``, and left out of every other score, which uses the finite
    rows (``class_shares`` sums to 1 over them). A score with no finite row left is ``float('nan')``
    (``class_shares`` all 0.0); ``target_images`` counts every row.

    Args:
        target_ct, target_cs: [Nt,K] logits of Ct and Cs on the unlabeled target, Nt >= 1 (same array twice for
            a source-only model).
        val_ct, val_cs: [Nv,K] logits on the labeled source-val split, or None; no ``val_cs``: its accuracy is None.
        val_labels: [Nv] int true classes in 0..K-1; given exactly when ``val_ct`` is.

    Returns:
        ``SCORE_KEYS``, then ``smallest_class_share``, ``target_images``, ``source_val_images``,
        ``information_maximization`` and ``snd``. Accuracies and shares are 0..1 (accuracies None without val
        images), ``class_shares`` a list of K floats, ``target_entropy`` nats; ``v_measure`` clusters the Ct logits
        of source-val and target stacked (target alone without val), so clusters see both domains.

    Raises:
        ValueError: a shape mismatch, K differing between inputs, no target row, ``val_ct`` without ``val_labels``
            (or the reverse, or ``val_cs`` alone), or a label outside 0..K-1.
    """
    ct, cs = _logits(target_ct, "target_ct"), _logits(target_cs, "target_cs")
    if ct.shape != cs.shape or ct.shape[0] == 0:
        raise ValueError(f"target_ct and target_cs must be equal non-empty [Nt,K], got {ct.shape} and {cs.shape}")
    k, vct, vcs, labels = ct.shape[1], None, None, np.zeros(0, dtype=np.int64)
    if (val_ct is None) != (val_labels is None) or (val_cs is not None and val_ct is None):
        raise ValueError("val_ct and val_labels go together (and val_cs only with them)")
    if val_ct is not None:
        vct, vcs = _logits(val_ct, "val_ct"), None if val_cs is None else _logits(val_cs, "val_cs")
        labels = np.asarray(val_labels).reshape(-1).astype(np.int64)
        if vct.shape[1] != k or labels.shape[0] != vct.shape[0] or (vcs is not None and vcs.shape != vct.shape):
            raise ValueError(f"source-val logits {vct.shape}, {None if vcs is None else vcs.shape} and labels "
                             f"{labels.shape} do not match each other or K = {k} of the target logits")
        class_counts(labels, k)  # range check
    ok = np.isfinite(ct).all(axis=1)
    probs, shares = softmax(ct[ok]), class_shares(ct[ok].argmax(axis=1), k)
    agree = ok & np.isfinite(cs).all(axis=1) & (ct.argmax(axis=1) == cs.argmax(axis=1))
    return {
        "source_val_acc_ct": _accuracy(vct, labels), "source_val_acc_cs": _accuracy(vcs, labels),
        "target_mean_confidence": mean_confidence(probs), "target_entropy": mean_entropy(probs),
        "im_diversity": im_diversity(probs), "class_shares": [float(s) for s in shares],
        "cs_ct_agreement": float(agree.mean()),
        "v_measure": cluster_agreement(ct if vct is None else np.concatenate([vct, ct])),
        "smallest_class_share": float(shares.min()), "target_images": int(ct.shape[0]),
        "source_val_images": int(labels.size), "information_maximization": information_maximization(probs),
        "snd": soft_neighborhood_density(probs),
    }


def collapse_reasons(scores: Mapping[str, Any], source_class_shares: Sequence[float], *, min_diversity: float = 0.5,
                     min_source_share: float = 0.02, class_names: Optional[Sequence[str]] = None) -> list[str]:
    """The collapse alarm: one human-readable reason per finding; empty = no collapse.

    Args:
        scores: a ``label_free_scores`` dict (``im_diversity`` and ``class_shares`` are read).
        source_class_shares: [K] fraction of the source training images in each class.
        min_diversity: alarm when ``im_diversity`` (0..1) is below it; NaN or None always alarms.
        min_source_share: a class never predicted on the target alarms only if it holds at least this fraction
            of the source (rare source classes may well be absent).
        class_names: K names for the message, else class indices; at most 5 are listed.

    Returns:
        Reason strings.

    Raises:
        ValueError: ``source_class_shares`` or ``class_names`` does not have K entries.
    """
    reasons, diversity, shares = [], scores.get("im_diversity"), list(scores["class_shares"])
    if not is_finite(diversity):
        reasons.append("IM diversity is not a number (non-finite target logits): treated as collapse")
    elif diversity < min_diversity:
        reasons.append(f"IM diversity {diversity:.3f} < {min_diversity}: target predictions concentrate on few classes")
    if len(source_class_shares) != len(shares) or (class_names is not None and len(class_names) != len(shares)):
        raise ValueError(f"source_class_shares and class_names need {len(shares)} entries, one per class")
    missing = [str(c if class_names is None else class_names[c])
               for c, (t, s) in enumerate(zip(shares, source_class_shares)) if t == 0 and s >= min_source_share]
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        reasons.append(f"{len(missing)} classes never predicted on the target although each holds >= "
                       f"{min_source_share:.0%} of the source images: {listed}")
    return reasons


def source_val_drop(history: Sequence[Optional[float]], *, points: float = 5.0) -> Optional[str]:
    """A warning when source-val accuracy ends well below its best: adaptation may have hurt.

    Args:
        history: source-val Ct accuracies (0..1) at each evaluation in iteration order, the last one final;
            None and NaN entries are ignored.
        points: percentage points the final value may lie below the best.

    Returns:
        A sentence when final < best by more than ``points`` (rounded to 1e-9 points, so 0.90 -> 0.85 is exactly 5
        and passes), else None (also when no value is left).
    """
    values = [float(v) for v in history if is_finite(v)]
    if not values:
        return None
    best, final = max(values), values[-1]
    drop = round((best - final) * 100.0, 9)
    if drop <= points:
        return None
    return (f"source-val accuracy fell from its best {best:.1%} to {final:.1%} at the end ({drop:.1f} points, "
            f"more than {points:g}): an earlier checkpoint may be better")


def describe(scores: Mapping[str, Any]) -> str:
    """One line of the scores a person reads first (a run's result line, ``symnets info``)."""
    def pct(key: str) -> str:
        value = scores.get(key)
        return f"{100 * value:.2f}%" if is_finite(value) else "n/a"

    def num(key: str) -> str:
        value = scores.get(key)
        return f"{value:.3f}" if is_finite(value) else "n/a"

    return (f"label-free: source-val Ct {pct('source_val_acc_ct')}, V-measure {num('v_measure')}, "
            f"confidence {num('target_mean_confidence')}, IM diversity {num('im_diversity')}, "
            f"smallest class share {num('smallest_class_share')}")
