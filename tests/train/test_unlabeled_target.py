"""Training on a target without labels: label-free scores everywhere, no target accuracy anywhere (issue 16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.errors import UsageError  # noqa: E402
from symnets_deploy.label_free import SCORE_KEYS  # noqa: E402
from symnets_deploy.train.checkpoint import load_checkpoint  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.trainer import train  # noqa: E402

ITERATIONS = 6


@pytest.fixture(scope="module")
def data_root(shapes_root, tmp_path_factory) -> Path:
    """The shapes domains plus ``sketches_flat``: the same target images without class folders, named so they sort alike."""
    root = tmp_path_factory.mktemp("unlabeled")
    for domain in ("photos", "sketches"):
        shutil.copytree(shapes_root / domain, root / domain)
    flat = root / "sketches_flat"
    flat.mkdir()
    for path in sorted((root / "sketches").rglob("*.*")):
        shutil.copy2(path, flat / f"{path.parent.name}_{path.name}")
    return root


def _config(data_root: Path, out: Path, target: str, **overrides) -> TrainConfig:
    values = dict(source="photos", target=target, data_root=str(data_root), backbone="tiny", iterations=ITERATIONS, batch_size=4,
                  image_size=32, device="cpu", seed=1, out=str(out), log_every=1, eval_every=3, threads=1, report=False)
    return TrainConfig(**{**values, **overrides})


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def flat_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flat_run")
    train(_config(data_root, out, "sketches_flat", keep_every=3))
    return out


def test_an_unlabeled_target_trains_and_scores_without_any_target_accuracy(flat_run, data_root):
    summary = json.loads((flat_run / "summary.json").read_text())
    assert summary["target_labels"] == "none"
    assert summary["target_acc_ct"] is None and summary["target_acc_cs"] is None and summary["target_acc_paired"] is None
    assert set(SCORE_KEYS) <= set(summary["label_free"])
    assert 0 <= summary["label_free"]["v_measure"] <= 1 and summary["label_free"]["source_val_acc_ct"] is not None
    assert summary["target_images"] == len(list((data_root / "sketches_flat").iterdir()))
    assert not (flat_run / "target_evaluation.json").exists()  # a confusion matrix needs labels
    evaluations = [r for r in _records(flat_run) if "label_free" in r]
    assert [r["iteration"] for r in evaluations] == [3, ITERATIONS]
    assert not any(key.startswith("acc_") for r in _records(flat_run) for key in r)
    card = load_checkpoint(flat_run / "last.pt")["card"]
    assert card["metrics"]["target_labels"] == "none" and card["metrics"]["label_free"] == summary["label_free"]
    assert not any(key.startswith("target_acc") for key in card["metrics"])


def test_the_held_out_source_images_are_recorded_and_never_trained_on(flat_run, data_root):
    split = json.loads((flat_run / "source_split.json").read_text())
    summary = json.loads((flat_run / "summary.json").read_text())
    assert len(split["held_out"]) == summary["source_val_images"] == 3  # one of six per class at 0.1
    assert split["source_images"] == 18
    # The training source was decoded (and cached) without them: the cache entry holds 15 images.
    import os

    cached = sorted(Path(os.environ["SYMNETS_CACHE_DIR"]).glob("photos-*.npz"), key=lambda p: p.stat().st_mtime)
    with np.load(cached[-1]) as f:
        assert f["images"].shape[0] == 15


def test_kept_checkpoints_carry_their_iteration_s_scores(flat_run):
    kept = sorted((flat_run / "checkpoints").glob("iter_*.pt"))
    assert [p.name for p in kept] == ["iter_000003.pt", "iter_000006.pt"]
    by_iteration = {r["iteration"]: r for r in _records(flat_run) if "label_free" in r}
    for path in kept:
        ckpt = load_checkpoint(path)
        assert "optimizer" not in ckpt  # weights only: last.pt stays the resume point
        assert ckpt["card"]["metrics"]["label_free"] == by_iteration[ckpt["iteration"]]["label_free"]


def test_ignored_labels_give_the_flat_copy_s_scores(flat_run, data_root, tmp_path):
    ignored = tmp_path / "ignored"
    train(_config(data_root, ignored, "sketches", target_labels="ignore", keep_every=3))
    a, b = json.loads((flat_run / "summary.json").read_text()), json.loads((ignored / "summary.json").read_text())
    assert a["label_free"] == b["label_free"]  # same images in the same order: the same run
    assert b["target_labels"] == "none" and b["target_acc_ct"] is None
    assert not any(key.startswith("acc_") for r in _records(ignored) for key in r)


def test_labeled_target_accuracy_is_for_evaluation_only(data_root, tmp_path):
    result = train(_config(data_root, tmp_path / "labeled", "sketches"))
    summary = json.loads((tmp_path / "labeled" / "summary.json").read_text())
    assert summary["target_labels"] == "class folders" and 0 <= result.target_acc_ct <= 1
    assert (tmp_path / "labeled" / "target_evaluation.json").is_file()


def test_resume_refuses_a_changed_source_split(data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    train(_config(root, tmp_path / "run", "sketches_flat"), stop_at=3)
    extra = root / "photos" / "circle" / "extra.png"
    shutil.copy2(next((root / "photos" / "square").glob("*.png")), extra)
    with pytest.raises(UsageError, match="held-out split"):
        train(_config(root, tmp_path / "run", "sketches_flat"), resume=True)
    extra.unlink()
    result = train(_config(root, tmp_path / "run", "sketches_flat"), resume=True)
    assert result.target_labels == "none" and result.label_free
