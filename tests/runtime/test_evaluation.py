"""Evaluation: labeled-folder scans, the confusion matrix by hand, and accuracy against the backend itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from symnets_deploy.errors import UsageError
from symnets_deploy.evaluation import Evaluation, evaluate_artifact, scan_labeled_folder, summarize

CLASSES = ("circle", "square", "triangle")
#: Keys the JSON output promises (README and the export side rely on them).
JSON_KEYS = {"accuracy", "per_class", "confusion", "class_names", "images", "failed", "top_k", "top_k_accuracy"}


def reference(onnx_path: Path, folder: Path):
    """Independently of the code under test: labels from folder names, probabilities from the
    ONNX Runtime backend on the one preprocessing, in one batch. Returns (card, paths, labels, probs)."""
    pytest.importorskip("onnxruntime")
    from symnets_deploy.backends import OrtBackend
    from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch

    with OrtBackend(onnx_path, device="cpu") as backend:
        card = backend.card()
        pairs = [(p, card.class_names.index(d.name)) for d in sorted(folder.iterdir()) for p in sorted(d.iterdir()) if p.suffix in (".png", ".jpg")]
        crops = [preprocess_image(p, PreprocessConfig.from_card(card)) for p, _ in pairs]
        probs = backend.infer(to_batch(crops))["probs"]
    return card, [p for p, _ in pairs], np.array([label for _, label in pairs]), probs


def write_image(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


# -- summarize: exact numbers on hand-made arrays -------------------------------------------------
def test_summarize_hand_made_confusion_and_per_class() -> None:
    names = ("a", "b", "c", "d")  # d has no images
    failed = [{"path": "x.jpg", "error": "x.jpg: cannot decode"}]
    result = summarize([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 1, 0], names, failed=failed, topk_hits=[1, 1, 1, 1, 1, 0], top_k=2)
    assert result.confusion == ((2, 1, 0, 0), (0, 2, 0, 0), (1, 0, 0, 0), (0, 0, 0, 0))
    assert (result.images, result.correct, result.accuracy) == (6, 4, 4 / 6)
    assert (result.top_k, result.top_k_accuracy) == (2, 5 / 6)
    assert result.per_class == {
        "a": {"accuracy": 2 / 3, "images": 3, "correct": 2},
        "b": {"accuracy": 1.0, "images": 2, "correct": 2},
        "c": {"accuracy": 0.0, "images": 1, "correct": 0},
    }
    assert result.failed == tuple(failed)
    data = json.loads(json.dumps(result.to_dict()))
    assert JSON_KEYS <= set(data)
    assert data["confusion"] == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert data["class_names"] == list(names) and data["failed"] == failed


def test_summarize_top1_defaults_and_empty_input() -> None:
    result = summarize(np.array([2, 1]), np.array([2, 0]), CLASSES)
    assert (result.accuracy, result.top_k, result.top_k_accuracy) == (0.5, 1, 0.5)
    empty = summarize([], [], CLASSES, failed=[{"path": "p.jpg", "error": "bad"}])
    assert (empty.images, empty.accuracy, empty.per_class) == (0, None, {})
    assert "n/a" in empty.table()


@pytest.mark.parametrize(
    "labels, predicted, kwargs, words",
    [
        ([0, 1], [0], {}, "differ in shape"),
        ([[0, 1]], [[0, 1]], {}, "1-D"),
        ([0.5], [0], {}, "1-D array of class indices"),
        ([0, 3], [0, 1], {}, "outside 0..2"),
        ([0], [-1], {}, "outside 0..2"),
        ([0, 1], [0, 1], {"top_k": 2}, "needs topk_hits"),
        ([0, 1], [0, 1], {"topk_hits": [True], "top_k": 2}, "topk_hits has shape"),
    ],
)
def test_summarize_rejects_bad_shapes(labels, predicted, kwargs, words) -> None:
    with pytest.raises(UsageError, match=words):
        summarize(labels, predicted, CLASSES, **kwargs)


def test_table_is_readable_at_100_columns() -> None:
    names = ("back_pack", "bike", "calculator", "headphones", "keyboard", "laptop_computer", "monitor", "mouse", "mug", "projector")
    labels = np.arange(500) % 10
    result = summarize(labels, np.where(np.arange(500) % 7 == 0, (labels + 1) % 10, labels), names)
    lines = result.table().splitlines()
    assert lines[0].startswith("accuracy ") and all(len(line) <= 100 for line in lines)
    assert sum(line.strip().startswith(names) for line in lines) == 20  # per-class lines + matrix rows
    assert "laptop_" in lines[-11] and "back_pack" in lines[-10]  # abbreviated header, full row names


def test_save_writes_json_atomically(tmp_path: Path) -> None:
    out = summarize([0], [0], CLASSES).save(tmp_path / "sub" / "eval.json")
    assert json.loads(out.read_text())["accuracy"] == 1.0
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]


# -- scan_labeled_folder ----------------------------------------------------------------------------
def test_scan_is_sorted_recursive_and_accepts_a_subset(tmp_path: Path) -> None:
    for rel in ("triangle/b.png", "triangle/a.jpg", "triangle/deeper/c.png", "circle/z.png", "circle/.hidden.png"):
        write_image(tmp_path / rel)
    (tmp_path / "circle" / "notes.txt").write_text("not an image")
    assert scan_labeled_folder(tmp_path, CLASSES) == [
        (tmp_path / "circle/z.png", 0),
        (tmp_path / "triangle/a.jpg", 2),
        (tmp_path / "triangle/b.png", 2),
        (tmp_path / "triangle/deeper/c.png", 2),
    ]


def test_scan_usage_errors_name_the_folder(tmp_path: Path) -> None:
    def refused(folder: Path, words: str) -> str:
        with pytest.raises(UsageError, match=words) as info:
            scan_labeled_folder(folder, CLASSES)
        message = str(info.value)
        assert str(folder) in message and "\n" not in message and info.value.exit_code == 2
        return message

    refused(tmp_path / "missing", "no such folder")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no class folders")
    write_image(tmp_path / "loose" / "img.png")
    refused(tmp_path / "loose", "directly in the folder.*<class>/<image>")
    (tmp_path / "textonly" / "circle").mkdir(parents=True)
    (tmp_path / "textonly" / "circle" / "notes.txt").write_text("x")
    refused(tmp_path / "textonly", "no images")
    for name in ("circle", "dog", "cat"):
        write_image(tmp_path / "unknown" / name / "1.png")
    message = refused(tmp_path / "unknown", "cat, dog are not classes")
    assert "valid: circle, square, triangle" in message


# -- evaluate_artifact on a real ONNX model ----------------------------------------------------------
def test_accuracy_and_confusion_equal_the_backends_argmax(tiny_onnx: Path, shapes_root: Path) -> None:
    folder = shapes_root / "sketches"
    card, paths, labels, probs = reference(tiny_onnx, folder)
    result = evaluate_artifact(tiny_onnx, folder, top_k=2, batch_size=4, device="cpu")
    predicted = probs.argmax(axis=1)
    expected = np.zeros((3, 3), dtype=int)
    for true, pred in zip(labels, predicted):
        expected[true, pred] += 1
    assert result.class_names == card.class_names and result.failed == ()
    assert result.images == len(paths) == 18
    assert np.array_equal(result.matrix, expected)
    assert result.accuracy == pytest.approx(np.mean(predicted == labels))
    top2 = np.argsort(-probs, axis=1)[:, :2]
    assert result.top_k_accuracy == pytest.approx(np.mean((top2 == labels[:, None]).any(axis=1)))
    assert (result.artifact, result.data_dir) == (str(tiny_onnx), str(folder))


@pytest.mark.parametrize("shift, accuracy", [(0, 1.0), (1, 0.0)])
def test_folders_built_from_the_models_own_answers(tiny_onnx: Path, shapes_root: Path, tmp_path: Path, shift: int, accuracy: float) -> None:
    # File each image under the class the backend predicts (shift 0) or the next one (shift 1):
    # the accuracy is then known to be exactly 1 or 0 whatever the tiny model learned.
    card, paths, _, probs = reference(tiny_onnx, shapes_root / "sketches")
    for i, (path, pred) in enumerate(zip(paths, probs.argmax(axis=1))):
        target = tmp_path / card.class_names[(pred + shift) % 3] / f"{i:02d}{path.suffix}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
    result = evaluate_artifact(tiny_onnx, tmp_path, device="cpu")
    assert result.accuracy == accuracy and result.images == len(paths)
    assert all(row["correct"] == (row["images"] if shift == 0 else 0) for row in result.per_class.values())


def test_corrupt_image_is_counted_in_failed_only(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(shapes_root / "sketches", tmp_path / "labeled")
    clean = evaluate_artifact(tiny_onnx, folder, device="cpu")
    (folder / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8 these bytes are not a JPEG")
    result = evaluate_artifact(tiny_onnx, folder, device="cpu")
    assert len(result.failed) == 1 and result.failed[0]["path"] == str(folder / "circle" / "corrupt.jpg")
    assert result.failed[0]["error"]
    assert (result.images, result.confusion, result.accuracy) == (clean.images, clean.confusion, clean.accuracy)


def test_a_subset_of_classes(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    shutil.copytree(shapes_root / "sketches" / "square", tmp_path / "square")
    result = evaluate_artifact(tiny_onnx, tmp_path, device="cpu")
    assert isinstance(result, Evaluation) and list(result.per_class) == ["square"]
    assert result.matrix.shape == (3, 3) and result.matrix[1].sum() == result.images == 6
