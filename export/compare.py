"""Equivalence checks between backends, on real images (issue 3).

Polygraphy does the running and the per-output statistics: our ``Backend``s are adapted to its
runner interface, ``Comparator.run`` feeds them the same batches, and ``compare_accuracy`` with
a max-error ``SimpleCompareFunc`` checks each output against its bound. The top-1 agreement is
ours (Polygraphy has no such metric). Results are dataclasses that are truthy on pass.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.export.tolerances import Tol


def _number(value: float) -> Any:
    """JSON-safe float: NaN and infinities become strings (strict JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


@dataclass(frozen=True)
class OutputDiff:
    """One graph output of a candidate against the reference, over all images.

    Attributes:
        max_abs, max_rel, mean_abs: |candidate - reference| statistics (Polygraphy's).
        top1_agree: fraction of images whose argmax over this output agrees, 0..1.
        atol: the bound checked on ``max_abs`` (None: not bounded).
        passed: ``max_abs <= atol`` (when bounded) and ``top1_agree`` reached its threshold.
    """

    max_abs: float
    max_rel: float
    mean_abs: float
    top1_agree: float
    atol: Optional[float]
    passed: bool

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs": _number(self.max_abs), "max_rel": _number(self.max_rel), "mean_abs": _number(self.mean_abs),
            "top1_agree": self.top1_agree, "atol": self.atol, "passed": self.passed,
        }


@dataclass(frozen=True)
class Comparison:
    """A candidate backend against the reference backend."""

    reference: str
    candidate: str
    num_images: int
    outputs: dict[str, OutputDiff]

    @property
    def top1_agree(self) -> float:
        """Top-1 agreement of the deployed decision (argmax of the logits)."""
        return self.outputs["logits"].top1_agree

    @property
    def passed(self) -> bool:
        return all(self.outputs.values())

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "candidate": self.candidate, "num_images": self.num_images,
            "top1_agree": self.top1_agree, "passed": self.passed,
            "outputs": {name: diff.to_dict() for name, diff in self.outputs.items()},
        }


@dataclass(frozen=True)
class EquivalenceReport:
    """Every candidate against one reference under one tolerance; truthy when all pass."""

    tolerance: Tol
    comparisons: tuple[Comparison, ...]

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(self.comparisons)

    @property
    def num_images(self) -> int:
        return self.comparisons[0].num_images if self.comparisons else 0

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "num_images": self.num_images, "tolerance": self.tolerance.to_dict(),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def rows(self) -> list[tuple[str, ...]]:
        """A small table for the CLI: one row per candidate output."""
        table = []
        for c in self.comparisons:
            for name, diff in c.outputs.items():
                table.append((
                    f"{c.candidate} vs {c.reference}", name, f"{diff.max_abs:.3g}", f"{diff.mean_abs:.3g}",
                    f"{100 * diff.top1_agree:.2f}%", "-" if diff.atol is None else f"{diff.atol:g}", "pass" if diff else "FAIL",
                ))
        return table

    def table(self) -> str:
        """``rows()`` as aligned plain text with a header line."""
        header = ("check", "output", "max|diff|", "mean|diff|", "top-1", "bound", "result")
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


@functools.cache
def _runner_class():
    base = require("polygraphy.backend.base", extra="export", purpose="equivalence checks").BaseRunner
    metadata = require("polygraphy.common", extra="export", purpose="equivalence checks").TensorMetadata

    class BackendRunner(base):
        """A ``Backend`` seen through Polygraphy's runner interface."""

        def __init__(self, backend: Backend, name: str) -> None:
            super().__init__(name=name)
            self.backend = backend

        def activate_impl(self) -> None:
            self.backend.activate()

        def get_input_metadata_impl(self):
            spec = self.backend.input_spec()
            return metadata().add(spec.name, np.float32, tuple(-1 if d is None else d for d in spec.shape))

        def infer_impl(self, feed_dict):
            out = self.backend.infer(feed_dict[INPUT_NAME])
            self.inference_time = self.backend.inference_time
            # Polygraphy views output buffers and requires them contiguous.
            return OrderedDict((name, np.ascontiguousarray(out[name])) for name in OUTPUT_NAMES)

        def deactivate_impl(self) -> None:
            self.backend.deactivate()

    return BackendRunner


def _as_runner(backend, name: str):
    """A Polygraphy runner for a ``Backend``; Polygraphy runners (e.g. ``TrtRunner``) pass through."""
    if isinstance(backend, Backend):
        return _runner_class()(backend, name)
    return backend


def _compare_func(tolerance: Tol):
    comparator = require("polygraphy.comparator", extra="export", purpose="equivalence checks")
    atol = {name: (tolerance.atol(name) if tolerance.atol(name) is not None else math.inf) for name in OUTPUT_NAMES}
    # rtol 0: Polygraphy passes an output when abs OR rel error is in bounds; the bound is absolute.
    kwargs = dict(atol=atol, rtol={"": 0.0}, check_error_stat="max")
    simple = getattr(comparator, "SimpleCompareFunc", None)
    return simple(**kwargs) if simple is not None else comparator.CompareFunc.simple(**kwargs)


def compare(reference, candidates: Sequence, batches: Sequence[np.ndarray], *, tolerance: Tol) -> EquivalenceReport:
    """Run every backend on the same batches and compare each candidate with the reference.

    Args:
        reference: a ``Backend`` (e.g. ``TorchReference``) or a Polygraphy runner.
        candidates: backends or runners under test (e.g. ``OrtBackend``, Polygraphy ``TrtRunner``).
        batches: float32 [n,3,H,W] RGB 0..255 arrays of real, preprocessed images.
        tolerance: the pass criteria (``TOLERANCES[precision]``).

    Returns:
        The report; ``bool(report)`` is the verdict.

    Raises:
        UsageError: no batches or no candidates.
        ArtifactError: a backend failed to run (Polygraphy's error, in one line).
    """
    if not batches:
        raise UsageError("equivalence check needs at least one batch of images")
    if not candidates:
        raise UsageError("equivalence check needs at least one candidate backend")
    comparator = require("polygraphy.comparator", extra="export", purpose="equivalence checks")
    exceptions = require("polygraphy.exception", extra="export", purpose="equivalence checks")
    G_LOGGER = require("polygraphy.logger", extra="export", purpose="equivalence checks").G_LOGGER

    names: list[str] = []
    for backend in (reference, *candidates):
        base = getattr(backend, "name", type(backend).__name__)
        names.append(base if base not in names else f"{base}#{len(names)}")
    runners = [_as_runner(b, n) for b, n in zip((reference, *candidates), names)]
    names = [r.name for r in runners]
    feeds = [{INPUT_NAME: np.ascontiguousarray(b, dtype=np.float32)} for b in batches]
    sizes = np.array([b.shape[0] for b in batches], dtype=np.float64)
    # Polygraphy logs every runner and comparison to stdout; the report carries what matters.
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        try:
            results = comparator.Comparator.run(runners, data_loader=feeds)
            accuracy = comparator.Comparator.compare_accuracy(
                results, comparisons=[(0, i) for i in range(1, len(runners))], compare_func=_compare_func(tolerance)
            )
        except exceptions.PolygraphyException as exc:
            raise ArtifactError(f"equivalence check could not run: {' '.join(str(exc).split())[:300]}") from None
    many = getattr(comparator, "AccuracyResults", None)
    if many is not None and isinstance(accuracy, many):  # newer Polygraphy: one AccuracyResult per compare function
        accuracy = accuracy[0]
    outputs = dict(results.items())
    comparisons = []
    for cand in names[1:]:
        per_iteration = accuracy[(names[0], cand)]
        diffs = {}
        for out in OUTPUT_NAMES:
            stats = [it.get(out) for it in per_iteration]
            ref_top1 = np.concatenate([np.asarray(it[out]).argmax(1) for it in outputs[names[0]]])
            cand_top1 = np.concatenate([np.asarray(it[out]).argmax(1) for it in outputs[cand]])
            agree = float(np.mean(ref_top1 == cand_top1)) if ref_top1.shape == cand_top1.shape else 0.0
            if any(s is None for s in stats):  # Polygraphy skips an output it cannot compare (e.g. shape mismatch)
                diffs[out] = OutputDiff(math.nan, math.nan, math.nan, agree, tolerance.atol(out), False)
                continue
            mean_abs = float(np.dot([s.mean_absdiff for s in stats], sizes) / sizes.sum())
            within = all(bool(s) for s in stats)
            diffs[out] = OutputDiff(
                max_abs=float(max(s.max_absdiff for s in stats)), max_rel=float(max(s.max_reldiff for s in stats)),
                mean_abs=mean_abs, top1_agree=agree, atol=tolerance.atol(out), passed=within and agree >= tolerance.top1,
            )
        comparisons.append(Comparison(names[0], cand, int(sizes.sum()), diffs))
    return EquivalenceReport(tolerance, tuple(comparisons))
