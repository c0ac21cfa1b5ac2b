"""Equivalence thresholds, in one place (issues 3 and 8; STYLE.md section 6).

An exported artifact must compute its reference's function on real images. fp32 has to agree to
rounding error. Reduced precisions are held to what a user sees: the top-1 decision, and the
probability error both at the 99th percentile and at its maximum, so one image near a decision
boundary cannot decide the verdict on its own and a broken model still fails.

The statistics are Polygraphy's (``SimpleCompareFunc``), computed once over all check images:
``max``, ``mean``, ``median`` and ``p99`` (its ``quantile`` statistic at ``ERROR_QUANTILE``) of
the elementwise absolute difference of an output [N,K].

Measured against the fp32 ONNX of ``../shared/fixtures/a2w_lite0_h200.onnx`` on all 295 webcam
images (docs/results.md, "Conversion and check"; ``python bench/fp16_sensitivity.py`` and
``python bench/int8_calibration.py``):

    fp16 (all nodes fp16):           probs p99 0.00074, max 0.0122, top-1 100 %
    int8 (QDQ, MinMax, 128 images):  probs p99 0.0159,  max 0.262,  top-1 99.66 % (one near-tie flip)

The fp16 bounds sit about 13x (p99) and 2.5x (max) above those measurements, the int8 ones about
3x and 1.5x. A candidate just past any bound fails and one just inside passes
(tests/export/test_gate_bounds.py); an int8 model with one convolution's weight scales off by 50 %
is refused (tests/export/test_precision_variants.py::test_broken_int8_conversion_exits_6_and_places_nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symnets_deploy.enums import Precision, parse_choice

#: Quantile of Polygraphy's ``quantile`` error statistic, reported as ``p99``.
ERROR_QUANTILE = 0.99

#: Statistic name -> attribute of Polygraphy's ``OutputCompareResult``.
STATISTICS = {"max": "max_absdiff", "p99": "quantile_absdiff", "mean": "mean_absdiff", "median": "median_absdiff"}


@dataclass(frozen=True)
class Tol:
    """Pass criteria of one comparison.

    Attributes:
        bounds: graph output -> {statistic -> upper bound} on its absolute difference; the
            statistics are keys of ``STATISTICS``; an output without bounds is only reported.
        top1: minimum fraction of images whose top-1 class agrees, 0..1.
    """

    bounds: dict[str, dict[str, float]] = field(default_factory=dict)
    top1: float = 1.0

    def __post_init__(self) -> None:
        unknown = {stat for per_output in self.bounds.values() for stat in per_output} - set(STATISTICS)
        if unknown:
            raise ValueError(f"unknown statistics {sorted(unknown)} (valid: {', '.join(STATISTICS)})")

    def bounds_of(self, output: str) -> dict[str, float]:
        """The bounds on graph output ``output`` (empty: not bounded)."""
        return dict(self.bounds.get(output, {}))

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": {k: dict(v) for k, v in self.bounds.items()}, "top1": self.top1, "error_quantile": ERROR_QUANTILE}


TOLERANCES: dict[Precision, Tol] = {
    Precision.fp32: Tol(bounds={"logits": {"max": 1e-4}}, top1=1.0),
    Precision.fp16: Tol(bounds={"probs": {"p99": 1e-2, "max": 3e-2}}, top1=0.995),
    Precision.int8: Tol(bounds={"probs": {"p99": 5e-2, "max": 0.4}}, top1=0.99),
}


def tolerance_for(precision: Precision | str) -> Tol:
    """The thresholds of a precision; unknown names list the valid ones."""
    return TOLERANCES[parse_choice(Precision, precision, "precision")]
