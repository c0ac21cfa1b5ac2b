"""The run report of labeled and unlabeled targets, from run folders written by hand (no torch, no training)."""

from __future__ import annotations

import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
from PIL import Image  # noqa: E402

from symnets_deploy.report import NO_TARGET_LABELS, write_run_report  # noqa: E402
from symnets_deploy.report_figures import spearman  # noqa: E402

CLASSES = ["circle", "square", "triangle"]
EVAL_AT = [10, 20, 30, 40, 50]
ACC_CT = [0.40, 0.55, 0.55, 0.70, 0.65]  # a tie, so average ranks matter
V_MEASURE = [0.30, 0.50, 0.45, 0.60, 0.62]
COLLAPSE = "IM diversity 0.210 < 0.5: target predictions concentrate on few classes"


def _scores(i: int, *, held_out: bool) -> dict:
    return {
        "source_val_acc_ct": 0.8 + 0.02 * i if held_out else None, "source_val_acc_cs": 0.78 + 0.02 * i if held_out else None,
        "target_mean_confidence": 0.5 + 0.05 * i, "target_entropy": None if i == 2 else 1.0 - 0.1 * i,  # a diverged evaluation
        "im_diversity": 0.9 - 0.01 * i, "class_shares": [0.3, 0.3, 0.4], "cs_ct_agreement": 0.7 + 0.05 * i,
        "v_measure": V_MEASURE[i], "smallest_class_share": 0.3, "information_maximization": 0.4, "snd": 2.0,
        "target_images": 24, "source_val_images": 6 if held_out else 0,
    }


def _write_run(run: Path, *, labeled: bool, held_out: bool = True, finished: bool = True) -> Path:
    run.mkdir(parents=True)
    config = {"source": "photos", "target": "sketches", "dataset": None, "target_labels": "use", "iterations": 50}
    (run / "config.json").write_text(json.dumps(config))
    lines = []
    for it in range(1, 51):
        lines.append({"iteration": it, "lambda": it / 50, "lr_head": 0.01 / it, "lr_backbone": 0.01 / it, "cls_total": 3.0 - it / 50,
                      "feat_total": 1.0 + it / 100, "images_per_s": 1000.0 + it})
        if it in EVAL_AT:
            i = EVAL_AT.index(it)
            accs = {"acc_ct": ACC_CT[i], "acc_cs": ACC_CT[i] - 0.05, "acc_paired": ACC_CT[i] + 0.01} if labeled else {}
            lines.append({"iteration": it, **accs, "label_free": _scores(i, held_out=held_out), "collapse": [COLLAPSE] if i == 4 else []})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if finished:
        final = ACC_CT[-1] if labeled else None
        summary = {
            "target_acc_ct": final, "target_acc_cs": final, "target_acc_paired": final, "iterations": 50, "method": "symnets",
            "backbone": "tiny", "num_classes": 3, "target_images": 24, "device": "cpu", "step": "eager",
            "target_labels": "class folders" if labeled else "none", "source_val_images": 6 if held_out else 0,
            "label_free": _scores(4, held_out=held_out), "warnings": [f"target predictions collapsed: {COLLAPSE}"],
        }
        (run / "summary.json").write_text(json.dumps(summary))
    rng = np.random.default_rng(0)
    target_labels = np.repeat(np.arange(3), 8) if labeled else np.full(24, -1, dtype=np.int64)
    for name in ("features_before.npz", "features_after.npz"):
        np.savez_compressed(run / name, source=rng.normal(size=(30, 16)).astype(np.float16), source_labels=np.repeat(np.arange(3), 10),
                            target=rng.normal(size=(24, 16)).astype(np.float16), target_labels=target_labels)
    if labeled and finished:
        (run / "target_evaluation.json").write_text(json.dumps({"class_names": CLASSES, "confusion": [[6, 1, 1], [2, 5, 1], [1, 2, 5]]}))
    return run


def _is_drawn_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 400 and image.height >= 300, path
        assert np.asarray(image.convert("L")).std() > 5, f"{path} is blank"


def _references(page: Path) -> list[str]:
    return re.findall(r'src="([^"]+)"', page.read_text(encoding="utf-8"))


def test_spearman_uses_average_ranks_and_is_undefined_for_few_or_constant_points() -> None:
    assert spearman([1, 2, 2, 4], [10, 20, 30, 40]) == pytest.approx(3 / math.sqrt(10))  # ranks 1, 2.5, 2.5, 4 by hand
    assert spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert spearman([1, 2, None, 3, float("nan")], [5, 6, 7, 9, 1]) == pytest.approx(1.0)  # incomplete pairs dropped
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None


def test_a_labeled_run_draws_both_label_free_figures_and_calls_accuracy_an_oracle(tmp_path: Path) -> None:
    stats = pytest.importorskip("scipy.stats")
    run = _write_run(tmp_path / "run", labeled=True)
    report = write_run_report(run)
    assert set(report.figures) == {"curves", "label_free", "scores_vs_accuracy", "confusion", "tsne"} and report.missing == {}
    for path in report.figures.values():
        _is_drawn_png(path)
    assert sorted(_references(report.html)) == sorted(p.name for p in report.figures.values())
    text = report.html.read_text(encoding="utf-8")
    rho = stats.spearmanr(V_MEASURE, ACC_CT).statistic  # an implementation that is not ours
    assert f"<td>V-measure</td><td>{rho:.3f}</td><td>5</td>" in text
    # target entropy is null at one evaluation: four pairs are left
    entropy = [1.0 - 0.1 * i for i in range(5)]
    rho_entropy = stats.spearmanr([e for i, e in enumerate(entropy) if i != 2], [a for i, a in enumerate(ACC_CT) if i != 2]).statistic
    assert f"<td>target entropy (nats)</td><td>{rho_entropy:.3f}</td><td>4</td>" in text
    assert "oracle" in text and "from class folders, used for evaluation only" in text
    assert "65.00 %" in text  # the final target accuracy (Ct)
    assert "<p class=warn>warning: target predictions collapsed" in text


def test_an_unlabeled_run_draws_label_free_scores_and_says_why_accuracy_is_absent(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", labeled=False, held_out=False)
    report = write_run_report(run, tmp_path / "out")
    assert set(report.figures) == {"curves", "label_free", "tsne"}
    for path in report.figures.values():
        _is_drawn_png(path)
    assert "scores_vs_accuracy" not in report.figures and "no labels" in report.missing["scores_vs_accuracy"]
    assert report.missing["confusion"] == NO_TARGET_LABELS
    assert not (tmp_path / "out" / "scores_vs_accuracy.png").exists()
    text = report.html.read_text(encoding="utf-8")
    assert "confusion: not drawn, the target has no labels (target labels: none)." in text
    assert "scores_vs_accuracy: not drawn, the target has no labels" in text
    assert f"<p class=warn>warning: target predictions collapsed: {html.escape(COLLAPSE)}</p>" in text
    assert "<th>target labels</th><td>none</td>" in text
    for head in ("Ct", "Cs", "paired"):
        assert f"<th>target accuracy ({head})</th><td>n/a (no target labels)</td>" in text
    assert "<th>source-val accuracy Ct (label-free)</th><td>n/a (no held-out source split)</td>" in text
    assert "<th>V-measure (label-free)</th><td>0.620</td>" in text
    assert "NaN" not in text and "None" not in text and "nan %" not in text


def test_an_unfinished_unlabeled_run_knows_from_its_metrics_that_the_target_has_no_labels(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", labeled=False, finished=False)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"iteration": 51, "lambda": 0.')  # torn by a kill in the middle of its write
    report = write_run_report(run)
    assert report.missing["confusion"] == NO_TARGET_LABELS and "no labels" in report.missing["scores_vs_accuracy"]
    text = report.html.read_text(encoding="utf-8")
    assert "no summary.json (the run did not finish)" in text
    assert f"<p class=warn>warning: target predictions collapsed at iteration 50 (latest evaluation; the run did not finish): {html.escape(COLLAPSE)}</p>" in text


def test_the_report_of_an_unlabeled_run_needs_no_torch(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", labeled=False)
    # a finder that refuses torch (not sys.modules['torch'] = None: scipy, under sklearn, takes that for an imported torch)
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from symnets_deploy.report import write_run_report\n"
            f"print(sorted(write_run_report({str(run)!r}).figures), 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['curves', 'label_free', 'tsne'] False"
