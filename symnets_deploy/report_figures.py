"""The figures of the run report, each drawn from plain records of a run folder (no torch).

``symnets_deploy.report`` reads the run folder and calls these; each function draws one PNG
and returns its path. matplotlib and scikit-learn come with the ``[report]`` extra and are
imported only inside the functions that draw.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.atomic import atomic_write
from symnets_deploy.evaluation import Evaluation
from symnets_deploy.selection import spearman  # noqa: F401  (the report's correlations; tests import it from here)

DPI = 110  # readable at 100 % zoom without being heavy
#: The scalar label-free scores drawn, in order: (key in ``label_free``, label, scale for the axis).
SCORES = (
    ("source_val_acc_ct", "source-val accuracy Ct (%)", 100.0), ("source_val_acc_cs", "source-val accuracy Cs (%)", 100.0),
    ("target_mean_confidence", "target mean confidence", 1.0), ("target_entropy", "target entropy (nats)", 1.0),
    ("im_diversity", "IM diversity", 1.0), ("smallest_class_share", "smallest class share", 1.0),
    ("cs_ct_agreement", "Cs/Ct agreement", 1.0), ("v_measure", "V-measure", 1.0),
)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed), after checking sklearn is there.

    Returns:
        The ``matplotlib.pyplot`` module.

    Raises:
        MissingDependencyError: the ``[report]`` extra (matplotlib, scikit-learn) is not installed.
    """
    require("sklearn", extra="report", purpose="the run report's t-SNE")
    matplotlib = require("matplotlib", extra="report", purpose="drawing the run report")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:  # a constrained layout (shared colorbar) must not be redone by tight_layout
        fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
        plt.close(fig)  # pyplot keeps every figure until closed: a long session would grow without bound
    return path


def values(records: Sequence[dict[str, Any]], key: str, scale: float = 1.0) -> np.ndarray:
    """``record[key]`` (or ``record["label_free"][key]``) of each record times ``scale``, None as NaN.

    Args:
        records: ``metrics.jsonl`` records.
        key: a top-level key (``acc_ct``) or a key of the record's ``label_free`` scores.

    Returns:
        float64 [len(records)]; NaN where the key is absent, null or not finite.
    """
    out = []
    for r in records:
        v = r[key] if key in r else (r.get("label_free") or {}).get(key)
        out.append(float(v) * scale if isinstance(v, (int, float)) and math.isfinite(v) else np.nan)
    return np.array(out, dtype=np.float64)


def _xlim(axes, records: Sequence[dict[str, Any]]) -> None:
    last = max([r["iteration"] for r in records], default=1)
    for ax in axes:
        ax.set_xlim(0, last * 1.02)  # one iteration axis for every panel, even with a single evaluation


def plot_curves(records: Sequence[dict[str, Any]], path: Path, accuracy_note: Optional[str] = None) -> Path:
    """Every loss term, lambda, both learning rates, accuracies and images/s over iterations.

    Args:
        records: ``metrics.jsonl`` records: steps (with ``lr_head``) and evaluations. Without target
            labels (no ``acc_ct``) the accuracy panel shows held-out source accuracy instead.
        path: the PNG to write.
        accuracy_note: written in the accuracy panel: why it holds few points (``report.few_evaluations``).

    Returns:
        ``path``.
    """
    plt = pyplot()
    steps = [r for r in records if "lr_head" in r]
    evals = [r for r in records if "acc_ct" in r or "label_free" in r]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    it = [r["iteration"] for r in steps]
    losses = axes[0][0]
    for key in sorted({k for r in steps for k in r if k.startswith(("cls_", "feat_"))}):
        losses.plot(it, values(steps, key), label=key, linewidth=1.6 if key.endswith("total") else 1.0)
    losses.set(title="Loss terms (eq. 5-10, averaged per log window)", xlabel="iteration", ylabel="loss")
    losses.legend(fontsize=7, ncol=2)
    schedule = axes[0][1]
    lines = schedule.plot(it, values(steps, "lambda"), color="tab:purple", label="lambda (confusion weight, left)")
    schedule.set(title="Schedules", xlabel="iteration", ylabel="lambda", ylim=(0, 1.05))
    rates = schedule.twinx()  # learning rates are ~100x smaller than lambda: their own axis
    lines += rates.plot(it, values(steps, "lr_head"), color="tab:orange", label="lr of the head (right)")
    lines += rates.plot(it, values(steps, "lr_backbone"), color="tab:green", linestyle="--", label="lr of G (right)")
    rates.set(ylabel="learning rate", ylim=(0, None))
    schedule.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    accuracy = axes[1][0]
    at = [r["iteration"] for r in evals]
    labeled = any("acc_ct" in r for r in evals)
    if labeled:
        for head, name in (("ct", "target Ct"), ("cs", "target Cs"), ("paired", "target paired (eq. 10)")):
            accuracy.plot(at, values(evals, f"acc_{head}", 100), marker="o", label=name)
    source_val = values(evals, "source_val_acc_ct", 100)
    if np.isfinite(source_val).any():
        accuracy.plot(at, source_val, marker="s", linestyle="--", color="tab:gray", label="held-out source Ct")
    title = "Accuracy: target (labels for evaluation only), held-out source" if labeled else "Held-out source accuracy (the target has no labels)"
    accuracy.set(title=title, xlabel="iteration", ylabel="accuracy (%)", ylim=(0, 100))
    if accuracy.lines:
        accuracy.legend(fontsize=8)
        if accuracy_note:  # a panel of 1-2 dots per line is no curve: say why, under it
            accuracy.set_xlabel("iteration\n" + textwrap.fill(accuracy_note, 80, break_on_hyphens=False), fontsize=8)
    else:
        accuracy.text(0.5, 0.5, "no target labels and no held-out source split:\nno accuracy to draw", ha="center", va="center", transform=accuracy.transAxes)
    speed = axes[1][1]
    speed.plot(it, values(steps, "images_per_s"), color="tab:gray")
    speed.set(title="Training throughput", xlabel="iteration", ylabel="images/s")
    _xlim((losses, schedule, accuracy, speed), records)
    return _save(fig, path)


def plot_label_free(evals: Sequence[dict[str, Any]], path: Path) -> Path:
    """Each scalar label-free score (``SCORES``) against iterations, one small panel each.

    Args:
        evals: evaluation records of ``metrics.jsonl`` (with ``label_free``; ``collapse`` marks alarms).
        path: the PNG to write.

    Returns:
        ``path``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.8))
    at = np.array([r["iteration"] for r in evals])
    collapsed = np.array([bool(r.get("collapse")) for r in evals], dtype=bool)
    for ax, (key, label, scale) in zip(axes.ravel(), SCORES):
        y = values(evals, key, scale)
        ax.plot(at, y, marker="o", color="tab:blue")
        if (collapsed & np.isfinite(y)).any():
            ax.scatter(at[collapsed], y[collapsed], marker="x", s=60, color="tab:red", zorder=3, label="collapse alarm")
            ax.legend(fontsize=7)
        if not np.isfinite(y).any():
            why = "no held-out source split" if key.startswith("source_val") else "no finite value"
            ax.text(0.5, 0.5, f"n/a ({why})", ha="center", va="center", transform=ax.transAxes, color="tab:gray")
        ax.set(title=label, xlabel="iteration")  # each on its own scale: a 3-point drop must be visible
    _xlim(axes.ravel(), evals)
    fig.suptitle("Label-free scores at each evaluation: none of them needs a target label", fontsize=13)
    return _save(fig, path)


def plot_scores_vs_accuracy(evals: Sequence[dict[str, Any]], correlations: dict[str, tuple[Optional[float], int]], path: Path) -> Path:
    """Each scalar label-free score against target Ct accuracy, one point per evaluation, coloured by iteration.

    Args:
        evals: evaluation records with ``acc_ct`` (target labels exist) and ``label_free``.
        correlations: ``{key: (Spearman rho or None, pairs)}`` for each key of ``SCORES``, put in the panel titles.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(15, 8), layout="constrained")
    at = np.array([r["iteration"] for r in evals])
    accuracy = values(evals, "acc_ct", 100)
    points = None
    for ax, (key, label, scale) in zip(axes.ravel(), SCORES):
        x = values(evals, key, scale)
        points = ax.scatter(x, accuracy, c=at, cmap="viridis", vmin=0, vmax=max(at.max(initial=1), 1), s=28)
        if len(evals) <= 12:  # more labels than that would hide the points
            for xi, yi, i in zip(x, accuracy, at):
                if np.isfinite(xi) and np.isfinite(yi):
                    ax.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        rho, n = correlations.get(key, (None, 0))
        why = "fewer than 3 points" if n < 3 else "constant"
        ax.set(title=f"{label}\nSpearman ρ = {'n/a (' + why + ')' if rho is None else f'{rho:.3f}'}, n = {n}", xlabel=label, ylabel="target accuracy Ct (%)")
        ax.title.set_fontsize(9)
    fig.colorbar(points, ax=axes.ravel().tolist(), label="iteration", shrink=0.8)
    fig.suptitle("Label-free scores against target accuracy (Ct) over the evaluations.\n"
                 "Target accuracy is an oracle: it needs the target labels and is used for evaluation only.", fontsize=12)
    return _save(fig, path)


def plot_confusion(evaluation: Evaluation, path: Path, title: str = "Target confusion matrix") -> Path:
    """Confusion matrix (rows: true class, normalised per row, counts written in) and per-class accuracy.

    Args:
        evaluation: the counts and class names.
        path: the PNG to write.
        title: the matrix panel's title (the overall accuracy is appended).

    Returns:
        ``path``.
    """
    plt = pyplot()
    names, matrix = evaluation.class_names, evaluation.matrix
    k = len(names)
    side = max(5.0, 0.45 * k + 3)
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * side + 1, side), gridspec_kw={"width_ratios": [1.2, 1]})
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = left.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    overall = "n/a" if evaluation.accuracy is None else f"{100 * evaluation.accuracy:.2f} %"
    left.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class", title=f"{title} ({overall} overall)")
    left.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    left.set_yticklabels(names, fontsize=8)
    if k <= 31:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    left.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=left, fraction=0.046, label="fraction of the true class")
    per_class = evaluation.per_class
    shown = [n for n in names if n in per_class]
    right.barh(range(len(shown)), [100 * per_class[n]["accuracy"] for n in shown], color="tab:blue")
    right.set(yticks=range(len(shown)), xlim=(0, 100), xlabel="accuracy (%)", title="Per-class accuracy")
    right.set_yticklabels([f"{n} ({per_class[n]['correct']}/{per_class[n]['images']})" for n in shown], fontsize=8)
    right.invert_yaxis()
    return _save(fig, path)


def _embed(features: dict[str, np.ndarray]) -> np.ndarray:
    """2-D t-SNE of source and target features together (PCA to 50 dimensions first, fixed seed)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    x = np.concatenate([features["source"], features["target"]]).astype(np.float32)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=0).fit_transform(x)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    # One OpenMP thread: on <= 512 points threads gain nothing, and on a busy CPU (the report is drawn at the end
    # of training) every one of t-SNE's ~1000 gradient steps waits at a barrier for a descheduled thread: 2 s became 37 s.
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(x)


def plot_tsne(after: dict[str, np.ndarray], before: Optional[dict[str, np.ndarray]], class_names: Sequence[str], path: Path) -> Path:
    """t-SNE of G's features, coloured by domain and by class; before adaptation (if known) beside after.

    Args:
        after, before: ``features_*.npz`` contents: ``source`` [Ns,D], ``source_labels`` [Ns] int,
            ``target`` [Nt,D], ``target_labels`` [Nt] int, -1 for an unlabeled target (drawn grey).
        class_names: the K classes, index order; a label without a name here is drawn as ``class <index>``
            (a run that did not finish, or whose ``summary.json`` is damaged, has no names outside last.pt).
        path: the PNG to write.

    Returns:
        ``path``.
    """
    plt = pyplot()
    panels = [("before adaptation (starting backbone)", before), ("after adaptation", after)] if before is not None else [("after adaptation", after)]
    fig, axes = plt.subplots(2, len(panels), figsize=(6.2 * len(panels), 11), squeeze=False)
    present = np.unique(np.concatenate([f[key] for f in (after, before) if f is not None for key in ("source_labels", "target_labels")]))
    present = [int(c) for c in present if c >= 0]  # the classes drawn: a damaged file's labels never make a loop over 10^9 classes
    cmap = plt.get_cmap("tab10" if max(len(class_names), present[-1] + 1 if present else 0) <= 10 else "tab20")
    for col, (when, feats) in enumerate(panels):
        xy = _embed(feats)
        n_src = len(feats["source"])
        by_domain, by_class = axes[0][col], axes[1][col]
        by_domain.scatter(*xy[:n_src].T, s=9, c="tab:blue", label=f"source ({n_src})", alpha=0.7)
        by_domain.scatter(*xy[n_src:].T, s=9, c="tab:red", label=f"target ({len(xy) - n_src})", alpha=0.7)
        by_domain.set(title=f"{when}: by domain", xticks=[], yticks=[])
        by_domain.legend(fontsize=8)
        labels = np.concatenate([feats["source_labels"], feats["target_labels"]])
        markers = np.array(["o"] * n_src + ["^"] * (len(xy) - n_src))
        unlabeled = labels < 0  # only target images: the source always has its class folders
        if unlabeled.any():
            by_class.scatter(*xy[unlabeled].T, s=10, color="lightgray", marker="^", alpha=0.75, label="target (no label)")
        for c in present:
            name = class_names[c] if c < len(class_names) else f"class {c}"
            for marker in ("o", "^"):
                pick = (labels == c) & (markers == marker)
                if pick.any():
                    by_class.scatter(*xy[pick].T, s=10, color=cmap(c % cmap.N), marker=marker, alpha=0.75, label=name if marker == "o" else None)
        note = ", grey: the target has no labels" if unlabeled[n_src:].all() and len(xy) > n_src else ""
        by_class.set(title=f"{when}: by class\n(o source, ^ target{note})", xticks=[], yticks=[])
        by_class.legend(fontsize=7, ncol=2, markerscale=1.5)
    return _save(fig, path)
