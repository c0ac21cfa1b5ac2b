"""Each SymNets loss term (paper eq. 5-10, 12, 13) against values computed by hand with numpy.

The reference functions below are written straight from the equations with naive softmaxes
(fine for the small logits used); extreme logits are checked against closed-form limits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.train.losses import (  # noqa: E402
    Ablation,
    category_confusion_loss,
    classifier_loss,
    domain_confusion_loss,
    domain_discrimination_loss,
    feature_loss,
    log_source_half,
    log_target_half,
    paired_entropy_loss,
    source_task_loss,
    split_category_loss,
    target_task_loss,
)

K = 2
# Ns = 3 source samples, Nt = 2 target samples, 2K = 4 outputs each.
LOGITS_S = np.array([[1.0, -0.5, 0.3, 2.0], [0.2, 0.1, -1.0, 0.7], [-0.3, 1.5, 0.9, -2.0]])
LOGITS_T = np.array([[0.5, 0.5, -1.0, 1.2], [2.2, -0.7, 0.4, 0.0]])
Y_S = np.array([0, 1, 1])


# -- references straight from the paper ------------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ref_eq5(zs, y):
    p_s = _softmax(zs[:, :K])  # Cs
    return -np.mean(np.log(p_s[np.arange(len(y)), y]))


def ref_eq6(zs, y):
    p_t = _softmax(zs[:, K:])  # Ct
    return -np.mean(np.log(p_t[np.arange(len(y)), y]))


def ref_eq7(zs, zt):
    p_st_t, p_st_s = _softmax(zt), _softmax(zs)
    return -np.mean(np.log(p_st_t[:, K:].sum(1))) - np.mean(np.log(p_st_s[:, :K].sum(1)))


def ref_eq8(zs, y):
    p = _softmax(zs)
    rows = np.arange(len(y))
    return -np.sum(np.log(p[rows, y + K])) / (2 * len(y)) - np.sum(np.log(p[rows, y])) / (2 * len(y))


def ref_eq9(z):
    """Eq. 9 on target logits; eq. 12 is the same expression on source logits."""
    p = _softmax(z)
    n = len(z)
    return -np.sum(np.log(p[:, K:].sum(1))) / (2 * n) - np.sum(np.log(p[:, :K].sum(1))) / (2 * n)


def ref_eq10(zt):
    p = _softmax(zt)
    q = p[:, :K] + p[:, K:]
    return -np.mean(np.sum(q * np.log(q), axis=1))


def ref_eq13(zs, y):
    n = len(y)
    rows = np.arange(n)
    p_s, p_t = _softmax(zs[:, :K]), _softmax(zs[:, K:])
    return -np.sum(np.log(p_s[rows, y])) / (2 * n) - np.sum(np.log(p_t[rows, y])) / (2 * n)


def _t(a, dtype=torch.float64):
    return torch.tensor(a, dtype=dtype)


def _y():
    return torch.tensor(Y_S, dtype=torch.int64)


# -- each term ---------------------------------------------------------------------------------
def test_source_task_loss_eq5():
    assert float(source_task_loss(_t(LOGITS_S), _y())) == pytest.approx(ref_eq5(LOGITS_S, Y_S), rel=1e-12)


def test_target_task_loss_eq6():
    assert float(target_task_loss(_t(LOGITS_S), _y())) == pytest.approx(ref_eq6(LOGITS_S, Y_S), rel=1e-12)


def test_eq5_and_eq6_use_different_halves():
    # Swapping the halves of every row swaps Cs and Ct.
    swapped = np.concatenate([LOGITS_S[:, K:], LOGITS_S[:, :K]], axis=1)
    assert float(source_task_loss(_t(swapped), _y())) == pytest.approx(ref_eq6(LOGITS_S, Y_S), rel=1e-12)
    assert ref_eq5(LOGITS_S, Y_S) != pytest.approx(ref_eq6(LOGITS_S, Y_S))


def test_domain_discrimination_loss_eq7():
    got = float(domain_discrimination_loss(_t(LOGITS_S), _t(LOGITS_T)))
    assert got == pytest.approx(ref_eq7(LOGITS_S, LOGITS_T), rel=1e-12)


def test_domain_discrimination_is_not_symmetric_in_domains():
    # Source must land in the first half and target in the second: swapping the batches changes the loss.
    a = float(domain_discrimination_loss(_t(LOGITS_S), _t(LOGITS_T)))
    b = float(domain_discrimination_loss(_t(LOGITS_T), _t(LOGITS_S)))
    assert b == pytest.approx(ref_eq7(LOGITS_T, LOGITS_S), rel=1e-12)
    assert a != pytest.approx(b)


def test_category_confusion_loss_eq8():
    got = float(category_confusion_loss(_t(LOGITS_S), _y()))
    assert got == pytest.approx(ref_eq8(LOGITS_S, Y_S), rel=1e-12)


def test_domain_confusion_loss_eq9_on_target():
    assert float(domain_confusion_loss(_t(LOGITS_T))) == pytest.approx(ref_eq9(LOGITS_T), rel=1e-12)


def test_domain_confusion_loss_eq12_on_source():
    assert float(domain_confusion_loss(_t(LOGITS_S))) == pytest.approx(ref_eq9(LOGITS_S), rel=1e-12)


def test_paired_entropy_loss_eq10():
    assert float(paired_entropy_loss(_t(LOGITS_T))) == pytest.approx(ref_eq10(LOGITS_T), rel=1e-12)


def test_split_category_loss_eq13():
    assert float(split_category_loss(_t(LOGITS_S), _y())) == pytest.approx(ref_eq13(LOGITS_S, Y_S), rel=1e-12)


def test_uniform_logits_closed_forms():
    # All 2K outputs equal: p_st_k = 1/(2K), each half holds 1/2, q_k = 1/K.
    k = 3
    zs, zt = torch.zeros(4, 2 * k, dtype=torch.float64), torch.zeros(5, 2 * k, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1])
    assert float(source_task_loss(zs, y)) == pytest.approx(math.log(k))
    assert float(target_task_loss(zs, y)) == pytest.approx(math.log(k))
    assert float(domain_discrimination_loss(zs, zt)) == pytest.approx(2 * math.log(2))
    assert float(category_confusion_loss(zs, y)) == pytest.approx(math.log(2 * k))
    assert float(domain_confusion_loss(zt)) == pytest.approx(math.log(2))
    assert float(paired_entropy_loss(zt)) == pytest.approx(math.log(k))
    assert float(split_category_loss(zs, y)) == pytest.approx(math.log(k))


def test_log_halves_match_hand_values_and_sum_to_one():
    p = _softmax(LOGITS_T)
    src, tgt = log_source_half(_t(LOGITS_T)), log_target_half(_t(LOGITS_T))
    np.testing.assert_allclose(src.numpy(), np.log(p[:, :K].sum(1)), rtol=1e-12)
    np.testing.assert_allclose(tgt.numpy(), np.log(p[:, K:].sum(1)), rtol=1e-12)
    np.testing.assert_allclose((src.exp() + tgt.exp()).numpy(), 1.0, rtol=1e-12)


# -- compositions (eq. 11) and every ablation --------------------------------------------------
def _refs():
    return {
        "eq5": ref_eq5(LOGITS_S, Y_S),
        "eq6": ref_eq6(LOGITS_S, Y_S),
        "eq7": ref_eq7(LOGITS_S, LOGITS_T),
        "eq8": ref_eq8(LOGITS_S, Y_S),
        "eq9": ref_eq9(LOGITS_T),
        "eq10": ref_eq10(LOGITS_T),
        "eq12": ref_eq9(LOGITS_S),
        "eq13": ref_eq13(LOGITS_S, Y_S),
    }


# (classifier terms -> reference) for each ablation (paper section 4.3, Table 4).
CLASSIFIER_EXPECTED = {
    Ablation.none: {"source_task": "eq5", "target_task": "eq6", "domain_discrimination": "eq7"},
    Ablation.no_ct_loss: {"source_task": "eq5", "domain_discrimination": "eq7"},
    Ablation.no_entropy: {"source_task": "eq5", "target_task": "eq6", "domain_discrimination": "eq7"},
    Ablation.no_confusion: {"source_task": "eq5", "target_task": "eq6", "domain_discrimination": "eq7"},
    Ablation.domain_confusion_only: {"source_task": "eq5", "target_task": "eq6", "domain_discrimination": "eq7"},
}

# (unweighted first term, lambda-weighted terms) of the feature loss for each ablation.
FEATURE_EXPECTED = {
    Ablation.none: ({"category_confusion": "eq8"}, {"domain_confusion": "eq9", "entropy": "eq10"}),
    Ablation.no_ct_loss: ({"category_confusion": "eq8"}, {"domain_confusion": "eq9", "entropy": "eq10"}),
    Ablation.no_entropy: ({"category_confusion": "eq8"}, {"domain_confusion": "eq9"}),
    # w/o confusion: (9) removed, (8) degraded to the category loss (13); M_st stays.
    Ablation.no_confusion: ({"category_loss": "eq13"}, {"entropy": "eq10"}),
    # w/o category confusion: (8) degraded to the domain-level loss (12) on source.
    Ablation.domain_confusion_only: ({"source_domain_confusion": "eq12"}, {"domain_confusion": "eq9", "entropy": "eq10"}),
}


def test_every_ablation_is_covered():
    assert set(CLASSIFIER_EXPECTED) == set(Ablation) == set(FEATURE_EXPECTED)


@pytest.mark.parametrize("ablation", list(Ablation), ids=lambda a: a.value)
def test_classifier_loss_terms_and_total(ablation):
    refs = _refs()
    expected = CLASSIFIER_EXPECTED[ablation]
    for given in (ablation, ablation.value):  # the enum or its string value
        terms = classifier_loss(_t(LOGITS_S), _t(LOGITS_T), _y(), given)
        assert set(terms) == set(expected) | {"total"}
        for name, ref in expected.items():
            assert float(terms[name]) == pytest.approx(refs[ref], rel=1e-12), name
        assert float(terms["total"]) == pytest.approx(sum(refs[r] for r in expected.values()), rel=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("ablation", list(Ablation), ids=lambda a: a.value)
def test_feature_loss_terms_and_total(ablation, lam):
    refs = _refs()
    first, weighted = FEATURE_EXPECTED[ablation]
    terms = feature_loss(_t(LOGITS_S), _t(LOGITS_T), _y(), lam, ablation.value)
    assert set(terms) == set(first) | set(weighted) | {"total"}
    for name, ref in {**first, **weighted}.items():
        assert float(terms[name]) == pytest.approx(refs[ref], rel=1e-12), name
    (ref_first,) = [refs[r] for r in first.values()]
    expected_total = ref_first + lam * sum(refs[r] for r in weighted.values())
    assert float(terms["total"]) == pytest.approx(expected_total, rel=1e-12)


def test_feature_loss_default_is_the_full_objective():
    refs = _refs()
    terms = feature_loss(_t(LOGITS_S), _t(LOGITS_T), _y(), 0.5)
    assert float(terms["total"]) == pytest.approx(refs["eq8"] + 0.5 * (refs["eq9"] + refs["eq10"]), rel=1e-12)
    cls = classifier_loss(_t(LOGITS_S), _t(LOGITS_T), _y())
    assert float(cls["total"]) == pytest.approx(refs["eq5"] + refs["eq6"] + refs["eq7"], rel=1e-12)


def test_unknown_ablation_is_rejected():
    with pytest.raises(ValueError):
        feature_loss(_t(LOGITS_S), _t(LOGITS_T), _y(), 0.5, "no-such-ablation")
    with pytest.raises(ValueError):
        classifier_loss(_t(LOGITS_S), _t(LOGITS_T), _y(), "no-such-ablation")


# -- extreme logits: exact log half-sums, finite losses and gradients ----------------------------
BIG = 1e4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_log_halves_extreme_logits(dtype):
    # Row 0: the first half dominates by 1e4; row 1: the second half dominates.
    z = torch.tensor([[0.0, BIG, -BIG, 5.0], [-BIG, 3.0, BIG, 0.0]], dtype=dtype)
    src, tgt = log_source_half(z), log_target_half(z)
    assert torch.isfinite(src).all() and torch.isfinite(tgt).all()
    # log(e^0 + e^BIG) - log(e^0 + e^BIG + e^-BIG + e^5) = -log(1 + ~e^(5-BIG)) ~ 0,
    # log(e^-BIG + e^5) - log(... e^BIG ...) ~ 5 - BIG.
    assert float(src[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(tgt[0]) == pytest.approx(5.0 - BIG, rel=1e-6)
    assert float(src[1]) == pytest.approx(3.0 - BIG, rel=1e-6)
    assert float(tgt[1]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_extreme_logits_losses_exact_and_gradients_finite(dtype):
    zs = torch.tensor([[BIG, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, BIG]], dtype=dtype, requires_grad=True)
    zt = torch.tensor([[0.0, 0.0, BIG, 0.0], [BIG, 0.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 0])
    # Eq. 5: row 0 is confidently class 0 of Cs (~0), row 1 has Cs logits [0, 0] (log 2).
    assert float(source_task_loss(zs, y).detach()) == pytest.approx(math.log(2) / 2, rel=1e-5)
    # Eq. 6: row 0 has Ct logits [0, 0] (log 2), row 1 puts all mass on Ct's class 1 (BIG).
    assert float(target_task_loss(zs, y).detach()) == pytest.approx((math.log(2) + BIG) / 2, rel=1e-5)
    # Eq. 7: in row 0 of each batch the right half dominates (~0); in row 1 the wrong half does,
    # and log of the right half-sum is log(e^0 + e^0) - BIG.
    assert float(domain_discrimination_loss(zs, zt).detach()) == pytest.approx(2 * (BIG - math.log(2)) / 2, rel=1e-5)
    # Eq. 9 on the target: per row, one half-sum ~1, the other log(2) - BIG.
    assert float(domain_confusion_loss(zt).detach()) == pytest.approx((BIG - math.log(2)) / 2, rel=1e-5)
    # Eq. 10: q is one-hot (row 0 class 0, row 1 class 0): entropy 0, no 0 * log 0 = nan.
    assert float(paired_entropy_loss(zt).detach()) == pytest.approx(0.0, abs=1e-6)
    total = classifier_loss(zs, zt, y)["total"] + feature_loss(zs, zt, y, 1.0)["total"]
    for ablation in Ablation:
        total = total + classifier_loss(zs, zt, y, ablation)["total"] + feature_loss(zs, zt, y, 0.7, ablation)["total"]
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(zs.grad).all() and torch.isfinite(zt.grad).all()
    assert zs.grad.abs().sum() > 0 and zt.grad.abs().sum() > 0


def test_entropy_gradient_finite_at_saturation_float32():
    zt = torch.tensor([[BIG, -BIG, 0.0, -BIG], [-BIG, -BIG, -BIG, BIG]], dtype=torch.float32, requires_grad=True)
    loss = paired_entropy_loss(zt)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zt.grad).all()
