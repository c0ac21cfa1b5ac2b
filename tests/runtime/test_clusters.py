"""Cluster agreement: V-measure (against scikit-learn), deterministic k-means, the farthest-point start, collapse = 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symnets_deploy import clusters as C


def test_v_measure_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n, ka, kb in [(50, 3, 4), (200, 10, 2), (7, 7, 7), (300, 65, 65), (1, 1, 1)]:
        a, b = rng.integers(0, ka, n), rng.integers(0, kb, n)
        assert C.v_measure(a, b) == pytest.approx(metrics.v_measure_score(a, b), abs=1e-12)
    edge = [([], []), ([0, 0, 0], [1, 1, 1]), ([0, 0, 0], [0, 1, 2]), ([0, 1, 2], [0, 0, 0]), ([0, 0, 1, 1], [5, 5, 9, 9]),
            ([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2]), ([0, 1, 0, 1], [0, 0, 1, 1])]
    for a, b in edge:
        a, b = np.array(a, dtype=int), np.array(b, dtype=int)
        assert C.v_measure(a, b) == pytest.approx(metrics.v_measure_score(a, b), abs=1e-12), (a, b)
    assert C.v_measure(np.array([0, 0, 0]), np.array([1, 1, 1])) == 1.0
    assert C.v_measure(np.array([0, 0, 1, 1]), np.array([5, 5, 9, 9])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal length"):
        C.v_measure(np.zeros(3), np.zeros(2))


def _blobs():
    rng = np.random.default_rng(1)
    return np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (30, 2))])


def test_kmeans_finds_two_blobs_deterministically():
    x = _blobs()
    init = np.array([[2.0, 2.0], [3.0, 3.0]])  # both starts between the blobs
    labels = C.kmeans(x, init)
    np.testing.assert_array_equal(labels, [0] * 20 + [1] * 30)
    np.testing.assert_array_equal(labels, C.kmeans(x, init))
    # A start nothing is near stays empty (keeps its centroid) and never appears.
    far = C.kmeans(x, np.array([[0.0, 0.0], [100.0, 100.0], [5.0, 5.0]]))
    np.testing.assert_array_equal(far, [0] * 20 + [2] * 30)
    assert C.kmeans(np.array([[1.0]]), np.array([[0.0], [2.0]]))[0] == 0  # tie -> lowest index
    with pytest.raises(ValueError, match="finite"):
        C.kmeans(np.array([[np.nan, 0.0]]), init)


def test_initial_centroids_farthest_point_rule():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    c = C.initial_centroids(x, np.array([0, 0, 0, 2]), 3)
    np.testing.assert_allclose(c, [[11 / 3, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # Two empty classes, filled in class order; the first tie (points 0 and 1) goes to point 0.
    c = C.initial_centroids(np.array([[-1.0], [1.0], [0.0]]), np.array([0, 0, 0]), 3)
    np.testing.assert_array_equal(c, [[0.0], [-1.0], [1.0]])


def test_cluster_agreement_collapse_is_zero_and_separated_is_one():
    rng = np.random.default_rng(2)
    collapsed = rng.normal(0, 1, (60, 3)) + np.array([10.0, 0.0, 0.0])
    assert C.cluster_agreement(collapsed) == 0.0
    assert C.cluster_agreement(np.ones((5, 3))) == 0.0  # k-means cannot split either
    separated = 8.0 * np.eye(3)[np.repeat(np.arange(3), 20)] + rng.normal(0, 0.2, (60, 3))
    assert C.cluster_agreement(separated) == pytest.approx(1.0)
    assert math.isnan(C.cluster_agreement(np.full((2, 3), np.nan)))
