"""Label-free scores (symnets_deploy.label_free) against hand values and direct references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symnets_deploy import label_free as lf

# Three images, three classes: entropies 0, ln 2 and 1.5 ln 2 by hand.
P = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
LN2, LN3 = math.log(2), math.log(3)


def _h(p):
    return -sum(x * math.log(x) for x in p if x > 0)


def test_softmax_values_stability_and_nan_rows():
    out = lf.softmax(np.array([[0.0, math.log(3)], [1000.0, 1000.0], [np.nan, 0.0], [np.inf, 0.0]]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[:2], [[0.25, 0.75], [0.5, 0.5]], rtol=1e-12)
    assert np.isnan(out[2:]).all()


def test_probability_scores_against_hand_values():
    assert lf.mean_confidence(P) == pytest.approx(2 / 3)
    assert lf.mean_entropy(P) == pytest.approx((0 + LN2 + 1.5 * LN2) / 3)
    h_mean = _h([7 / 12, 3 / 12, 2 / 12])  # column means of P
    assert lf.im_diversity(P) == pytest.approx(h_mean / LN3)
    assert lf.information_maximization(P) == pytest.approx(h_mean - 5 * LN2 / 6)
    assert lf.im_diversity(np.tile([[0.0, 1.0, 0.0]], (4, 1))) == 0.0
    assert lf.im_diversity(np.eye(3)) == pytest.approx(1.0)
    assert lf.im_diversity(np.ones((5, 1))) == 1.0
    assert math.isnan(lf.mean_entropy(np.array([[np.nan, np.nan]])))
    assert math.isnan(lf.mean_confidence(np.zeros((0, 3))))


def test_class_shares_and_agreement():
    np.testing.assert_array_equal(lf.class_shares(np.array([0, 2, 2, 1]), 4), [0.25, 0.25, 0.5, 0.0])
    np.testing.assert_array_equal(lf.class_shares(np.array([], dtype=int), 3), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="0..2"):
        lf.class_shares(np.array([3]), 3)
    assert lf.agreement(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    with pytest.raises(ValueError, match="equal shapes"):
        lf.agreement(np.zeros(3), np.zeros(4))


def _snd_reference(p, temperature):
    """SND written out loop by loop: normalised rows, cosine similarities without the diagonal, softmax, entropy."""
    unit = [row / math.sqrt(sum(v * v for v in row)) for row in p]
    total = 0.0
    for i, u in enumerate(unit):
        sims = [sum(a * b for a, b in zip(u, w)) / temperature for j, w in enumerate(unit) if j != i]
        top = max(sims)
        weights = [math.exp(x - top) for x in sims]
        z = sum(weights)
        total += -sum(w / z * math.log(w / z) for w in weights if w > 0)
    return total / len(unit)


def test_snd_against_direct_reference():
    p = lf.softmax(np.random.default_rng(3).normal(0, 2, (10, 4)))
    assert lf.soft_neighborhood_density(p, 0.05) == pytest.approx(_snd_reference(p, 0.05), rel=1e-10)
    assert lf.soft_neighborhood_density(p, 0.5, max_points=4) == pytest.approx(_snd_reference(p[[0, 3, 6, 9]], 0.5), rel=1e-10)
    assert math.isnan(lf.soft_neighborhood_density(p[:1]))


# Target: four images (shares 1/2, 1/4, 1/4), every row confidence 1/2 and entropy 1.5 ln 2.
T = np.log(np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]]))
TS = T[[0, 1, 2, 1]]  # Cs disagrees on the last image
V_CT, V_CS, V_Y = np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([0, 1])
EXTRA = ("smallest_class_share", "target_images", "source_val_images", "information_maximization", "snd")


def test_label_free_scores_values():
    s = lf.label_free_scores(T, TS, V_CT, V_CS, V_Y)
    assert tuple(s) == lf.SCORE_KEYS + EXTRA
    assert (s["source_val_acc_ct"], s["source_val_acc_cs"]) == (0.5, 1.0)
    assert s["target_mean_confidence"] == pytest.approx(0.5)
    assert s["target_entropy"] == pytest.approx(1.5 * LN2)
    assert s["class_shares"] == pytest.approx([0.5, 0.25, 0.25]) and s["smallest_class_share"] == pytest.approx(0.25)
    assert s["cs_ct_agreement"] == 0.75
    assert s["im_diversity"] == pytest.approx(_h([0.375, 0.3125, 0.3125]) / LN3)
    assert s["information_maximization"] == pytest.approx(_h([0.375, 0.3125, 0.3125]) - 1.5 * LN2)
    assert s["v_measure"] == lf.cluster_agreement(np.concatenate([V_CT, T]))
    assert s["snd"] == pytest.approx(_snd_reference(lf.softmax(T), 0.05))
    assert (s["target_images"], s["source_val_images"]) == (4, 2)
    assert all(type(s[k]) is float for k in lf.SCORE_KEYS + EXTRA[:1] + EXTRA[3:] if k != "class_shares")


def test_label_free_scores_without_val_and_with_nan_logits():
    s = lf.label_free_scores(T, T)
    assert s["source_val_acc_ct"] is None and s["source_val_acc_cs"] is None and s["source_val_images"] == 0
    assert s["v_measure"] == lf.cluster_agreement(T) and s["cs_ct_agreement"] == 1.0
    bad = np.concatenate([T, np.full((1, 3), np.nan)])  # a diverged row: wrong, disagreeing, left out elsewhere
    s = lf.label_free_scores(bad, bad, np.concatenate([V_CT, [[np.nan] * 3]]), None, np.array([0, 1, 0]))
    assert s["target_images"] == 5 and s["cs_ct_agreement"] == 0.8
    assert s["source_val_acc_ct"] == pytest.approx(1 / 3) and s["source_val_acc_cs"] is None
    assert s["class_shares"] == pytest.approx([0.5, 0.25, 0.25])
    assert not any(math.isnan(s[k]) for k in ("target_entropy", "im_diversity", "v_measure", "snd"))
    dead = lf.label_free_scores(np.full((3, 3), np.nan), np.zeros((3, 3)))
    assert math.isnan(dead["im_diversity"]) and math.isnan(dead["v_measure"])
    assert dead["class_shares"] == [0.0, 0.0, 0.0] and dead["cs_ct_agreement"] == 0.0


@pytest.mark.parametrize("args, match", [
    ((T, T[:3]), "target_ct and target_cs"),
    ((T, T, np.zeros((2, 4)), None, V_Y), "K = 3"),
    ((T, T, V_CT, None, np.array([0])), "do not match"),
    ((T, T, V_CT), "go together"),
    ((T, T, V_CT, None, np.array([0, 3])), "0..2"),
    ((T[0], T[0]), r"\[N,K\]"),
])
def test_label_free_scores_rejects_bad_shapes(args, match):
    with pytest.raises(ValueError, match=match):
        lf.label_free_scores(*args)


def test_collapse_reasons():
    healthy = {"im_diversity": 0.9, "class_shares": [0.5, 0.5, 0.0]}
    assert lf.collapse_reasons(healthy, [0.49, 0.5, 0.01]) == []  # class 2 too rare in the source to alarm
    reasons = lf.collapse_reasons({"im_diversity": 0.3, "class_shares": [1.0, 0.0, 0.0]}, [0.4, 0.3, 0.3],
                                  class_names=["cat", "dog", "cow"])
    assert len(reasons) == 2 and "0.300" in reasons[0] and "dog, cow" in reasons[1]
    many = lf.collapse_reasons({"im_diversity": 0.8, "class_shares": [1.0] + [0.0] * 7}, [1 / 8] * 8)
    assert many == [many[0]] and "1, 2, 3, 4, 5 and 2 more" in many[0]
    assert lf.collapse_reasons({"im_diversity": float("nan"), "class_shares": [0.5, 0.5]}, [0.5, 0.5])
    with pytest.raises(ValueError, match="2 entries"):
        lf.collapse_reasons(healthy | {"class_shares": [0.5, 0.5]}, [1.0])


def test_source_val_drop_threshold():
    assert lf.source_val_drop([0.90, None, 0.85]) is None  # exactly 5 points
    msg = lf.source_val_drop([0.80, 0.90, None, 0.849])
    assert msg and "90.0%" in msg and "84.9%" in msg
    assert lf.source_val_drop([0.9, 0.7], points=25) is None
    assert lf.source_val_drop([None, None]) is None
