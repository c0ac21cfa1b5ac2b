"""Every exported artifact carries a reference profile of its own outputs (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from symnets_deploy.backends.ort import OrtBackend  # noqa: E402
from symnets_deploy.export.api import ExportConfig, run_export, run_verify  # noqa: E402
from symnets_deploy.info import describe_file  # noqa: E402
from symnets_deploy.monitoring import QUANTILES, confidences  # noqa: E402
from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch  # noqa: E402


def _profile(path):
    with OrtBackend(path, device="cpu") as backend:
        return backend.reference_profile()


def test_each_variant_profiles_its_own_outputs_on_the_target_and_held_out_source(tiny_run, tmp_path):
    fp32 = run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), output=str(tmp_path / "model.onnx")))
    int8 = run_export(ExportConfig(from_onnx=str(fp32.artifact), precision="int8", output=str(tmp_path / "model.int8.onnx")))
    a, b = _profile(fp32.artifact), _profile(int8.artifact)
    assert a is not None and b is not None
    assert a.images == b.images == fp32.report.num_images  # the check images: the target domain
    assert len(a.confidence_quantiles) == QUANTILES
    # The run held source images out (default --source-val 0.1): they calibrate the profile.
    split = json.loads((tiny_run / "source_split.json").read_text())
    assert a.labeled is not None and a.labeled["images"] == len(split["held_out"])
    assert a.confidence_quantiles != b.confidence_quantiles  # int8 is profiled through int8
    report = json.loads(fp32.report_path.read_text())
    assert report["num_images"] == a.images
    # verify rewrites the report only: the artifact and its profile stay as they were.
    before = fp32.artifact.read_bytes()
    run_verify(fp32.artifact, tiny_run / "last.pt")
    assert fp32.artifact.read_bytes() == before
    facts = describe_file(fp32.artifact)["reference_profile"]
    assert facts["images"] == a.images and facts["calibrated_on"].startswith(f"{a.labeled['images']} labeled")


def test_the_profile_median_is_the_artifact_s_median_confidence(tiny_run, shapes_root, tmp_path):
    done = run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), output=str(tmp_path / "model.onnx"),
                                   calibration_images=str(shapes_root / "sketches")))
    profile = _profile(done.artifact)
    with OrtBackend(done.artifact, device="cpu") as backend:
        cfg = PreprocessConfig.from_card(backend.card())
        paths = sorted(p for p in (shapes_root / "sketches").rglob("*.*"))
        logits = backend.infer(to_batch([preprocess_image(p, cfg) for p in paths]))["logits"]
    assert profile.images == len(paths)
    assert profile.confidence_quantiles[50] == pytest.approx(float(np.median(confidences(logits))), abs=1e-5)
    assert profile.mean_confidence == pytest.approx(float(confidences(logits).mean()), abs=1e-5)
