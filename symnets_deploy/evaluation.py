"""Accuracy and confusion matrix of an exported artifact on labeled images, without PyTorch.

    from symnets_deploy.evaluation import evaluate_artifact

    result = evaluate_artifact("model.onnx", "webcam/", top_k=5)   # webcam/<class>/<image>
    print(result.table())
    result.save("eval.json")

``summarize`` is the pure part (integer labels and predictions in, ``Evaluation`` out), so
code that already holds logits (the export check) reports accuracy the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import UsageError
from symnets_deploy.inputs import scan_folder
from symnets_deploy.preprocess import IMAGE_EXTENSIONS

#: Keys of ``Evaluation.to_dict()``, in order.
JSON_KEYS = ("accuracy", "top_k", "top_k_accuracy", "images", "correct", "per_class", "class_names", "confusion", "failed", "artifact", "data_dir", "monitoring")

#: The folder layout ``scan_labeled_folder`` expects, for error messages.
LAYOUT = "expected DATA_DIR/<class>/<image>, one sub-folder per class named as in the model card"


def scan_labeled_folder(folder: str | Path, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    """Labeled images of a folder laid out ``<class>/<image>``.

    Each class folder is scanned recursively with ``inputs.scan_folder`` (image extensions only,
    hidden files skipped). Class folders may be any subset of ``class_names``; class folders
    without images are allowed.

    Args:
        folder: the root holding one sub-folder per class.
        class_names: the model's classes in index order (the card's ``class_names``).

    Returns:
        ``(path, class index)`` pairs, sorted by class folder name, then by path.

    Raises:
        UsageError: the folder is missing, has no class folders, has images directly in it,
            has folders that are not classes of the model, or holds no images at all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder ({LAYOUT})")
    loose = scan_folder(folder, recursive=False)
    if loose:
        raise UsageError(f"{folder}: {len(loose)} images lie directly in the folder (e.g. {loose[0].name}); {LAYOUT}")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise UsageError(f"{folder}: no class folders; {LAYOUT}")
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [d.name for d in class_dirs if d.name not in index]
    if unknown:
        raise UsageError(f"{folder}: folders {', '.join(unknown)} are not classes of the model (valid: {', '.join(class_names)})")
    items = [(path, index[d.name]) for d in class_dirs for path in scan_folder(d)]
    if not items:
        raise UsageError(f"{folder}: no images in its class folders (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return items


@dataclass(frozen=True)
class Evaluation:
    """Top-1 (and top-k) accuracy and the confusion matrix of one model on labeled images.

    Attributes:
        class_names: the model's K classes in index order.
        confusion: K x K counts; row = true class, column = predicted class.
        failed: ``{"path", "error"}`` for each image that could not be predicted; these
            are in no count or accuracy.
        top_k: the k of ``top_k_accuracy`` (1: same as ``accuracy``).
        top_k_correct: images whose true class is among the k most probable.
        artifact: the evaluated artifact, when known.
        data_dir: the labeled folder, when known.
        monitoring: what predict-time monitoring said of the same images without their labels
            (``Predictor.monitoring_summary()``), when the artifact carries a reference profile:
            the estimate beside the true accuracy shows how far the estimate can be trusted.
    """

    class_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    failed: tuple[dict[str, str], ...] = ()
    top_k: int = 1
    top_k_correct: int = 0
    artifact: Optional[str] = None
    data_dir: Optional[str] = None
    monitoring: Optional[dict[str, Any]] = None

    @property
    def matrix(self) -> np.ndarray:
        """``confusion`` as an int64 array [K,K]."""
        return np.array(self.confusion, dtype=np.int64).reshape(len(self.class_names), len(self.class_names))

    @property
    def images(self) -> int:
        """Images predicted successfully (the sum of ``confusion``)."""
        return int(self.matrix.sum())

    @property
    def correct(self) -> int:
        """Images whose most probable class is the true one (the trace of ``confusion``)."""
        return int(np.trace(self.matrix))

    @property
    def accuracy(self) -> Optional[float]:
        """Top-1 accuracy in 0..1 over the predicted images; None when there are none."""
        return self.correct / self.images if self.images else None

    @property
    def top_k_accuracy(self) -> Optional[float]:
        """Fraction in 0..1 of predicted images whose true class is in the top ``top_k``."""
        return self.top_k_correct / self.images if self.images else None

    @property
    def per_class(self) -> dict[str, dict[str, Any]]:
        """``class -> {"accuracy", "images", "correct"}`` for each class that has images, in index order."""
        rows, diagonal = self.matrix.sum(axis=1), np.diag(self.matrix)
        return {
            name: {"accuracy": int(diagonal[i]) / int(rows[i]), "images": int(rows[i]), "correct": int(diagonal[i])}
            for i, name in enumerate(self.class_names)
            if rows[i]
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, keys in ``JSON_KEYS`` order (tuples become lists; no accuracy: None)."""
        data = {key: getattr(self, key) for key in JSON_KEYS}
        data.update(class_names=list(self.class_names), confusion=[list(row) for row in self.confusion], failed=[dict(f) for f in self.failed])
        return data

    def save(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as indented JSON, atomically.

        Args:
            path: the JSON file; its folder is created if needed.

        Returns:
            ``path``.
        """
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def table(self, width: int = 100) -> str:
        """Readable text: the overall line, one line per class with images, the confusion matrix.

        Args:
            width: aim for lines at most this long; column headers are abbreviated to fit,
                or replaced by class indices when even abbreviations do not.

        Returns:
            Lines joined by newlines (no trailing newline).
        """
        top = f"; top-{self.top_k} {percent(self.top_k_accuracy)}" if self.top_k > 1 else ""
        lines = [f"accuracy {percent(self.accuracy)} ({self.correct}/{self.images} images{top}), {len(self.failed)} failed"]
        if self.monitoring is not None:
            m = self.monitoring
            lines.append(f"estimated without labels {percent(m['estimated_accuracy'])} (reference {percent(m['reference_estimated_accuracy'])}); "
                         + ("drift: " + "; ".join(m["reasons"]) if m["drift"] else "no drift"))
        label_w = max(len(name) for name in self.class_names)
        for name, row in self.per_class.items():
            lines.append(f"  {name:<{label_w}}  {percent(row['accuracy']):>7}  ({row['correct']}/{row['images']})")
        return "\n".join(lines + _confusion_lines(self, width))


def summarize(
    labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, class_names: Sequence[str], *,
    failed: Sequence[dict[str, str]] = (), topk_hits: Optional[Sequence[bool] | np.ndarray] = None, top_k: int = 1,
) -> Evaluation:
    """The ``Evaluation`` of integer predictions against integer labels.

    Args:
        labels: true class indices, shape [N], each in 0..K-1.
        predicted: most probable class indices, shape [N], each in 0..K-1.
        class_names: the K classes in index order.
        failed: ``{"path", "error"}`` of images that could not be predicted (not in N).
        topk_hits: shape [N] bools, whether each true class is among the ``top_k`` most
            probable; None is allowed only with ``top_k == 1``.
        top_k: the k of ``topk_hits``.

    Returns:
        The ``Evaluation`` (confusion matrix, accuracies, per-class numbers).

    Raises:
        UsageError: shapes differ or are not 1-D, an index out of 0..K-1, no classes, or
            ``top_k > 1`` without ``topk_hits``.
    """
    names = tuple(str(n) for n in class_names)
    if not names:
        raise UsageError("summarize needs at least one class name")
    true, pred = _indices(labels, "labels", len(names)), _indices(predicted, "predicted", len(names))
    if true.shape != pred.shape:
        raise UsageError(f"labels and predicted differ in shape: {true.shape} vs {pred.shape}")
    if topk_hits is None:
        if top_k != 1:
            raise UsageError(f"top_k={top_k} needs topk_hits")
        hits = true == pred
    else:
        hits = np.asarray(topk_hits, dtype=bool)
        if hits.shape != true.shape:
            raise UsageError(f"topk_hits has shape {hits.shape}, expected {true.shape}")
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    confusion = tuple(tuple(int(v) for v in row) for row in matrix)
    return Evaluation(names, confusion, tuple(dict(f) for f in failed), top_k, int(hits.sum()))


def evaluate_artifact(
    artifact: str | Path, folder: str | Path, *, top_k: int = 1, batch_size: int = 16,
    device: str = "auto", provider: Optional[str] = None, threads: int = 0,
) -> Evaluation:
    """Predict every image of a labeled folder with an artifact and score the predictions.

    Args:
        artifact: ``model.onnx`` or ``model.plan`` (with its ``.plan.json`` sidecar).
        folder: labeled images laid out ``<class>/<image>`` (see ``scan_labeled_folder``).
        top_k: also count images whose true class is among the k most probable (capped at K).
        batch_size: images per inference call.
        device: ``auto``, ``cpu`` or ``cuda``.
        provider: ONNX Runtime provider overriding ``device`` (``.onnx`` only).
        threads: inference threads in total (0: one per CPU core).

    Returns:
        The ``Evaluation``; images that fail to decode are listed in ``failed``, not raised.

    Raises:
        UsageError: missing artifact, bad options, or a folder ``scan_labeled_folder`` refuses.
        MissingDependencyError: the backend's extra is not installed.
        ArtifactError: no or invalid card, or outputs that contradict it.
    """
    from symnets_deploy.predictor import Predictor

    with Predictor.load(artifact, device=device, batch_size=batch_size, provider=provider, threads=threads, top_k=top_k) as predictor:
        items = scan_labeled_folder(folder, predictor.class_names)
        predictions = predictor.iter_predict_paths(path for path, _ in items)
        labels, predicted, hits, failed = [], [], [], []
        for (_, label), p in zip(items, predictions):
            if not p.ok:
                failed.append({"path": p.path, "error": p.error})
                continue
            labels.append(label)
            predicted.append(p.index)
            hits.append(predictor.class_names[label] in p.topk_labels)
        result = summarize(labels, predicted, predictor.class_names, failed=failed, topk_hits=hits, top_k=predictor.top_k)
        monitoring = predictor.monitoring_summary()
    return replace(result, artifact=str(artifact), data_dir=str(folder), monitoring=monitoring)


def _indices(values: Sequence[int] | np.ndarray, what: str, k: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise UsageError(f"{what} must be a 1-D array of class indices, got shape {array.shape} and dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= k):
        raise UsageError(f"{what} holds indices outside 0..{k - 1}")
    return array


def percent(value: Any) -> str:
    """A fraction as a percentage with two decimals ("12.50 %"), "n/a" when missing or not finite: one form for every page."""
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _confusion_lines(result: Evaluation, width: int) -> list[str]:
    """The matrix, rows for classes with images; columns headed by abbreviated names or indices."""
    names, matrix = result.class_names, result.matrix
    rows = [i for i in range(len(names)) if matrix[i].sum()]
    label_w = max(len(names[i]) for i in rows) if rows else 0
    digits = len(str(int(matrix.max()))) if matrix.size else 1
    room = min(10, (width - label_w - 3) // len(names) - 1)  # characters per column header
    by_index = room < 4  # too many classes for readable names: head columns with indices
    col_w = max(digits, len(str(len(names) - 1)) if by_index else min(room, max(len(n) for n in names)))
    headers = [str(j) if by_index else names[j][:col_w] for j in range(len(names))]
    label = (lambda i: f"{i} {names[i]}") if by_index else (lambda i: names[i])
    label_w = max([len(label(i)) for i in rows] + [label_w])
    lines = ["confusion matrix (rows: true class, columns: predicted" + (", by class index)" if by_index else ")")]
    lines.append(" " * (label_w + 3) + " ".join(f"{h:>{col_w}}" for h in headers))
    lines.extend(f"  {label(i):<{label_w}} " + " ".join(f"{int(v):>{col_w}}" for v in matrix[i]) for i in rows)
    return lines
