"""Choosing a checkpoint without target labels: the candidates of run folders, ranked (``symnets select``).

Every kept checkpoint (``RUN/checkpoints/iter_*.pt``, from ``symnets train --keep-every N``) is a
candidate, or a finished run's ``last.pt`` when it kept none. Its scores are the evaluation
record of its iteration in ``RUN/metrics.jsonl``, so choosing reads JSON only (no torch, no
images). The rule is ``SELECTION_RULE``; target accuracy, where the target has class
folders, is carried along as an oracle column and never enters the choice.

    from symnets_deploy.selection import select

    selection = select(["runs/source_only", "runs/lr0.01", "runs/lr0.003"])
    print(selection.table())
    selection.save("chosen/selection.json")
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from symnets_deploy import label_free
from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import UsageError
from symnets_deploy.run_files import CHECKPOINT, CONFIG, KEPT_DIR, LABELED, METRICS, SPLIT, SUMMARY, UNLABELED
from symnets_deploy.run_reading import read_metrics

#: How ``selection_order`` ranks checkpoints, for README and selection.json.
SELECTION_RULE = ("Checkpoints are ranked by the mean of their rank in source-val Ct accuracy and their rank in V-measure "
                  "between k-means clusters and predicted target classes (Ericsson et al. 2023; V-measure rank alone without "
                  "a source-val split); collapsed checkpoints go last; ties go to the higher source-val accuracy, then the "
                  "earlier checkpoint.")

_KEPT = re.compile(r"^iter_(\d+)\.pt$")

#: Table columns: (header, label-free key, format).
COLUMNS = (
    ("src-val Ct", "source_val_acc_ct", "pct"), ("V-measure", "v_measure", "f3"), ("confidence", "target_mean_confidence", "f3"),
    ("entropy", "target_entropy", "f3"), ("IM div", "im_diversity", "f3"), ("min share", "smallest_class_share", "f3"),
    ("Cs/Ct agree", "cs_ct_agreement", "pct"),
)


@dataclass(frozen=True)
class Candidate:
    """One checkpoint that may be chosen.

    Attributes:
        run: its run folder; method: ``symnets`` or ``source-only``.
        iteration: the training iteration of its weights.
        checkpoint: the ``.pt`` file holding them.
        scores: its label-free scores (``label_free.label_free_scores``; non-finite values are None).
        collapse: reasons its target predictions collapsed (empty: none); a collapsed candidate ranks last.
        oracle_target_acc: target accuracy of Ct from class folders, 0..1, or None: shown, never used to choose.
        selection_score: mean rank (1 = best) by ``SELECTION_RULE``; rank: its place, 1 = chosen.
    """

    run: str
    method: str
    iteration: int
    checkpoint: str
    scores: dict[str, Any]
    collapse: list[str] = field(default_factory=list)
    oracle_target_acc: Optional[float] = None
    selection_score: Optional[float] = None
    rank: Optional[int] = None


@dataclass(frozen=True)
class Selection:
    """The ranked candidates (best first) and what the comparison rests on."""

    candidates: list[Candidate]
    notes: list[str]

    @property
    def chosen(self) -> Candidate:
        return self.candidates[0]

    @property
    def has_target_labels(self) -> bool:
        """Whether every candidate's target had class folders (the oracle column is then shown)."""
        return all(c.oracle_target_acc is not None for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        """``selection.json``: the rule, the choice, every candidate with its scores, and notes."""
        return {
            "rule": SELECTION_RULE, "chosen": asdict(self.chosen), "candidates": [asdict(c) for c in self.candidates],
            "target_labels": f"{LABELED} (oracle_target_acc: not used for the choice)" if self.has_target_labels else UNLABELED,
            "notes": list(self.notes),
        }

    def save(self, path: str | Path) -> Path:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def table(self) -> str:
        """One line per candidate, best first; the chosen one marked ``*``."""
        headers = ["rank", "run", "iter", *(c[0] for c in COLUMNS), "score"]
        if self.has_target_labels:
            headers.append("target acc Ct (oracle, not used for the choice)")
        rows = []
        for c in self.candidates:
            row = [f"{'*' if c.rank == 1 else ''}{c.rank}", Path(c.run).name + (" (collapsed)" if c.collapse else ""), str(c.iteration)]
            row += [_format(c.scores.get(key), fmt) for _, key, fmt in COLUMNS]
            row.append(_format(c.selection_score, "f2"))
            if self.has_target_labels:
                row.append(_format(c.oracle_target_acc, "pct"))
            rows.append(row)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines + [f"rule: {SELECTION_RULE}", *(f"note: {n}" for n in self.notes)])


def _format(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return {"pct": f"{100 * value:.2f}%", "f3": f"{value:.3f}", "f2": f"{value:.2f}"}[fmt]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the {what} ({type(exc).__name__})") from None


def _evaluations(run: Path) -> dict[int, dict[str, Any]]:
    """Evaluation records (with ``label_free``) of a run by iteration; a torn or malformed line is skipped."""
    return {record["iteration"]: record for record in read_metrics(run / METRICS).records if "label_free" in record}


def find_candidates(run: str | Path) -> list[Candidate]:
    """The candidates of one run folder, in iteration order.

    Raises:
        UsageError: not a run folder, or a run with no scored checkpoint (made before label-free
            scores existed, or stopped before its first evaluation).
    """
    run = Path(run)
    if not (run / CONFIG).is_file() or not (run / METRICS).is_file():
        raise UsageError(f"{run}: not a run folder of 'symnets train' (no {CONFIG} or {METRICS})")
    config = _read_json(run / CONFIG, "run configuration")
    evaluations = _evaluations(run)
    files = sorted((int(m.group(1)), p) for p in (run / KEPT_DIR).glob("iter_*.pt") if (m := _KEPT.match(p.name)))
    if not files and (run / SUMMARY).is_file() and (run / CHECKPOINT).is_file():
        files = [(int(config.get("iterations", 0)), run / CHECKPOINT)]
    candidates = [
        Candidate(str(run), config.get("method", "?"), iteration, str(path), evaluations[iteration]["label_free"],
                  list(evaluations[iteration].get("collapse", [])), evaluations[iteration].get("acc_ct"))
        for iteration, path in files if iteration in evaluations
    ]
    if not candidates:
        raise UsageError(f"{run}: no scored checkpoint (train with --keep-every N, and let the run finish or reach a kept iteration)")
    return candidates


def _same_target(runs: Sequence[Path]) -> None:
    targets = {}
    for run in runs:
        config = _read_json(run / CONFIG, "run configuration")
        targets[str(run)] = (str(Path(config.get("data_root", "")) / str(config.get("target", ""))), config.get("source"))
    if len(set(targets.values())) > 1:
        listed = "; ".join(f"{run}: {source} -> {target}" for run, (target, source) in targets.items())
        raise UsageError(f"the runs adapt to different domains, so their scores do not compare ({listed})")


def _split_note(runs: Sequence[Path]) -> list[str]:
    splits = {json.dumps(_read_json(run / SPLIT, "source split").get("held_out")) if (run / SPLIT).is_file() else "none" for run in runs}
    if len(splits) > 1:
        return ["the runs hold out different source images (another --seed or --source-val): each source-val accuracy is on its own run's held-out images"]
    return []


def select(runs: Sequence[str | Path]) -> Selection:
    """Score and rank every candidate of ``runs`` by ``SELECTION_RULE``, best first.

    Args:
        runs: run folders of ``symnets train`` with the same source and target (a source-only
            run is an ordinary candidate).

    Returns:
        The ``Selection``; ``chosen`` is its first candidate.

    Raises:
        UsageError: no runs, a folder that is not a run or has no scored checkpoint, or runs of
            different domains.
    """
    folders = list(dict.fromkeys(Path(r) for r in runs))
    if not folders:
        raise UsageError("give at least one run folder")
    candidates = [c for run in folders for c in find_candidates(run)]
    _same_target(folders)
    scores = [c.scores for c in candidates]
    order = selection_order(scores, [bool(c.collapse) for c in candidates])
    means = selection_scores(scores)
    ranked = [
        Candidate(**{**asdict(candidates[i]), "selection_score": means[i], "rank": place + 1})
        for place, i in enumerate(order)
    ]
    return Selection(ranked, _split_note(folders))


def _ranks(values: Sequence[Optional[float]]) -> list[float]:
    """Rank 1 = highest; ties share their average rank; None/NaN tie after all numbers."""
    finite = [label_free.is_finite(v) for v in values]
    numbers = np.array([float(v) if ok else 0.0 for v, ok in zip(values, finite)])
    ranks = np.empty(len(values))
    if any(finite):
        ranks[finite] = _average_ranks(-numbers[finite])
    missing = len(values) - sum(finite)
    ranks[[not ok for ok in finite]] = sum(finite) + (missing + 1) / 2.0
    return ranks.tolist()


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` ascending; tied values share their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def spearman(x: Sequence[Optional[float]], y: Sequence[Optional[float]]) -> Optional[float]:
    """Spearman rank correlation: Pearson's r of the ranks, tied values given their average rank.

    Args:
        x, y: equally long sequences; a pair where either value is None or not finite is dropped.

    Returns:
        -1..1, or None when fewer than 3 pairs remain or either side is constant (undefined).
    """
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if label_free.is_finite(a) and label_free.is_finite(b)]
    if len(pairs) < 3:
        return None
    rx, ry = (_average_ranks(np.array(side)) for side in zip(*pairs))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / norm) if norm > 0 else None


def selection_scores(candidates: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per candidate, the mean of its ranks by ``source_val_acc_ct`` and by ``v_measure`` (``SELECTION_RULE``).

    Args:
        candidates: ``label_free_scores`` dicts, one per checkpoint.

    Returns:
        One float per candidate, lower = better (1.0 = best on both); the V-measure rank alone when no candidate
        has a finite ``source_val_acc_ct`` (runs without a source-val split).
    """
    acc = [c.get("source_val_acc_ct") for c in candidates]
    vm = _ranks([c.get("v_measure") for c in candidates])
    return [(a + b) / 2.0 for a, b in zip(_ranks(acc), vm)] if any(map(label_free.is_finite, acc)) else vm


def selection_order(candidates: Sequence[Mapping[str, Any]], collapsed: Optional[Sequence[bool]] = None) -> list[int]:
    """Candidate indices, best first, by ``SELECTION_RULE``.

    Args:
        candidates: ``label_free_scores`` dicts, one per checkpoint.
        collapsed: per candidate, whether the collapse alarm fired; those go after all others.

    Returns:
        A permutation of ``range(len(candidates))``: non-collapsed first, then lower selection score, then higher
        ``source_val_acc_ct`` (missing last), then lower index.

    Raises:
        ValueError: ``collapsed`` and ``candidates`` differ in length.
    """
    flags = [False] * len(candidates) if collapsed is None else [bool(f) for f in collapsed]
    if len(flags) != len(candidates):
        raise ValueError(f"collapsed has {len(flags)} entries for {len(candidates)} candidates")
    score = selection_scores(candidates)
    acc = [c.get("source_val_acc_ct") for c in candidates]
    return sorted(range(len(candidates)), key=lambda i: (flags[i], score[i], -acc[i] if label_free.is_finite(acc[i]) else math.inf, i))
