"""What adaptation did, drawn: training curves, label-free scores, confusion matrix, t-SNE, one HTML page.

``symnets report RUN_DIR`` reads only files of the run folder (``metrics.jsonl``,
``target_evaluation.json``, ``features_before.npz`` / ``features_after.npz``, ``summary.json``,
``config.json`` and the artifacts' ``*.verify.json``), so it runs without torch, on any copy of
a run. matplotlib and scikit-learn come with the ``[report]`` extra and are imported only when
drawing (``symnets_deploy.report_figures``). A figure whose input is missing (a run made with
``--no-report``, stopped early, or a target without labels) is left out and the page says why; so is
one whose input is damaged (``symnets_deploy.run_reading`` reads the run files without raising).

Target labels, where the target has class folders, are for evaluation only: the page calls target
accuracy an oracle, and shows how well each label-free score tracked it over the run.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import UsageError
from symnets_deploy.evaluation import Evaluation, percent
from symnets_deploy.run_files import CONFIG, FEATURES_AFTER as AFTER, FEATURES_BEFORE as BEFORE, METRICS, SUMMARY, TARGET_EVALUATION as EVALUATION, UNLABELED
from symnets_deploy.run_reading import Problems, artifact_rows, checked_summary, metrics_records, read_evaluation, read_features, read_json_object
from symnets_deploy.report_figures import (  # noqa: F401  (pyplot: `symnets evaluate` imports it from here)
    SCORES, plot_confusion, plot_curves, plot_label_free, plot_scores_vs_accuracy, plot_tsne, pyplot, spearman, values,
)

#: How to read the t-SNE for SymNets (paper section 4.3, "Feature Visualization", and Figure 3): by class, not by domain.
TSNE_CAPTION = (
    "t-SNE of G's features for a fixed sample of source and target images, before adaptation (the starting backbone) and after; "
    "top: by domain (source blue, target red), bottom: by class (source o, target ^). The paper's Figure 3 (A -> W) is coloured by "
    "domain too, and is read by its clusters: with SymNets 'the shared categories across domains are aligned while different "
    "categories are well distinguished'. Read this figure the same way, by class: after adaptation each class's target points "
    "should gather near the source points of the same class, and the classes should lie apart. Whether the two domains look "
    "mixed or apart says little on its own: t-SNE keeps neighbours, not the distances between groups, and SymNets aligns the "
    "domains class by class, so a high target accuracy can come with source and target clusters side by side. Target classes "
    "are coloured only where the target has class folders (used for evaluation only); an unlabeled target is grey: then look "
    "for compact target groups, about one per class, each near one source class."
)

#: Why a figure that needs target labels is absent for an unlabeled target.
NO_TARGET_LABELS = "the target has no labels (target labels: none)"


def extra_installed() -> bool:
    """Whether the ``[report]`` extra is there (without importing it): training draws the report only then."""
    from symnets_deploy._optional import is_available

    return is_available("matplotlib") and is_available("sklearn")


@dataclass(frozen=True)
class Report:
    """Where the report went.

    Attributes:
        html: the page, ``OUT/report.html``.
        figures: each drawn figure by name (``curves``, ``label_free``, ``scores_vs_accuracy``,
            ``confusion``, ``tsne``) and its PNG.
        missing: each figure not drawn, by name, and why (a sentence the page shows too).
        problems: one line per run file that is there but damaged (not JSON, a torn line, a truncated
            ``.npz``, NaN features...): the file, what is wrong and what the report does without it.
    """

    html: Path
    figures: dict[str, Optional[Path]]
    missing: dict[str, str]
    problems: tuple[str, ...] = ()


def write_run_report(run: str | Path, out: Optional[str | Path] = None, *, compare: Sequence[str | Path] = ()) -> Report:
    """Draw the figures of a run folder and write ``report.html`` beside them.

    Args:
        run: the run folder written by ``symnets train`` (labeled or unlabeled target, finished or not).
        out: where to write (default: ``RUN/report``).
        compare: other run folders of the same source and target (the demo's source-only baseline), shown
            in one table beside this run: method, target accuracy and label-free scores of each ``summary.json``.

    Returns:
        The page and the figures drawn; ``scores_vs_accuracy`` and ``confusion`` are missing for a
        target without labels, with the reason. A damaged run file costs only the figures that need
        it, and is named in ``problems``.

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
    problems, finished = Problems(), (run / SUMMARY).is_file()  # a damaged summary.json is still a finished run's
    records = metrics_records(run / METRICS, problems)
    config = problems.read(read_json_object, run / CONFIG, "the configuration is left out") or {}
    summary = checked_summary(problems.read(read_json_object, run / SUMMARY, "the summary table and the run's warnings are left out"), run / SUMMARY, problems)
    scored = [r for r in records if "label_free" in r]
    labeled = _target_labeled(summary, [r for r in records if "acc_ct" in r or "label_free" in r])
    oracle = [r for r in scored if "acc_ct" in r]
    correlations = score_correlations(oracle)
    figures: dict[str, Optional[Path]] = {}
    missing: dict[str, str] = {}
    skipped = "".join(f"; {why}" for why in [problems.why(run / METRICS)] if why)  # what a torn or garbage line may have cost
    sparse = few_evaluations(records, config, summary)
    if records:
        figures["curves"] = plot_curves(records, out / "curves.png", accuracy_note=sparse)
    else:
        missing["curves"] = f"no record in {METRICS} (the run stopped before its first log){skipped}"
    if scored:
        figures["label_free"] = plot_label_free(scored, out / "label_free.png")
    else:
        missing["label_free"] = f"no evaluation with label-free scores in {METRICS} (a run made before they existed, or stopped before its first evaluation){skipped}"
    if labeled is False:
        missing["scores_vs_accuracy"] = f"{NO_TARGET_LABELS}, so there is no target accuracy to compare the scores with"
    elif oracle:
        figures["scores_vs_accuracy"] = plot_scores_vs_accuracy(oracle, correlations, out / "scores_vs_accuracy.png")
    else:
        missing["scores_vs_accuracy"] = f"no evaluation with both target accuracy and label-free scores in {METRICS}{skipped}"
    evaluation = problems.read(read_evaluation, run / EVALUATION, "confusion not drawn")
    if evaluation is not None:
        figures["confusion"] = plot_confusion(evaluation, out / "confusion.png")
    elif labeled is False or problems.why(run / EVALUATION):
        missing["confusion"] = problems.why(run / EVALUATION) or NO_TARGET_LABELS
    else:
        missing["confusion"] = f"no {EVALUATION} ({'missing from the run folder' if finished else 'the run did not finish'})"
    after = problems.read(read_features, run / AFTER, "tsne not drawn")
    before = problems.read(read_features, run / BEFORE, "the t-SNE shows the features after adaptation only") if after is not None else None
    class_names = evaluation.class_names if evaluation is not None else tuple((summary or {}).get("class_names") or ())
    if after is not None:
        figures["tsne"] = plot_tsne(after, before, class_names, out / "tsne.png")
    else:
        missing["tsne"] = problems.why(run / AFTER) or f"no {AFTER} (run made with --no-report, or not finished)"
    artifacts = artifact_rows(run, problems)
    compared = [(Path(other), checked_summary(problems.read(read_json_object, Path(other) / SUMMARY, "left out of the comparison"),
                                              Path(other) / SUMMARY, problems)) for other in compare]
    facts = _Facts(labeled, correlations, class_names, _warnings(summary, scored, finished), problems.lines(), sparse, compared)
    page = _html(run, out, config, summary, figures, missing, artifacts, facts)
    path = atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return Report(path, figures, missing, facts.problems)


def score_correlations(evals: Sequence[dict[str, Any]]) -> dict[str, tuple[Optional[float], int]]:
    """How each label-free score ranked the evaluations compared with target Ct accuracy.

    Args:
        evals: evaluation records with ``acc_ct`` and ``label_free``.

    Returns:
        ``{key: (rho, points)}`` for each key of ``SCORES``: ``spearman`` of the score against
        ``acc_ct`` (None when undefined) and how many evaluations had both values finite.
    """
    accuracy = values(evals, "acc_ct")
    out = {}
    for key, _, _ in SCORES:
        score = values(evals, key)
        out[key] = (spearman(score, accuracy), int((np.isfinite(score) & np.isfinite(accuracy)).sum()))
    return out


def _target_labeled(summary: Optional[dict[str, Any]], evals: list[dict[str, Any]]) -> Optional[bool]:
    """True/False where the run says whether the target had labels; None when it cannot tell yet."""
    if summary and "target_labels" in summary:
        return summary["target_labels"] != UNLABELED
    if any("acc_ct" in r for r in evals):
        return True
    return False if evals else None  # evaluations without accuracy: the target had no labels


def _warnings(summary: Optional[dict[str, Any]], scored: list[dict[str, Any]], finished: bool) -> list[str]:
    """The run's end-of-run warnings, or the latest collapse alarm of a run that did not finish (or whose summary is damaged)."""
    if summary is not None:
        return [str(w) for w in summary.get("warnings") or []]
    last = scored[-1] if scored else {}
    if last.get("collapse"):
        when = f"{SUMMARY} could not be read" if finished else "the run did not finish"
        return [f"target predictions collapsed at iteration {last['iteration']} (latest evaluation; {when}): {'; '.join(map(str, last['collapse']))}"]
    return []


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _score(value: Any, scale: float) -> str:
    if not _finite(value):
        return "n/a"
    return f"{100 * value:.2f} %" if scale == 100.0 else f"{value:.3f}"


def _table(rows: list[tuple[str, Any]]) -> str:
    # None (JSON null) reads "n/a": a page should never show Python's spelling of a missing value
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape('n/a' if v is None else str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


@dataclass(frozen=True)
class _Facts:
    """What the page says beyond the files it shows: whether target labels exist, the Spearman table, warnings, damaged
    files, why the accuracy curves have few points, and the runs compared with this one."""

    labeled: Optional[bool]
    correlations: dict[str, tuple[Optional[float], int]]
    class_names: Sequence[str]
    warnings: list[str]
    problems: tuple[str, ...] = ()
    few_evaluations: Optional[str] = None  # why the accuracy curves have few points (``few_evaluations``)
    compared: Sequence[tuple[Path, Optional[dict[str, Any]]]] = ()  # other runs and their summaries


def _summary_rows(summary: dict[str, Any], config: dict[str, Any], facts: _Facts) -> list[tuple[str, Any]]:
    if facts.labeled:
        labels = "from class folders, used for evaluation only"
    elif facts.labeled is False:
        labels = UNLABELED + (" (--target-labels ignore: class folders present, not used)" if config.get("target_labels") == "ignore" else "")
    else:
        labels = "unknown"
    no_acc = "n/a (no target labels)" if facts.labeled is False else "n/a"
    rows: list[tuple[str, Any]] = [("target labels", labels)]
    rows += [(f"target accuracy ({name}, {_every_target_image(summary)})", percent(summary[key])) if _finite(summary.get(key)) else
             (f"target accuracy ({name})", no_acc) for name, key in (("Ct", "target_acc_ct"), ("Cs", "target_acc_cs"), ("paired", "target_acc_paired"))]
    scores = summary.get("label_free") or {}
    if scores:
        no_split = not (summary.get("source_val_images") or scores.get("source_val_images"))
        rows += [(f"{label.replace(' (%)', '')} (label-free)", "n/a (no held-out source split)" if key.startswith("source_val") and no_split
                  else _score(scores.get(key), scale)) for key, label, scale in SCORES]
        shares = scores.get("class_shares") or []
        names = list(facts.class_names) if len(facts.class_names) == len(shares) else [f"class {c}" for c in range(len(shares))]
        rows.append(("predicted class shares on the target (label-free)", ", ".join(f"{n} {_score(s, 100.0)}" for n, s in zip(names, shares)) or "n/a"))
    rows += [
        ("method", summary.get("method")), ("backbone", summary.get("backbone")), ("iterations", summary.get("iterations")),
        ("training seconds", summary.get("seconds")), ("images/s", summary.get("images_per_s")), ("device", summary.get("device")),
        ("step", summary.get("step", "eager")), ("target images", summary.get("target_images")),
        ("held-out source images", summary.get("source_val_images", 0)),
    ]
    return rows


def _every_target_image(summary: dict[str, Any]) -> str:
    """Which images a run's target accuracy counts: all of them (an artifact's check counts only its check images)."""
    count = summary.get("target_images")
    return f"all {count} target images" if type(count) is int else "all target images"


def few_evaluations(records: Sequence[dict[str, Any]], config: dict[str, Any], summary: Optional[dict[str, Any]]) -> Optional[str]:
    """Why the accuracy curves hold few points (fewer than 3 evaluations), for the panel and the page; None otherwise.

    Without ``--eval-every`` a run evaluates only as often as a small share of its compute allows
    (``train.evaluate.default_eval_every``), which on a short run or a large target is at the end only.
    """
    at = sorted({r["iteration"] for r in records if "acc_ct" in r or "label_free" in r})
    if len(at) >= 3:
        return None
    counted = f"{len(at)} evaluation{'s' if len(at) != 1 else ''}" + (f" (iteration {', '.join(map(str, at))})" if at else "")
    asked = config.get("eval_every")
    if asked:
        why = f"--eval-every {asked} over {config.get('iterations', '?')} iterations"
    else:
        every = (summary or {}).get("eval_every")
        why = ("without --eval-every, a run evaluates only as often as a small share of its compute allows"
               + (": this one at the end only" if every == 0 else ""))
    return f"{counted}: {why}; give --eval-every N for more points"


def _comparison(run: Path, summary: Optional[dict[str, Any]], compared: Sequence[tuple[Path, Optional[dict[str, Any]]]]) -> str:
    """This run beside other runs (one column each): method, target accuracy on every target image, label-free scores."""
    if not compared:
        return ""
    runs = [(run, summary or {}), *((path, other or {}) for path, other in compared)]
    rows: list[tuple[str, Any]] = [
        ("method", lambda s: s.get("method")), ("iterations", lambda s: s.get("iterations")),
        (f"target accuracy (Ct, {_every_target_image(summary or {})}; labels used to evaluate only)", lambda s: percent(s.get("target_acc_ct"))),
        *((f"{label.replace(' (%)', '')} (label-free)", lambda s, key=key, scale=scale: _score((s.get("label_free") or {}).get(key), scale))
          for key, label, scale in SCORES),
    ]
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(path.name)}{' (this run)' if i == 0 else ''}</th>" for i, (path, _) in enumerate(runs)) + "</tr>"
    body = "".join(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{html.escape(str(cell(s) if s else 'n/a (no summary.json)'))}</td>" for _, s in runs) + "</tr>"
                   for name, cell in rows)
    return f"<h2>Compared with other runs</h2><table>{head}{body}</table>"


def _config_rows(config: dict[str, Any], summary: Optional[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The configuration as saved, where an option that applies on some machines only says what ran."""
    rows = sorted(config.items())
    if "cuda_graph" in config:
        ran = f"; the step that ran: {summary['step']}" if summary and "step" in summary else ""
        rows = [(k, f"{v} (applies on CUDA in one process only{ran})" if k == "cuda_graph" else v) for k, v in rows]
    return rows


def _correlation_table(correlations: dict[str, tuple[Optional[float], int]]) -> str:
    head = "<tr><th>label-free score</th><th>Spearman ρ with target accuracy Ct (oracle, evaluation only)</th><th>evaluations</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{'n/a' if rho is None else f'{rho:.3f}'}</td><td>{n}</td></tr>"
        for key, label, _ in SCORES for rho, n in [correlations.get(key, (None, 0))]
    )
    return f"<table>{head}{body}</table>"


def _html(run, out, config, summary, figures, missing, artifacts, facts: _Facts) -> str:
    title = f"{config.get('source', '?')} → {config.get('target', '?')}" if config else run.name
    summary_rows = _summary_rows(summary, config, facts) if summary else []
    captions = {
        "curves": "Training curves: every loss term, the schedules of lambda and of both learning rates, accuracy (Cs, Ct and the paired classifier "
                  "on the whole target domain where it has labels; Ct on the held-out source split), and images/s."
                  + (f" Accuracy: {facts.few_evaluations}." if facts.few_evaluations else ""),
        "label_free": "Label-free scores at each evaluation: they need no target label, and are what 'symnets select' chooses by. "
                      "A red x marks an evaluation that raised the collapse alarm.",
        "scores_vs_accuracy": "Each label-free score against target accuracy (Ct), one point per evaluation, coloured by iteration, with the Spearman "
                              "rank correlation. Target accuracy is an oracle: it needs the target labels, which are used for evaluation only.",
        "confusion": "The deployed classifier on the whole target domain: confusion matrix (rows: true class) and accuracy per class.",
        "tsne": TSNE_CAPTION,
    }
    parts = []
    for name, caption in captions.items():
        if figures.get(name) is not None:
            src = html.escape(Path(figures[name]).relative_to(out).as_posix())
            parts.append(f'<figure><img src="{src}" alt="{name}"><figcaption>{html.escape(caption)}</figcaption></figure>')
            if name == "scores_vs_accuracy":
                parts.append(_correlation_table(facts.correlations))
        else:
            parts.append(f"<p class=note>{html.escape(name)}: not drawn, {html.escape(missing.get(name, 'no data'))}.</p>")
    if artifacts:
        head = ("<tr><th>artifact</th><th>format</th><th>precision</th><th>head</th><th>check</th><th>check images</th>"
                "<th>accuracy on the check images</th><th>report</th></tr>")
        body = "".join(
            f"<tr><td>{html.escape(a['artifact'])}{'' if a['present'] else ' (missing)'}</td><td>{html.escape(a['format'])}</td><td>{html.escape(a['precision'])}</td>"
            f"<td>{html.escape(a['head'])}</td><td>{('passed' if a['passed'] else 'FAILED') if a['readable'] else 'unreadable'}</td>"
            f"<td>{html.escape(str(a['images']) if a['images'] is not None else 'n/a')}</td><td>{percent(a['accuracy'])}</td><td>{html.escape(a['report'])}</td></tr>"
            for a in artifacts
        )
        every = f" ({_every_target_image(summary)})" if summary else ""
        artifact_html = (f"<table>{head}{body}</table><p>An artifact's accuracy is on its check images only (a sample of the target domain, "
                         f"evenly spread: 'symnets export --max-images'); the summary's target accuracy is on every target image{html.escape(every)}, "
                         "so the two can differ for the same model.</p>")
    else:
        artifact_html = "<p class=note>No exported artifacts in the run folder (symnets export, or symnets train --export).</p>"
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#555}.note{color:#a05a00}"
        ".warn{background:#fdecea;border-left:6px solid #c62828;color:#7f1d1d;font-weight:600;padding:0.6em 1em}"
    )
    warnings = "".join(f"<p class=warn>warning: {html.escape(w)}</p>" for w in facts.warnings)
    config_html = _table(_config_rows(config, summary)) if config else f"<p class=note>{_absent(run, CONFIG, 'no config.json')}</p>"
    damaged = "".join(f"<li>{html.escape(line)}</li>" for line in facts.problems)
    damaged = f"<h2>Damaged run files</h2><ul class=note>{damaged}</ul>" if damaged else ""
    no_summary = _absent(run, SUMMARY, "no summary.json (the run did not finish)")
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>SymNets run {html.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>SymNets run: {html.escape(title)}</h1><p>{html.escape(str(run))}</p>{warnings}{damaged}"
        f"<h2>Summary</h2>{_table(summary_rows) if summary_rows else f'<p class=note>{no_summary}</p>'}{_comparison(run, summary, facts.compared)}"
        f"<h2>Figures</h2>{''.join(parts)}<h2>Artifacts</h2>{artifact_html}<h2>Configuration</h2>{config_html}</body></html>\n"
    )


def _absent(run: Path, name: str, otherwise: str) -> str:
    """Why a run file's part of the page is empty: the file is damaged (listed above), or ``otherwise``."""
    return html.escape(f"{name} could not be read (see the damaged run files above)" if (run / name).is_file() else otherwise)


def write_evaluation_figure(evaluation: Evaluation, out: str | Path) -> Path:
    """``symnets evaluate --report DIR``: the confusion-matrix figure of an artifact on labeled images.

    Args:
        evaluation: the artifact's evaluation (class names and confusion counts).
        out: the folder to write ``confusion.png`` into (created).

    Returns:
        The PNG's path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(evaluation.artifact).name if evaluation.artifact else "model"
    return plot_confusion(evaluation, out / "confusion.png", title=f"{name} on {Path(evaluation.data_dir).name if evaluation.data_dir else 'labeled images'}")
