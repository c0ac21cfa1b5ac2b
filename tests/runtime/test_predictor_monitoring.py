"""The Predictor's running statistics against the artifact's reference profile: window, reset, flags (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from symnets_deploy.monitoring import RunningStats, flag_images
from symnets_deploy.predictor import Predictor
from symnets_deploy.reference import profile_artifact
from tests.runtime.conftest import tiny_onnx  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def profiled(tiny_onnx, shapes_root, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("profiled") / "tiny.profiled.onnx"
    profile_artifact(tiny_onnx, shapes_root / "sketches", output=out)
    return out


def _paths(shapes_root):
    return sorted(p for p in (shapes_root / "photos").rglob("*.*"))


def test_the_summary_covers_every_image_or_the_last_window_and_reset_starts_over(profiled, shapes_root):
    paths = _paths(shapes_root)
    logits: list[np.ndarray] = []
    with Predictor.load(profiled, device="cpu", batch_size=4) as everything, Predictor.load(profiled, device="cpu", batch_size=4, window=5) as recent:
        with everything.observing(logits.append):
            predictions = everything.predict_paths(paths)
        recent.predict_paths(paths)
        whole, last5 = everything.monitoring_summary(), recent.monitoring_summary()
        assert whole["images"] == len(paths) and last5["images"] == 5 and whole["labels_used"] is False
        # The same statistics as feeding the logits to RunningStats directly, in input order.
        direct = RunningStats(everything.profile)
        direct.update(np.concatenate(logits))
        expected = direct.summary()
        assert expected.keys() == whole.keys()
        for key, value in expected.items():  # sums over batches vs over all rows: equal up to rounding
            assert whole[key] == (pytest.approx(value) if isinstance(value, (float, list)) else value), key
        tail = RunningStats(everything.profile)
        tail.update(np.concatenate(logits)[-5:])
        assert tail.summary()["estimated_accuracy"] == pytest.approx(last5["estimated_accuracy"])
        everything.reset_monitoring()
        assert everything.monitoring_summary()["images"] == 0
        everything.predict_paths(paths[:3])
        assert everything.monitoring_summary()["images"] == 3
        assert len(logits) == sum(1 for _ in range(0, len(paths), 4))  # the observer stopped with its block
    low, unusual = flag_images(np.concatenate(logits), everything.profile)
    assert [p.low_confidence for p in predictions] == low.tolist()
    assert [p.unusual for p in predictions] == unusual.tolist()


def test_without_a_profile_there_is_no_summary_and_no_flags(tiny_onnx, shapes_root):  # noqa: F811
    with Predictor.load(tiny_onnx, device="cpu") as predictor:
        predictions = predictor.predict_paths(_paths(shapes_root)[:3])
        assert predictor.monitoring_summary() is None and predictor.profile is None
    assert all(p.low_confidence is None and p.unusual is None for p in predictions)
