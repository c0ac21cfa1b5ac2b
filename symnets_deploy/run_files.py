"""The files of a run folder, named once: ``symnets train`` writes them; ``report``, ``select`` and ``info`` read them.

Torch-free, so the runtime's readers and train/'s writers share one spelling of every name
(DESIGN.md section 2, "Run folder"); and the one spelling of what a run's target labels were.
"""

from __future__ import annotations

CONFIG = "config.json"  # the resolved TrainConfig, run id and world size
CHECKPOINT = "last.pt"  # the resume point: weights, optimizer, RNG, card
METRICS = "metrics.jsonl"  # step records and evaluation records (``label_free``)
SUMMARY = "summary.json"  # the final TrainResult
SPLIT = "source_split.json"  # the held-out source images, by path relative to the source folder
TARGET_EVALUATION = "target_evaluation.json"  # confusion matrix of the deployed head (labeled targets only)
FEATURES_BEFORE, FEATURES_AFTER = "features_before.npz", "features_after.npz"  # the report's t-SNE
KEPT_DIR = "checkpoints"  # weights kept every --keep-every iterations: the candidates of ``symnets select``
REPORT_DIR = "report"
TRAIN_LOCK = ".train.lock"  # the pid of the process training in the folder (one writer per run)

#: The figures and page ``symnets report`` writes into ``REPORT_DIR``.
REPORT_FILES = ("report.html", "curves.png", "label_free.png", "scores_vs_accuracy.png", "confusion.png", "tsne.png")

#: Artifacts ``train --export`` writes into the run folder (``symnets export``'s default names), each with
#: its ``.verify.json`` (or ``.rejected.verify.json``) and, for a plan, its ``.plan.json`` sidecar.
ARTIFACTS = tuple(f"model{infix}{suffix}" for infix in ("", ".fp16", ".int8") for suffix in (".onnx", ".plan"))
#: The files that travel beside an artifact: its check report, a rejected check's report, a plan's sidecar.
ARTIFACT_COMPANIONS = (".verify.json", ".rejected.verify.json", ".json")

#: Every file a run writes at its top level (``--overwrite`` removes exactly these, and what ``KEPT_DIR`` and
#: ``REPORT_DIR`` hold of ours: a replaced run leaves nothing of its own behind and deletes nothing else).
FILES = (
    CONFIG, CHECKPOINT, METRICS, SUMMARY, SPLIT, TARGET_EVALUATION, FEATURES_BEFORE, FEATURES_AFTER,
    *ARTIFACTS, *(name + companion for name in ARTIFACTS for companion in ARTIFACT_COMPANIONS if not (companion == ".json" and name.endswith(".onnx"))),
)

#: ``summary.json``'s and the card's ``target_labels``: the target had class folders (used for evaluation only), or none.
LABELED, UNLABELED = "class folders", "none"


def target_labels_line(labeled: bool) -> str:
    """The line every run prints when it starts, saying whether target labels exist and what they are for."""
    return "target labels: from class folders, used for evaluation only" if labeled else "target labels: none"
