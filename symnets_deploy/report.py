"""What adaptation did, drawn: training curves, target confusion matrix, t-SNE before/after, one HTML page.

``symnets report RUN_DIR`` reads only files of the run folder (``metrics.jsonl``,
``target_evaluation.json``, ``features_before.npz`` / ``features_after.npz``, ``summary.json``,
``config.json`` and the artifacts' ``*.verify.json``), so it runs without torch, on any copy of
a run. matplotlib and scikit-learn come with the ``[report]`` extra and are imported here only.
A figure whose input is missing (a run made with ``--no-report``, or stopped early) is left out
and the page says why.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import UsageError
from symnets_deploy.evaluation import Evaluation

#: Inputs the run folder provides (written by ``symnets train``).
METRICS, EVALUATION, BEFORE, AFTER = "metrics.jsonl", "target_evaluation.json", "features_before.npz", "features_after.npz"
DPI = 110  # readable at 100 % zoom without being heavy


def extra_installed() -> bool:
    """Whether the ``[report]`` extra is there (without importing it): training draws the report only then."""
    from symnets_deploy._optional import is_available

    return is_available("matplotlib") and is_available("sklearn")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed), and sklearn present."""
    require("sklearn", extra="report", purpose="the run report's t-SNE")
    matplotlib = require("matplotlib", extra="report", purpose="drawing the run report")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
        plt.close(fig)  # pyplot keeps every figure until closed: a long session would grow without bound
    return path


def plot_curves(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Every loss term, lambda, both learning rates, target accuracies and images/s over iterations."""
    plt = pyplot()
    steps = [r for r in records if "lr_head" in r]
    evals = [r for r in records if "acc_ct" in r]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    it = [r["iteration"] for r in steps]
    losses = axes[0][0]
    for key in sorted({k for r in steps for k in r if k.startswith(("cls_", "feat_"))}):
        losses.plot(it, [r.get(key, np.nan) for r in steps], label=key, linewidth=1.6 if key.endswith("total") else 1.0)
    losses.set(title="Loss terms (eq. 5-10, averaged per log window)", xlabel="iteration", ylabel="loss")
    losses.legend(fontsize=7, ncol=2)
    schedule = axes[0][1]
    lines = schedule.plot(it, [r["lambda"] for r in steps], color="tab:purple", label="lambda (confusion weight, left)")
    schedule.set(title="Schedules", xlabel="iteration", ylabel="lambda", ylim=(0, 1.05))
    rates = schedule.twinx()  # learning rates are ~100x smaller than lambda: their own axis
    lines += rates.plot(it, [r["lr_head"] for r in steps], color="tab:orange", label="lr of the head (right)")
    lines += rates.plot(it, [r["lr_backbone"] for r in steps], color="tab:green", linestyle="--", label="lr of G (right)")
    rates.set(ylabel="learning rate", ylim=(0, None))
    schedule.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    accuracy = axes[1][0]
    for head in ("ct", "cs", "paired"):
        accuracy.plot([r["iteration"] for r in evals], [100 * r[f"acc_{head}"] for r in evals], marker="o", label={"ct": "Ct", "cs": "Cs", "paired": "paired (eq. 10)"}[head])
    accuracy.set(title="Target accuracy (whole target domain)", xlabel="iteration", ylabel="accuracy (%)", ylim=(0, 100))
    accuracy.legend(fontsize=8)
    speed = axes[1][1]
    speed.plot(it, [r["images_per_s"] for r in steps], color="tab:gray")
    speed.set(title="Training throughput", xlabel="iteration", ylabel="images/s")
    last = max([r["iteration"] for r in records], default=1)
    for ax in (losses, schedule, accuracy, speed):
        ax.set_xlim(0, last * 1.02)  # one iteration axis for all four, even with a single evaluation
    return _save(fig, path)


def plot_confusion(evaluation: Evaluation, path: Path, title: str = "Target confusion matrix") -> Path:
    """Confusion matrix (rows: true class, normalised per row, counts written in) and per-class accuracy."""
    plt = pyplot()
    names, matrix = evaluation.class_names, evaluation.matrix
    k = len(names)
    side = max(5.0, 0.45 * k + 3)
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * side + 1, side), gridspec_kw={"width_ratios": [1.2, 1]})
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = left.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    left.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class", title=f"{title} ({_percent(evaluation.accuracy)} overall)")
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

    x = np.concatenate([features["source"], features["target"]]).astype(np.float32)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=0).fit_transform(x)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(x)


def plot_tsne(after: dict[str, np.ndarray], before: Optional[dict[str, np.ndarray]], class_names: Sequence[str], path: Path) -> Path:
    """t-SNE of G's features, coloured by domain and by class; before adaptation (if known) beside after."""
    plt = pyplot()
    panels = [("before adaptation (starting backbone)", before), ("after adaptation", after)] if before is not None else [("after adaptation", after)]
    fig, axes = plt.subplots(2, len(panels), figsize=(6.2 * len(panels), 11), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
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
        for c, name in enumerate(class_names):
            for marker in ("o", "^"):
                pick = (labels == c) & (markers == marker)
                if pick.any():
                    by_class.scatter(*xy[pick].T, s=10, color=cmap(c % cmap.N), marker=marker, alpha=0.75, label=name if marker == "o" else None)
        by_class.set(title=f"{when}: by class (o source, ^ target)", xticks=[], yticks=[])
        by_class.legend(fontsize=7, ncol=2, markerscale=1.5)
    return _save(fig, path)


@dataclass(frozen=True)
class Report:
    """Where the report went: the HTML page and each figure (None when its input was missing)."""

    html: Path
    figures: dict[str, Optional[Path]]
    missing: dict[str, str]


def write_run_report(run: str | Path, out: Optional[str | Path] = None) -> Report:
    """Draw the figures of a run folder and write ``report.html`` beside them.

    Args:
        run: the run folder written by ``symnets train``.
        out: where to write (default: ``RUN/report``).

    Raises:
        UsageError: ``run`` is not a run folder (no ``metrics.jsonl``).
        MissingDependencyError: the ``[report]`` extra is not installed (exit code 4).
    """
    run = Path(run)
    if not (run / METRICS).is_file():
        raise UsageError(f"{run}: not a run folder of 'symnets train' (no {METRICS})")
    pyplot()  # the extra, before any file is written
    out = Path(out) if out is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for line in (run / METRICS).read_text(encoding="utf-8").splitlines() if line.strip()]
    config = _json(run / "config.json") or {}
    figures: dict[str, Optional[Path]] = {}
    missing: dict[str, str] = {}
    figures["curves"] = plot_curves(records, out / "curves.png")
    evaluation = _evaluation(run / EVALUATION)
    if evaluation is not None:
        figures["confusion"] = plot_confusion(evaluation, out / "confusion.png")
    else:
        missing["confusion"] = f"no {EVALUATION} (the run did not finish)"
    after, before = _features(run / AFTER), _features(run / BEFORE)
    if after is not None and evaluation is not None:
        figures["tsne"] = plot_tsne(after, before, evaluation.class_names, out / "tsne.png")
    else:
        missing["tsne"] = f"no {AFTER} (run made with --no-report, or not finished)"
    page = _html(run, out, config, _json(run / "summary.json"), figures, missing, _artifacts(run))
    path = atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return Report(path, figures, missing)


def _json(path: Path) -> Optional[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _evaluation(path: Path) -> Optional[Evaluation]:
    data = _json(path)
    if data is None:
        return None
    return Evaluation(tuple(data["class_names"]), tuple(tuple(row) for row in data["confusion"]), artifact=data.get("artifact"), data_dir=data.get("data_dir"))


def _features(path: Path) -> Optional[dict[str, np.ndarray]]:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _artifacts(run: Path) -> list[dict[str, Any]]:
    """One row per ``*.verify.json`` in the run folder: the artifact, its precision and its check."""
    rows = []
    for report in sorted(run.glob("*.verify.json")):
        data = _json(report) or {}
        accuracy = data.get("accuracy") or {}
        candidate = next((v for k, v in accuracy.items() if k not in ("torch",)), None) if accuracy else None
        rows.append({
            "artifact": data.get("artifact", report.name[: -len(".verify.json")]), "present": (run / data.get("artifact", "")).is_file(),
            "precision": data.get("precision", "?"), "format": data.get("format", "?"), "passed": data.get("passed"),
            "images": data.get("num_images"), "accuracy": candidate["accuracy"] if candidate else None, "report": report.name,
        })
    return rows


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _html(run, out, config, summary, figures, missing, artifacts) -> str:
    title = f"{config.get('source', '?')} → {config.get('target', '?')}" if config else run.name
    summary_rows = []
    if summary:
        summary_rows = [
            ("target accuracy (Ct)", _percent(summary.get("target_acc_ct"))), ("target accuracy (Cs)", _percent(summary.get("target_acc_cs"))),
            ("target accuracy (paired)", _percent(summary.get("target_acc_paired"))), ("method", summary.get("method")),
            ("backbone", summary.get("backbone")), ("iterations", summary.get("iterations")), ("training seconds", summary.get("seconds")),
            ("images/s", summary.get("images_per_s")), ("device", summary.get("device")), ("step", summary.get("step", "eager")),
            ("target images", summary.get("target_images")),
        ]
    captions = {
        "curves": "Training curves: every loss term, the schedules of lambda and of both learning rates, the accuracy of Cs, Ct and the paired classifier on the whole target domain, and images/s.",
        "confusion": "The deployed classifier on the whole target domain: confusion matrix (rows: true class) and accuracy per class.",
        "tsne": "t-SNE of G's features for a fixed sample of source and target images (paper Fig. 3): adaptation should mix the domains and separate the classes.",
    }
    parts = []
    for name, caption in captions.items():
        if figures.get(name) is not None:
            src = html.escape(Path(figures[name]).relative_to(out).as_posix())
            parts.append(f'<figure><img src="{src}" alt="{name}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        else:
            parts.append(f"<p class=note>{html.escape(name)}: not drawn, {html.escape(missing.get(name, 'no data'))}.</p>")
    if artifacts:
        head = "<tr><th>artifact</th><th>format</th><th>precision</th><th>check</th><th>images</th><th>accuracy</th><th>report</th></tr>"
        body = "".join(
            f"<tr><td>{html.escape(a['artifact'])}{'' if a['present'] else ' (missing)'}</td><td>{html.escape(a['format'])}</td><td>{html.escape(a['precision'])}</td>"
            f"<td>{'passed' if a['passed'] else 'FAILED'}</td><td>{a['images']}</td><td>{_percent(a['accuracy'])}</td><td>{html.escape(a['report'])}</td></tr>"
            for a in artifacts
        )
        artifact_html = f"<table>{head}{body}</table>"
    else:
        artifact_html = "<p class=note>No exported artifacts in the run folder (symnets export, or symnets train --export).</p>"
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#555}.note{color:#a05a00}"
    )
    config_html = _table(sorted(config.items())) if config else "<p class=note>no config.json</p>"
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>SymNets run {html.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>SymNets run: {html.escape(title)}</h1><p>{html.escape(str(run))}</p>"
        f"<h2>Summary</h2>{_table(summary_rows) if summary_rows else '<p class=note>no summary.json (the run did not finish)</p>'}"
        f"<h2>Figures</h2>{''.join(parts)}<h2>Artifacts</h2>{artifact_html}<h2>Configuration</h2>{config_html}</body></html>\n"
    )


def write_evaluation_figure(evaluation: Evaluation, out: str | Path) -> Path:
    """``symnets evaluate --report DIR``: the confusion-matrix figure of an artifact on labeled images."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(evaluation.artifact).name if evaluation.artifact else "model"
    return plot_confusion(evaluation, out / "confusion.png", title=f"{name} on {Path(evaluation.data_dir).name if evaluation.data_dir else 'labeled images'}")
