"""Predict-time monitoring (symnets_deploy.monitoring) against hand values and synthetic shifts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from symnets_deploy import monitoring as M

K = 10


def _model_logits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a fairly good synthetic classifier (about 85 % accurate) and the true classes."""
    y = rng.integers(0, K, n)
    z = rng.normal(0.0, 1.0, (n, K))
    z[np.arange(n), y] += rng.normal(4.0, 2.0, n)
    return z, y


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    ref, _ = _model_logits(2000, rng)
    val, val_labels = _model_logits(500, rng)
    return ref, val, val_labels


def test_energy_and_confidences_against_hand_values():
    z = np.array([[0.0, math.log(3.0)], [1000.0, 1000.0], [0.0, 0.0]])
    np.testing.assert_allclose(M.energy(z), [math.log(4.0), 1000.0 + math.log(2.0), math.log(2.0)], rtol=1e-12)
    np.testing.assert_allclose(M.confidences(z), [0.75, 0.5, 0.5], rtol=1e-12)
    # T = 2 halves the logits: softmax([0, ln 3 / 2]) has top-1 sqrt(3) / (1 + sqrt(3)).
    assert M.confidences(z[:1], 2.0)[0] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)))
    assert np.isnan(M.energy(np.array([[np.nan, 0.0]])))[0]
    assert M.energy(np.array([[np.inf, 0.0], [-np.inf, -np.inf]])).tolist() == [np.inf, -np.inf]
    assert M.energy(np.zeros((0, 3))).shape == (0,)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            M.confidences(z, bad)
    with pytest.raises(ValueError, match=r"\[N,K\]"):
        M.energy(np.zeros(3))


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    true = rng.normal(0.0, 2.0, (5000, K))
    p = np.exp(true - true.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((5000, 1))).argmax(axis=1)  # one draw from each row's softmax
    t = M.fit_temperature(true * 3.0, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    assert M.fit_temperature(true * 3.0, labels) == t  # deterministic
    assert M.fit_temperature(true[:1], labels[:1]) == 1.0
    assert M.fit_temperature(np.zeros((4, 3)), np.array([0, 1, 2, 0])) == 1.0  # flat NLL
    separable = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0]])
    assert M.fit_temperature(separable, np.array([0, 1, 0])) == pytest.approx(0.05, rel=1e-6)
    with pytest.raises(ValueError, match="labels must be"):
        M.fit_temperature(true[:3], np.array([0, 1, K]))


def test_atc_threshold_on_a_hand_example():
    conf = np.array([0.6, 0.9, 0.7, 0.8])  # sorted high to low: 0.9 0.8 0.7 0.6
    assert M.atc_threshold(conf, [True, True, False, False]) == pytest.approx(0.75)  # 2 correct: (0.8 + 0.7) / 2
    assert M.atc_threshold(conf, [1, 1, 1, 0]) == pytest.approx(0.65)
    assert M.atc_threshold(conf, [1, 1, 1, 1]) == pytest.approx(0.3)  # all correct: lowest / 2
    assert M.atc_threshold(conf, [0, 0, 0, 0]) == pytest.approx(0.95)  # none: (1 + highest) / 2
    t = M.atc_threshold(conf, [0, 1, 1, 0])
    assert np.mean(conf > t) == 0.5  # the defining property
    with pytest.raises(ValueError):
        M.atc_threshold([], [])


def test_estimators_against_hand_values():
    conf = np.array([0.9, 0.8, 0.4, 0.5])
    assert M.estimate_confidence(conf) == pytest.approx(0.65)
    assert M.estimate_atc(conf, 0.45) == 0.75
    assert M.estimate_atc(conf, 0.5) == 0.5  # strictly above
    assert M.estimate_doc(conf, 0.9, 0.8) == pytest.approx(0.75)
    assert M.estimate_doc(conf, 0.1, 0.9) == 0.0 and M.estimate_doc(conf, 1.0, 0.5) == 1.0  # clipped
    with pytest.raises(ValueError):
        M.estimate_confidence([])


def test_build_profile_without_labels_falls_back_to_confidence(data):
    ref, _, _ = data
    for estimator in M.ESTIMATORS:
        p = M.build_profile(ref, estimator=estimator, source="webcam")
        assert p.estimator == "confidence" and p.labeled is None and p.atc_threshold is None and p.temperature == 1.0
    conf = M.confidences(ref)
    assert p.images == 2000 and p.source == "webcam"
    assert len(p.confidence_quantiles) == len(p.energy_quantiles) == M.QUANTILES
    assert p.confidence_quantiles[0] == conf.min() and p.confidence_quantiles[-1] == conf.max()
    assert p.confidence_quantiles[50] == pytest.approx(np.median(conf))
    assert p.estimated_accuracy == pytest.approx(conf.mean()) == p.mean_confidence
    assert p.low_confidence_share == np.mean(conf < M.LOW_CONFIDENCE)
    assert sum(p.class_shares) == pytest.approx(1.0) and len(p.class_shares) == K
    assert M.DEFAULT_ESTIMATOR in M.ESTIMATORS
    with pytest.raises(ValueError, match="unknown estimator"):
        M.build_profile(ref, estimator="oracle")
    with pytest.raises(ValueError, match="go together"):
        M.build_profile(ref, labels=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="NaN or inf"):
        M.build_profile(np.array([[np.nan, 0.0]]))


def test_build_profile_with_labels_calibrates_each_estimator(data):
    ref, val, labels = data
    profiles = {e: M.build_profile(ref, labeled_logits=val, labels=labels, estimator=e, labeled_source="amazon")
                for e in M.ESTIMATORS}
    acc, val_conf = float(np.mean(val.argmax(axis=1) == labels)), M.confidences(val)
    for e, p in profiles.items():
        assert p.estimator == e
        assert p.labeled == {"images": 500, "accuracy": acc, "mean_confidence": pytest.approx(val_conf.mean()),
                             "source": "amazon"}
        assert p.temperature == M.fit_temperature(val, labels) and p.atc_threshold == M.atc_threshold(
            val_conf, val.argmax(axis=1) == labels)
    conf = M.confidences(ref)
    assert profiles["confidence-t"].estimated_accuracy == pytest.approx(
        M.confidences(ref, profiles["confidence-t"].temperature).mean())
    assert profiles["atc"].estimated_accuracy == M.estimate_atc(conf, profiles["atc"].atc_threshold)
    assert profiles["doc"].estimated_accuracy == pytest.approx(M.estimate_doc(conf, acc, val_conf.mean()))
    with pytest.raises(ValueError, match="conf_at_t"):
        M.estimate(profiles["confidence-t"], conf)
    empty = M.build_profile(ref, labeled_logits=val[:0], labels=labels[:0], estimator="atc")
    assert empty.estimator == "confidence" and empty.labeled is None


def test_profile_json_round_trip_and_from_dict_errors(data):
    ref, val, labels = data
    for p in (M.build_profile(ref), M.build_profile(ref, labeled_logits=val, labels=labels, estimator="doc")):
        text = p.to_json()
        assert M.Profile.from_json(text) == p
        assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        assert M.Profile.from_dict({**p.to_dict(), "added_later": 1}) == p
    good = p.to_dict()
    bad_cases = {
        "missing keys images, estimator": {k: v for k, v in good.items() if k not in ("images", "estimator")},
        "estimator must be one of": {**good, "estimator": "oracle"},
        "images must be an int": {**good, "images": True},
        "confidence_quantiles must be 101 non-decreasing numbers in 0..1": {**good, "confidence_quantiles": [0.5] * 3},
        "energy_quantiles must be 101 non-decreasing": {**good, "energy_quantiles": good["energy_quantiles"][::-1]},
        "mean_confidence must be a number in 0..1": {**good, "mean_confidence": float("nan")},
        "temperature must be a number > 0": {**good, "temperature": 0},
        "labeled must be null or an object": {**good, "labeled": {"images": 3}},
        "class_shares must be a list": {**good, "class_shares": []},
        "estimator doc needs labeled": {**good, "labeled": None},
    }
    for message, d in bad_cases.items():
        with pytest.raises(ValueError, match="invalid monitoring profile: " + message):
            M.Profile.from_dict(d)
    with pytest.raises(json.JSONDecodeError):  # a ValueError
        M.Profile.from_json("{")
    with pytest.raises(ValueError, match="expected a JSON object"):
        M.Profile.from_json("[]")


def test_running_stats_batches_equal_one_batch(data):
    ref, val, labels = data
    rng = np.random.default_rng(2)
    new = ref[rng.integers(0, 2000, 700)] * 0.8
    for estimator in M.ESTIMATORS:
        p = M.build_profile(ref, labeled_logits=val, labels=labels, estimator=estimator)
        one, many = M.RunningStats(p), M.RunningStats(p)
        one.update(new)
        for part in np.array_split(new, [1, 50, 51, 333]):
            many.update(part)
        many.update(new[:0])
        a, b = one.summary(), many.summary()
        assert a.keys() == b.keys() and a["images"] == b["images"] == 700
        for key in a:
            assert a[key] == pytest.approx(b[key]), key
        conf, conf_t = M.confidences(new), M.confidences(new, p.temperature)
        assert a["estimated_accuracy"] == pytest.approx(M.estimate(p, conf, conf_t))
        assert a["labels_used"] is False and a["estimator"] == estimator
        assert a["low_confidence_share"] == np.mean(M.confidences(new) < 0.5)
        assert sum(a["class_shares"]) == pytest.approx(1.0) and a["reference_class_shares"] == list(p.class_shares)
        assert json.loads(json.dumps(a)) == a
    with pytest.raises(ValueError, match=r"\[N,K\] with K = 10, got shape \(2, 3\)"):
        one.update(np.zeros((2, 3)))


def test_window_keeps_only_the_last_images_and_reset_clears(data):
    ref, _, _ = data
    p = M.build_profile(ref)
    batches = [ref[i:i + 37] * (0.5 if i >= 300 else 1.0) for i in range(0, 444, 37)]  # 444 images
    windowed, last = M.RunningStats(p, window=100), M.RunningStats(p)
    for batch in batches:
        windowed.update(batch)
    last.update(np.concatenate(batches)[-100:])
    assert windowed.images == 100
    a, b = windowed.summary(), last.summary()
    for key in a:
        if key != "window":
            assert a[key] == pytest.approx(b[key]), key
    big = M.RunningStats(p, window=50)
    big.update(ref[:500])  # one batch longer than the window
    assert big.images == 50 and big.summary()["mean_confidence"] == pytest.approx(M.confidences(ref[450:500]).mean())
    windowed.reset()
    assert windowed.images == 0
    s = windowed.summary()
    assert s["estimated_accuracy"] is None and s["drift"] is False and s["reasons"][0].startswith("too few images")
    with pytest.raises(ValueError, match="window"):
        M.RunningStats(p, window=0)


def test_synthetic_shift_gives_drift_with_both_reasons(data):
    ref, _, _ = data
    p = M.build_profile(ref)
    stats = M.RunningStats(p)
    stats.update(ref * 0.3)
    s = stats.summary()
    assert s["drift"] is True and len(s["reasons"]) == 2
    assert s["reasons"][0].startswith("estimated accuracy ") and "points below the reference's" in s["reasons"][0]
    assert s["reasons"][1].startswith("confidence distribution shifted down (KS distance")
    assert s["confidence_shift"] > 0.5 and s["low_confidence_share"] > p.low_confidence_share
    # Sharper (more confident) outputs are no downward shift.
    up = M.RunningStats(p)
    up.update(ref * 2.0)
    assert up.summary()["drift"] is False and up.summary()["confidence_shift"] == 0.0


def test_resamples_of_the_reference_never_drift(data):
    ref, _, _ = data
    p = M.build_profile(ref)
    rng = np.random.default_rng(3)

    def drifts(images: int) -> list[bool]:
        out = []
        for _ in range(200):
            stats = M.RunningStats(p)
            stats.update(ref[rng.integers(0, 2000, images)])
            out.append(stats.summary()["drift"])
        return out

    assert M.KS_COEFFICIENT * math.sqrt(1 / 300 + 1 / 2000) < M.SHIFT_EFFECT  # the floor decides at n >= 300
    assert not any(drifts(1000))  # one-sided KS: P(D > 0.10) ~ exp(-2 * 667 * 0.01) ~ 2e-6 per resample
    # At 300 images P(D > 0.10) ~ exp(-2 * 261 * 0.01) ~ 0.5 % by noise alone (0.33 % measured over 4000
    # resamples of this reference), so "never" would depend on the seed: bound the rate instead.
    assert sum(drifts(300)) <= 4
    whole = M.RunningStats(p)
    whole.update(ref)
    assert whole.summary()["confidence_shift"] < 0.02 and whole.summary()["drift"] is False


def test_too_few_images_give_no_verdict(data):
    ref, _, _ = data
    p = M.build_profile(ref)
    stats = M.RunningStats(p)
    stats.update(ref[:29] * 0.3)
    s = stats.summary()
    assert s["drift"] is False and s["reasons"] == ["too few images (29 < 30) for a verdict"]
    stats.update(ref[29:30] * 0.3)
    assert stats.summary()["drift"] is True
    assert M.drift_verdict(30, 0.9, 0.95, 0.0, 1000) == (False, [])  # exactly 5 points: no drift
    assert M.drift_verdict(30, 0.89, 0.95, 0.0, 1000)[0] is True


def test_flag_images_on_hand_values():
    # Reference confidences spread over 0.55..0.95: 5th percentile 0.57, above LOW_CONFIDENCE.
    levels = np.linspace(0.0, 1.0, M.QUANTILES)
    p = M.Profile(images=101, confidence_quantiles=tuple(0.55 + 0.4 * levels), energy_quantiles=tuple(10 * levels),
                  class_shares=(0.5, 0.5), mean_confidence=0.75, low_confidence_share=0.0, estimated_accuracy=0.75,
                  estimator="confidence")
    # Two classes: confidence = sigmoid(a - b); energy = logsumexp(a, b).
    z = np.array([[math.log(0.6 / 0.4), 0.0],   # confidence 0.60 >= 0.57, energy log(2.5) = 0.92: fine
                  [math.log(0.56 / 0.44), 0.0],  # confidence 0.56 < 0.57: low
                  [0.0, 0.0],                    # confidence 0.5, energy log 2 = 0.69: low, fine energy
                  [10.0, 9.0],                   # energy 10.31 > 99th percentile 9.9
                  [-3.0, -4.0],                  # energy -2.69 < 1st percentile 0.1
                  [np.nan, 0.0]])
    low, unusual = M.flag_images(z, p)
    assert low.tolist() == [False, True, True, False, False, True]
    assert unusual.tolist() == [False, False, False, True, True, True]
    p_low = M.Profile(**{**p.__dict__, "confidence_quantiles": tuple(0.3 + 0.7 * levels)})  # 5th pct 0.335
    assert M.flag_images(z[2:3], p_low)[0].tolist() == [False]  # 0.5 is not below LOW_CONFIDENCE
    assert M.flag_images(np.array([[0.0, math.log(0.45 / 0.55)]]), p_low)[0].tolist() == [False]
    assert M.flag_images(np.array([[0.0, 0.0, 0.0]]), p_low)[0].tolist() == [True]  # 1/3 < 0.5


def test_failed_rows_count_as_wrong_and_unusual(data):
    ref, _, _ = data
    stats = M.RunningStats(M.build_profile(ref))
    z = ref[:40].copy()
    z[:20, 0] = np.nan
    stats.update(z)
    s = stats.summary()
    assert s["failed"] == 20 and s["unusual_energy_share"] >= 0.5 and s["drift"] is True
    assert s["mean_confidence"] == pytest.approx(M.confidences(ref[20:40]).sum() / 40)
    assert sum(s["class_shares"]) == pytest.approx(1.0)
