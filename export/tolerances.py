"""Equivalence thresholds, in one place (issue 3; STYLE.md section 6).

An exported artifact must compute the checkpoint's function on real images. fp32 has to agree to
rounding error; fp16 weights and compute move logits by ~1e-3, so it is held to the top-1
decision and to the probabilities a user sees instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from symnets_deploy.enums import Precision, parse_choice


@dataclass(frozen=True)
class Tol:
    """Pass criteria of one comparison.

    Attributes:
        logits_atol: bound on max |logit difference| (None: not bounded).
        probs_atol: bound on max |probability difference| (None: not bounded).
        top1: minimum fraction of images whose top-1 class agrees, 0..1.
    """

    logits_atol: Optional[float]
    probs_atol: Optional[float]
    top1: float

    def atol(self, output: str) -> Optional[float]:
        """The bound for graph output ``output`` ("logits" or "probs")."""
        return {"logits": self.logits_atol, "probs": self.probs_atol}[output]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TOLERANCES: dict[Precision, Tol] = {
    Precision.fp32: Tol(logits_atol=1e-4, probs_atol=None, top1=1.0),
    Precision.fp16: Tol(logits_atol=None, probs_atol=1e-2, top1=0.99),
}


def tolerance_for(precision: Precision | str) -> Tol:
    """The thresholds of a precision; unknown names list the valid ones."""
    return TOLERANCES[parse_choice(Precision, precision, "precision")]
