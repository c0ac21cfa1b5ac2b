"""Cluster agreement: V-measure between a model's predicted classes and k-means clusters of its logits.

The best label-free validator in Ericsson et al. (2023): a model whose predictions follow the
structure of its own outputs scores near 1, one whose predictions cut across it (or collapsed
to one class) near 0. Deterministic: k-means starts from the predicted-class centroids (a
farthest-point rule for classes never predicted), never from a seed. numpy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_CHUNK = 4096  # rows per distance block: memory O(4096 x K) whatever N is


def class_counts(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """[K] images per class index; an index outside 0..K-1 raises ValueError."""
    y = np.asarray(predicted).reshape(-1).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"classes must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    return np.bincount(y, minlength=num_classes)


def _labeling_entropy(counts: np.ndarray) -> float:
    pi = counts[counts > 0].astype(np.float64)
    total = pi.sum()
    return 0.0 if pi.size == 1 else float(-np.sum((pi / total) * (np.log(pi) - math.log(total))))


def v_measure(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """V-measure (beta = 1, harmonic mean of homogeneity and completeness), as ``sklearn.metrics.v_measure_score``.

    Same formulas and edge cases as sklearn 1.x: empty input gives 1.0, one label on both sides 1.0, one label
    against several 0.0 (that side's entropy is 0, so its score is 1.0 while mutual information is 0).

    Args:
        labels_a, labels_b: [N] labels of the same N points (any sortable dtype).

    Returns:
        0..1.

    Raises:
        ValueError: an input is not 1-D, or the lengths differ.
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"v_measure needs two 1-D labelings of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 1.0
    ia, ib = np.unique(a, return_inverse=True)[1].reshape(-1), np.unique(b, return_inverse=True)[1].reshape(-1)
    ka, kb = int(ia.max()) + 1, int(ib.max()) + 1
    table = np.bincount(ia * kb + ib, minlength=ka * kb).reshape(ka, kb)
    pi, pj, n = table.sum(axis=1), table.sum(axis=0), float(a.size)
    mi = 0.0
    if ka > 1 and kb > 1:  # sklearn's mutual_info_score term by term, so both agree to the last bits
        x, y = np.nonzero(table)
        nz = table[x, y].astype(np.float64)
        log_outer = -np.log(pi[x] * pj[y]) + math.log(pi.sum()) + math.log(pj.sum())
        terms = (nz / n) * (np.log(nz) - math.log(n)) + (nz / n) * log_outer
        mi = float(np.clip(np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms).sum(), 0.0, None))
    h_a, h_b = _labeling_entropy(pi), _labeling_entropy(pj)
    homogeneity, completeness = (mi / h_a if h_a else 1.0), (mi / h_b if h_b else 1.0)
    if homogeneity + completeness == 0.0:
        return 0.0
    return float(2.0 * homogeneity * completeness / (homogeneity + completeness))


def _points(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.isfinite(x).all():
        raise ValueError(f"{name} must be a non-empty finite [N,D] array, got shape {x.shape}")
    return x


def _sq_distances(points: np.ndarray, centroids: np.ndarray):
    """Yield (rows, [rows,K] squared distances), block by block."""
    c2 = (centroids**2).sum(axis=1)
    for start in range(0, points.shape[0], _CHUNK):
        block = points[start:start + _CHUNK]
        yield slice(start, start + len(block)), (block**2).sum(axis=1)[:, None] - 2.0 * block @ centroids.T + c2


def _assign(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    labels = np.empty(points.shape[0], dtype=np.int64)
    for rows, d in _sq_distances(points, centroids):
        labels[rows] = d.argmin(axis=1)  # ties: lowest index
    return labels


def initial_centroids(points: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """K-means start: the centroid of each predicted class, so clusters begin where the classes are.

    A class nobody is predicted as gets, in increasing class order, the point farthest (Euclidean) from its nearest
    centroid chosen so far (ties: lowest point index): always K centroids, never a seed.

    Args:
        points: [N,D] finite features (here logits), N >= 1.
        predicted: [N] int classes in 0..K-1.
        num_classes: K.

    Returns:
        [K,D] float64 centroids.

    Raises:
        ValueError: empty or non-finite points, or ``predicted`` of the wrong length or range.
    """
    x = _points(points, "points")
    y = np.asarray(predicted).reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"predicted has {y.shape[0]} entries for {x.shape[0]} points")
    counts, centroids = class_counts(y, num_classes), np.zeros((num_classes, x.shape[1]))
    np.add.at(centroids, y, x)
    present = counts > 0
    centroids[present] /= counts[present, None]
    nearest = np.empty(x.shape[0])
    for rows, d in _sq_distances(x, centroids[present]):
        nearest[rows] = d.min(axis=1)
    for k in np.flatnonzero(~present):
        centroids[k] = x[int(np.argmax(nearest))]
        nearest = np.minimum(nearest, ((x - centroids[k]) ** 2).sum(axis=1))
    return centroids


def kmeans(points: np.ndarray, init: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Lloyd's k-means from given centroids, without randomness.

    Stops when no assignment changes or after ``max_iter`` updates. A cluster that empties keeps its previous
    centroid; a point equally near two centroids goes to the lower index.

    Args:
        points: [N,D] finite features, N >= 1.
        init: [K,D] finite starting centroids.
        max_iter: the most centroid updates.

    Returns:
        [N] int64 clusters in 0..K-1.

    Raises:
        ValueError: empty or non-finite points or centroids, or D differs between them.
    """
    x, centroids = _points(points, "points"), _points(init, "init").copy()
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"init has dimension {centroids.shape[1]}, points have {x.shape[1]}")
    labels = _assign(x, centroids)
    for _ in range(max_iter):
        counts, sums = np.bincount(labels, minlength=len(centroids)), np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        new = _assign(x, centroids)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def cluster_agreement(logits: np.ndarray) -> float:
    """V-measure between predicted classes and k-means clusters of the logits (Ericsson et al. 2023).

    High when the decision regions follow the cluster structure of the data; rows with a non-finite logit are left
    out. Predictions in one class score 0.0: completeness is 0 against several clusters anyway, and where k-means
    cannot split the points either (equal rows) sklearn's convention would give 1.0, rewarding a collapse.

    Args:
        logits: [N,K] logits (Ct).

    Returns:
        0..1, higher = better; NaN when no row is finite.

    Raises:
        ValueError: ``logits`` is not 2-D.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must be [N,K], got shape {z.shape}")
    z = z[np.isfinite(z).all(axis=1)]
    if z.shape[0] == 0:
        return float("nan")
    predicted = z.argmax(axis=1)
    if np.unique(predicted).size < 2:
        return 0.0
    return v_measure(predicted, kmeans(z, initial_centroids(z, predicted, z.shape[1])))
