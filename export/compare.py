"""Equivalence checks between backends, on real images (issue 3).

Polygraphy does the running and the per-output statistics: our ``Backend``s are adapted to its
runner interface, ``Comparator.run`` feeds them the same batches, and ``compare_accuracy`` with a
``SimpleCompareFunc`` computes each output's error statistics over all images at once (the
batches are merged first, so a percentile covers the whole check set, not one batch). The bounds
of ``tolerances.Tol`` and the top-1 agreement (Polygraphy has no such metric) decide the verdict.
Results are dataclasses that are truthy on pass.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.export.tolerances import ERROR_QUANTILE, STATISTICS, Tol


def _number(value: float) -> Any:
    """JSON-safe float: NaN and infinities become strings (strict JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


@dataclass(frozen=True)
class OutputDiff:
    """One graph output of a candidate against the reference, over all check images at once.

    Attributes:
        stats: Polygraphy's statistics of |candidate - reference| by ``STATISTICS`` name
            (``max``, ``p99``, ``mean``, ``median``), plus ``max_rel``.
        top1_agree: fraction of images whose argmax over this output agrees, 0..1.
        bounds: the bounds checked, statistic -> upper bound (empty: only reported).
        passed: every bound held and ``top1_agree`` reached its threshold.
    """

    stats: dict[str, float]
    top1_agree: float
    bounds: dict[str, float]
    passed: bool

    @property
    def max_abs(self) -> float:
        return self.stats["max"]

    @property
    def mean_abs(self) -> float:
        return self.stats["mean"]

    def broken(self) -> list[str]:
        """``"p99 0.012 > 0.01"`` for every bound that does not hold (NaN never holds)."""
        return [f"{stat} {self.stats[stat]:.3g} > {bound:g}" for stat, bound in self.bounds.items() if not self.stats[stat] <= bound]

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f"{stat}_abs" if stat != "max_rel" else stat: _number(v) for stat, v in self.stats.items()},
            "top1_agree": self.top1_agree, "bounds": dict(self.bounds), "passed": self.passed,
        }


@dataclass(frozen=True)
class Comparison:
    """A candidate backend against the reference backend.

    ``reference_top1``/``candidate_top1`` are the deployed decisions (argmax of the logits) per
    check image, in order, so callers holding labels can score both without running them again.
    """

    reference: str
    candidate: str
    num_images: int
    outputs: dict[str, OutputDiff]
    reference_top1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), compare=False, repr=False)
    candidate_top1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), compare=False, repr=False)

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
                bounds = ", ".join(f"{stat}<={bound:g}" for stat, bound in diff.bounds.items()) or "-"
                table.append((
                    f"{c.candidate} vs {c.reference}", name, f"{diff.stats['max']:.3g}", f"{diff.stats['p99']:.3g}",
                    f"{100 * diff.top1_agree:.2f}%", bounds, "pass" if diff else "FAIL",
                ))
        return table

    def table(self) -> str:
        """``rows()`` as aligned plain text with a header line."""
        header = ("check", "output", "max|diff|", "p99|diff|", "top-1", "bounds", "result")
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


def _statistics_func():
    """Polygraphy's comparison, asked for its statistics only: our ``Tol`` decides the verdict."""
    comparator = require("polygraphy.comparator", extra="export", purpose="equivalence checks")
    kwargs = dict(atol={"": math.inf}, rtol={"": math.inf}, check_error_stat="quantile", error_quantile=ERROR_QUANTILE)
    simple = getattr(comparator, "SimpleCompareFunc", None)
    return simple(**kwargs) if simple is not None else comparator.CompareFunc.simple(**kwargs)


def _merged(results, structs):
    """One iteration holding every batch of each runner, so each statistic covers all images."""
    merged = structs.RunResults()
    for runner, iterations in results.items():
        outputs = {out: np.concatenate([np.asarray(it[out]) for it in iterations]) for out in OUTPUT_NAMES}
        merged.add([outputs], runner_name=runner)
    return merged


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
            merged = _merged(results, require("polygraphy.comparator.struct", extra="export", purpose="equivalence checks"))
            accuracy = comparator.Comparator.compare_accuracy(
                merged, comparisons=[(0, i) for i in range(1, len(runners))], compare_func=_statistics_func()
            )
        except exceptions.PolygraphyException as exc:
            raise ArtifactError(f"equivalence check could not run: {' '.join(str(exc).split())[:300]}") from None
    many = getattr(comparator, "AccuracyResults", None)
    if many is not None and isinstance(accuracy, many):  # newer Polygraphy: one AccuracyResult per compare function
        accuracy = accuracy[0]
    comparisons = []
    for cand in names[1:]:
        (per_output,) = accuracy[(names[0], cand)]
        ref_top1, cand_top1 = (np.asarray(merged[n][0]["logits"]).argmax(1) for n in (names[0], cand))
        diffs = {}
        for out in OUTPUT_NAMES:
            ref, got = (np.asarray(merged[n][0][out]) for n in (names[0], cand))
            agree = float(np.mean(ref.argmax(1) == got.argmax(1))) if ref.shape == got.shape else 0.0
            bounds = tolerance.bounds_of(out)
            result = per_output.get(out)
            if result is None:  # Polygraphy skips an output it cannot compare (e.g. shape mismatch)
                diffs[out] = OutputDiff({stat: math.nan for stat in (*STATISTICS, "max_rel")}, agree, bounds, False)
                continue
            stats = {stat: float(getattr(result, attr)) for stat, attr in STATISTICS.items()}
            stats["max_rel"] = float(result.max_reldiff)
            held = all(stats[stat] <= bound for stat, bound in bounds.items())
            diffs[out] = OutputDiff(stats, agree, bounds, held and agree >= tolerance.top1)
        comparisons.append(Comparison(names[0], cand, int(sizes.sum()), diffs, ref_top1, cand_top1))
    return EquivalenceReport(tolerance, tuple(comparisons))
