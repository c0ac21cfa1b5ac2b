"""Predict-time monitoring: a reference profile of the model's own outputs, and drift against it (numpy only).

``build_profile`` summarises at export the logits on the adaptation target images (plus labeled held-out images that
calibrate the estimators); ``RunningStats.summary()`` compares the images labelled since: an accuracy estimate without
labels and a drift verdict in words. The estimators (AC, AC at a fitted T, ATC, DoC) all read confidences and grow
optimistic under strong shift, so the verdict also tests the confidence distribution itself.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any, Callable, Optional

import numpy as np

from symnets_deploy.estimators import (  # noqa: F401  (part of this module's API)
    _check_conf, _check_logits, atc_threshold, confidences, energy, estimate_atc, estimate_confidence, estimate_doc, fit_temperature,
)
from symnets_deploy.label_free import class_shares

QUANTILES = 101  #: quantile levels in a profile: 0, 0.01, ..., 1 (index i is the i-th percentile)
LOW_CONFIDENCE = 0.5  #: a top-1 probability below this is "low confidence"
ESTIMATORS = ("confidence", "confidence-t", "atc", "doc")  #: all but the first need labeled held-out images
DEFAULT_ESTIMATOR = "confidence"  #: the one place the shipped estimator is chosen (bench/monitoring.py)
ACCURACY_MARGIN = 0.05  #: drift when the estimate lies more than this below the reference's own ...
NOISE_SIGMAS = 3.0  #: ... or more than this many standard errors of a mean confidence of n images, if wider
#: Smallest one-sided KS distance that counts as a shift, however many images. Measured (bench/monitoring.py,
#: A->W model): harmless changes (amazon, JPEG 10, brightness 0.4) move it up to 0.29, harmful ones from 0.44.
SHIFT_EFFECT = 0.40
KS_COEFFICIENT = 1.63  #: KS c(alpha) at alpha = 0.01 two-sided (about 0.5 % used one-sided)
MIN_IMAGES = 30  #: fewer images give no verdict
HISTOGRAM_BINS = 1000  #: bins on [0, 1] of the confidence histogram ``RunningStats`` keeps

_LEVELS = np.linspace(0.0, 1.0, QUANTILES)


# From means, so RunningStats needs only sums: (profile, mean conf, mean conf at T, share above the ATC threshold).
_FROM_MEANS: dict[str, Callable[["Profile", float, float, float], float]] = {
    "confidence": lambda p, m, mt, above: m,
    "confidence-t": lambda p, m, mt, above: mt,
    "atc": lambda p, m, mt, above: above,
    "doc": lambda p, m, mt, above: estimate_doc([m], p.labeled["accuracy"], p.labeled["mean_confidence"]),
}


def _real(v: Any, lo: float = 0.0, hi: float = 1.0) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and lo <= v <= hi  # NaN fails


def _curve(v: Any, lo: float, hi: float) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == QUANTILES and all(_real(x, lo, hi) for x in v)
            and all(a <= b for a, b in zip(v, v[1:])))


_UNIT = (_real, "a number in 0..1")
#: Profile key -> (valid?, what it must be).
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "images": (lambda v: type(v) is int and v >= 1, "an int >= 1"),
    "confidence_quantiles": (lambda v: _curve(v, 0.0, 1.0), f"{QUANTILES} non-decreasing numbers in 0..1"),
    "energy_quantiles": (lambda v: _curve(v, -math.inf, math.inf), f"{QUANTILES} non-decreasing numbers"),
    "class_shares": (lambda v: isinstance(v, (list, tuple)) and v and all(map(_real, v)), "a list of K >= 1 shares"),
    "mean_confidence": _UNIT, "low_confidence_share": _UNIT, "estimated_accuracy": _UNIT,
    "estimator": (lambda v: v in ESTIMATORS, "one of " + ", ".join(ESTIMATORS)),
    "temperature": (lambda v: _real(v, 0.0, math.inf) and 0 < v < math.inf, "a number > 0"),
    "atc_threshold": (lambda v: v is None or _real(v), "null or a number in 0..1"),
    "labeled": (lambda v: v is None or isinstance(v, dict) and type(v.get("images")) is int and v["images"] >= 1
                and _real(v.get("accuracy")) and _real(v.get("mean_confidence")) and isinstance(v.get("source"), str),
                "null or an object of int images >= 1, accuracy and mean_confidence in 0..1, and source"),
    "source": (lambda v: isinstance(v, str), "a string"),
}


@dataclass(frozen=True)
class Profile:
    """What the model's outputs look like on its reference images; stored with the deployed model.

    Attributes:
        images: reference images, >= 1.
        confidence_quantiles, energy_quantiles: QUANTILES non-decreasing values of the top-1 probability (T = 1)
            and of ``energy`` at levels 0, 0.01, ..., 1; class_shares: [K] shares of predicted classes, sum 1.
        mean_confidence, low_confidence_share: mean confidence and share below LOW_CONFIDENCE, 0..1.
        estimated_accuracy, estimator: one of ESTIMATORS, and it applied to the reference itself (0..1).
        temperature, atc_threshold: fitted on the labeled images, else 1.0 and None.
        labeled: ``{"images", "accuracy", "mean_confidence", "source"}`` of the labeled images, else None.
        source: where the reference images came from.
    """

    images: int
    confidence_quantiles: tuple[float, ...]
    energy_quantiles: tuple[float, ...]
    class_shares: tuple[float, ...]
    mean_confidence: float
    low_confidence_share: float
    estimated_accuracy: float
    estimator: str
    temperature: float = 1.0
    atc_threshold: Optional[float] = None
    labeled: Optional[dict] = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        """Compact, key-sorted JSON: equal profiles give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "Profile":
        """From parsed JSON, ignoring unknown keys (a newer version's). Raises: ValueError: names each bad key."""
        if not isinstance(data, dict):
            raise ValueError(f"invalid monitoring profile: expected a JSON object, got {type(data).__name__}")
        d = {f.name: data.get(f.name, f.default) for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        bad = [f"missing keys {', '.join(missing)}"] if missing else [
            f"{k} must be {what}, got {reprlib.repr(d[k])}" for k, (ok, what) in _CHECKS.items() if not ok(d[k])]
        need = None if bad else {"atc": "atc_threshold", "doc": "labeled"}.get(d["estimator"])
        bad += [f"estimator {d['estimator']} needs {need}"] if need and d[need] is None else []
        if bad:
            raise ValueError("invalid monitoring profile: " + "; ".join(bad))
        return cls(**{k: tuple(map(float, v)) if isinstance(v, (list, tuple)) else v for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> "Profile":
        """Parse ``to_json`` text. Raises: ValueError: not JSON (``json.JSONDecodeError``) or not a valid profile."""
        return cls.from_dict(json.loads(text))


def estimate(profile: Profile, conf: np.ndarray, conf_at_t: Optional[np.ndarray] = None) -> float:
    """The profile's estimator on new images (ATC and DoC read confidences at T = 1, "confidence-t" at T).

    Args: profile: the estimator and its calibration; conf: [N] ``confidences(logits)``, N >= 1; conf_at_t: [N]
        ``confidences(logits, profile.temperature)``, needed by "confidence-t" when T != 1. Returns: estimated
        accuracy, 0..1 (NaN if a confidence is). Raises: ValueError: N == 0, or T != 1 and no ``conf_at_t``.
    """
    c = _check_conf(conf)
    if conf_at_t is None and profile.estimator == "confidence-t" and profile.temperature != 1.0:
        raise ValueError("estimator confidence-t needs conf_at_t = confidences(logits, profile.temperature)")
    ct = c if conf_at_t is None else _check_conf(conf_at_t)
    above = math.nan if profile.atc_threshold is None else float(np.mean(c > profile.atc_threshold))
    return float(_FROM_MEANS[profile.estimator](profile, float(c.mean()), float(ct.mean()), above))


def build_profile(logits: np.ndarray, *, labeled_logits: Optional[np.ndarray] = None,
                  labels: Optional[np.ndarray] = None, estimator: str = DEFAULT_ESTIMATOR, source: str = "",
                  labeled_source: str = "") -> Profile:
    """The reference profile of a model, made at export.

    Args: logits: [N,K] finite logits on the reference (adaptation target) images, N >= 1; labeled_logits, labels:
        [M,K] logits and [M] int classes of labeled held-out images, or both None: they fit the temperature, the ATC
        threshold and the DoC reference (their accuracy and mean confidence); estimator: one of ESTIMATORS, all
        falling back to "confidence" without labeled images (or M == 0); source, labeled_source: free text.
    Returns: the profile (``estimator`` the one used, ``estimated_accuracy`` it on the reference images).
    Raises: ValueError: unknown estimator, bad shapes or K, non-finite logits, only one of labeled_logits and
        labels, or a label outside 0..K-1.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    z = _check_logits(logits, finite=True)
    if len(z) == 0 or (labeled_logits is None) != (labels is None):
        raise ValueError("a profile needs >= 1 reference image; labeled_logits and labels go together")
    temperature, threshold, labeled = 1.0, None, None
    if labeled_logits is not None:
        zl = _check_logits(labeled_logits, "labeled_logits", finite=True, k=z.shape[1])
        t, y = fit_temperature(zl, labels), np.asarray(labels)  # fit_temperature checks the labels
        if len(y):
            correct, conf_l = zl.argmax(axis=1) == y, confidences(zl)
            temperature, threshold = t, atc_threshold(conf_l, correct)
            labeled = {"images": len(y), "accuracy": float(correct.mean()),
                       "mean_confidence": float(conf_l.mean()), "source": labeled_source}
    conf = confidences(z)
    profile = Profile(
        images=len(z), confidence_quantiles=tuple(map(float, np.quantile(conf, _LEVELS))),
        energy_quantiles=tuple(map(float, np.quantile(energy(z), _LEVELS))),
        class_shares=tuple(map(float, class_shares(z.argmax(axis=1), z.shape[1]))),
        mean_confidence=float(conf.mean()), low_confidence_share=float(np.mean(conf < LOW_CONFIDENCE)),
        estimated_accuracy=0.0, estimator=ESTIMATORS[0] if labeled is None else estimator,
        temperature=temperature, atc_threshold=threshold, labeled=labeled, source=source)
    return replace(profile, estimated_accuracy=estimate(profile, conf, confidences(z, temperature)))


def confidence_shift(histogram: np.ndarray, profile: Profile) -> float:
    """One-sided KS distance D = max_x F_new(x) - F_ref(x) in 0..1 (how far confidences moved DOWN) of a [B]
    histogram on [0, 1] (total >= 1), read at each bin's right edge: never above the exact confidences' D."""
    h, q = np.asarray(histogram, dtype=np.float64), np.asarray(profile.confidence_quantiles)
    x = np.arange(1, len(h) + 1) / len(h)
    # F_ref: linear between distinct quantiles, right-continuous. Among tied quantiles (confidences saturating at
    # 1.0) searchsorted "right" picks the highest level: F_ref(x) is the largest level whose quantile is <= x.
    j = np.searchsorted(q, x, side="right")
    i = np.clip(j, 1, len(q) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = _LEVELS[i - 1] + (x - q[i - 1]) / (q[i] - q[i - 1]) * (_LEVELS[i] - _LEVELS[i - 1])
    return float(max(0.0, (np.cumsum(h) / h.sum() - np.where(j == 0, 0.0, np.where(j == len(q), 1.0, f))).max()))


def drift_verdict(images: int, estimated_accuracy: Optional[float], reference_estimated_accuracy: float,
                  shift: Optional[float], reference_images: int, reference_spread: float = 0.0) -> tuple[bool, list[str]]:
    """Whether the images seen drifted from the reference, with one reason in words per finding.

    Args: images: n seen; estimated_accuracy, reference_estimated_accuracy: the estimator on them and on the
        reference, 0..1; shift: their ``confidence_shift``; reference_images: n_ref; reference_spread: standard
        deviation of the reference's confidences (widens the margin for few images, whose mean is noisy).
    Returns: (drift, reasons): drift when the estimate is more than max(ACCURACY_MARGIN, NOISE_SIGMAS spread / sqrt(n))
        below the reference's (rounded to 1e-9: exactly 5 points is none) or shift > max(SHIFT_EFFECT, KS_COEFFICIENT sqrt(1/n + 1/n_ref)), an effect
        size that neither large samples of the reference nor small noisy ones exceed; n < MIN_IMAGES: no verdict.
    """
    if images < MIN_IMAGES:
        return False, [f"too few images ({images} < {MIN_IMAGES}) for a verdict"]
    reasons, drop = [], round(reference_estimated_accuracy - estimated_accuracy, 9)
    if not drop <= max(ACCURACY_MARGIN, NOISE_SIGMAS * reference_spread / math.sqrt(images)):  # NaN alarms too
        reasons.append(f"estimated accuracy {100 * estimated_accuracy:.1f} % is {100 * drop:.1f} points below "
                       f"the reference's {100 * reference_estimated_accuracy:.1f} %")
    limit = max(SHIFT_EFFECT, KS_COEFFICIENT * math.sqrt(1.0 / images + 1.0 / reference_images))
    if shift > limit:
        reasons.append(f"confidence distribution shifted down (KS distance {shift:.2f} > {limit:.2f})")
    return bool(reasons), reasons


def flag_images(logits: np.ndarray, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Per-image warnings for [N,K] logits. Returns: (low_confidence, unusual_energy), [N] bool: confidence below
    max(the profile's 5th percentile, LOW_CONFIDENCE); energy outside its 1st..99th percentiles; both if non-finite."""
    z = _check_logits(logits)
    ok, e, q = np.isfinite(z).all(axis=1), energy(z), profile.energy_quantiles
    low = ~(ok & (confidences(z) >= max(profile.confidence_quantiles[5], LOW_CONFIDENCE)))
    return low, ~(ok & (e >= q[1]) & (e <= q[-2]))


class RunningStats:
    """Statistics of the images seen (all, or the last ``window``), compared with a profile; no labels.

    Per batch only vectorised numpy on [B,K]: without a window it keeps sums, counts and a confidence histogram;
    with one, a ring buffer of [window, 4] rows (confidence, confidence at T, energy, class) that ``summary``
    reduces the same way. A row with a non-finite logit is a failed prediction: confidence 0, no class.
    Args: profile: the reference; window: keep only the last this many images (int >= 1), or None for all.
    Raises: ValueError: a window that is not None or an int >= 1.
    """

    def __init__(self, profile: Profile, window: Optional[int] = None) -> None:
        if window is not None and (type(window) is not int or window < 1):
            raise ValueError(f"window must be None or an int >= 1, got {window!r}")
        self.profile, self.window = profile, window
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._totals = self._reduce(np.zeros((0, 4)))
        self._ring, self._filled, self._next = np.zeros((self.window or 0, 4)), 0, 0

    @property
    def images(self) -> int:
        """Images the statistics cover (at most ``window``)."""
        return self._filled if self.window else self._totals["images"]

    def update(self, logits: np.ndarray) -> None:
        """Add a batch. Args: logits: [B,K], B >= 0. Raises: ValueError: not [B,K] with the profile's K."""
        z = _check_logits(logits, k=len(self.profile.class_shares))
        ok = np.isfinite(z).all(axis=1)
        rows = np.column_stack([
            np.where(ok, confidences(z), 0.0), np.where(ok, confidences(z, self.profile.temperature), 0.0),
            np.where(ok, energy(z), np.nan), np.where(ok, z.argmax(axis=1), -1)])
        if self.window is None:
            batch = self._reduce(rows)
            self._totals = {key: self._totals[key] + batch[key] for key in batch}
            return
        rows = rows[-self.window:]
        self._ring[(self._next + np.arange(len(rows))) % self.window] = rows  # over the oldest
        self._next = (self._next + len(rows)) % self.window
        self._filled = min(self.window, self._filled + len(rows))

    def _reduce(self, rows: np.ndarray) -> dict[str, Any]:
        (conf, conf_t, e, pred), p = rows.T, self.profile
        return {"images": len(rows), "sum_conf": float(conf.sum()), "sum_conf_t": float(conf_t.sum()),
                "above": 0 if p.atc_threshold is None else int(np.count_nonzero(conf > p.atc_threshold)),
                "low": int(np.count_nonzero(conf < LOW_CONFIDENCE)), "failed": int(np.count_nonzero(pred < 0)),
                "unusual": int(np.count_nonzero(~((e >= p.energy_quantiles[1]) & (e <= p.energy_quantiles[-2])))),
                "class_counts": np.bincount(pred[pred >= 0].astype(np.int64), minlength=len(p.class_shares)),
                "histogram": np.histogram(conf, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]}

    def summary(self) -> dict[str, Any]:
        """The estimate, the drift verdict and the statistics behind them (JSON-ready; None where no images).

        Returns: ``images``, ``estimated_accuracy`` 0..1, ``drift``, ``reasons`` (``drift_verdict``),
            ``confidence_shift``, ``mean_confidence``, ``low_confidence_share``, ``unusual_energy_share`` (outside
            the reference's 1st..99th percentiles), ``failed`` (non-finite rows), ``class_shares`` (K) and their
            total variation to the reference ``class_share_distance`` (a label-shift hint, not in the verdict),
            ``reference_*``, ``estimator``, ``window``, ``labels_used`` (False).
        """
        p, t = self.profile, self._totals if self.window is None else self._reduce(self._ring[:self._filled])
        n, shares = t["images"], t["class_counts"] / max(t["class_counts"].sum(), 1)
        m = {k: t[k] / n if n else None for k in ("sum_conf", "sum_conf_t", "above", "low", "unusual")}
        estimated = _FROM_MEANS[p.estimator](p, m["sum_conf"], m["sum_conf_t"], m["above"]) if n else None
        shift = confidence_shift(t["histogram"], p) if n else None
        drift, reasons = drift_verdict(n, estimated, p.estimated_accuracy, shift, p.images, float(np.std(p.confidence_quantiles)))
        return {
            "images": n, "estimated_accuracy": estimated, "drift": drift, "reasons": reasons, "confidence_shift": shift,
            "mean_confidence": m["sum_conf"], "low_confidence_share": m["low"], "unusual_energy_share": m["unusual"],
            "failed": t["failed"], "class_shares": [float(s) for s in shares],
            "class_share_distance": float(np.abs(shares - p.class_shares).sum() / 2) if shares.any() else None,
            "reference_estimated_accuracy": p.estimated_accuracy, "reference_mean_confidence": p.mean_confidence,
            "reference_low_confidence_share": p.low_confidence_share, "reference_class_shares": list(p.class_shares),
            "estimator": p.estimator, "window": self.window, "labels_used": False,
        }


def describe_summary(summary: dict[str, Any]) -> list[str]:
    """The two lines ``symnets predict`` prints: the estimate beside the reference's, then the verdict."""
    est, ref = summary.get("estimated_accuracy"), summary.get("reference_estimated_accuracy")
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    first = (f"estimated accuracy {pct(est)} on {summary['images']} images (no label used; {summary['estimator']} estimator), "
             f"reference {pct(ref)}; low-confidence share {pct(summary.get('low_confidence_share'))}")
    verdict = f"drift: {'; '.join(summary['reasons'])}" if summary["drift"] else "no drift" + (f" ({'; '.join(summary['reasons'])})" if summary["reasons"] else "")
    return [first, verdict]


def describe_profile(profile: Profile) -> list[str]:
    """What a profile holds, in a few lines (``symnets profile``)."""
    calibrated = (f"calibrated on {profile.labeled['images']} labeled images of {profile.labeled['source']} (T = {profile.temperature:.3f})"
                  if profile.labeled else "no labeled held-out images: estimator 'confidence' (average top-1 probability)")
    return [
        f"reference profile of {profile.images} images of {profile.source}: mean confidence {profile.mean_confidence:.4f}, "
        f"low-confidence share {100 * profile.low_confidence_share:.1f} %",
        f"estimated accuracy on the reference {100 * profile.estimated_accuracy:.2f} % ({profile.estimator}); {calibrated}",
    ]
