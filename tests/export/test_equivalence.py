"""Equivalence checks: comparisons as data, reports beside artifacts, failures exit 6 and place nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")
pytest.importorskip("torch")

from onnx import numpy_helper  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from symnets_deploy.backends.ort import OrtBackend  # noqa: E402
from symnets_deploy.cli.main import app  # noqa: E402
from symnets_deploy.errors import ArtifactError, EquivalenceError, UsageError  # noqa: E402
from symnets_deploy.export.api import ExportConfig, run_export, run_verify  # noqa: E402
from symnets_deploy.export.calibration import collect_images, spread  # noqa: E402
from symnets_deploy.export.compare import compare  # noqa: E402
from symnets_deploy.export.reference import TorchReference  # noqa: E402
from symnets_deploy.export.tolerances import TOLERANCES, Tol, tolerance_for  # noqa: E402
from symnets_deploy.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("equivalence") / "model.onnx"
    return run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), output=str(out)))


def _corrupt(src: Path, dst: Path, scale: float = 1.01) -> Path:
    """Copy of an exported ONNX with the classifier's weights perturbed by 1% (card kept)."""
    model = onnx.load(str(src))
    (weight,) = [t for t in model.graph.initializer if t.name.endswith("head.weight")]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(scale), weight.name))
    onnx.save(model, str(dst))
    return dst


def _rewrite(ckpt_path: Path, out: Path, edit) -> Path:
    ckpt = load_checkpoint(ckpt_path)
    edit(ckpt)
    save_checkpoint(out, {k: v for k, v in ckpt.items() if k != "format"})
    return out


def test_tolerances_are_the_issue_thresholds():
    assert TOLERANCES["fp32"] == Tol(bounds={"logits": {"max": 1e-4}}, top1=1.0)
    assert TOLERANCES["fp16"] == Tol(bounds={"probs": {"p99": 1e-2, "max": 3e-2}}, top1=0.995)
    assert TOLERANCES["int8"].top1 == 0.99 and set(TOLERANCES["int8"].bounds_of("probs")) == {"p99", "max"}
    with pytest.raises(UsageError, match="fp32, fp16, int8"):
        tolerance_for("int4")
    with pytest.raises(ValueError, match="unknown statistics"):
        Tol(bounds={"probs": {"p95": 0.1}})


def test_compare_reports_statistics_and_verdicts(tiny_run, exported):
    model, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    images = collect_images(card)
    batches = images.batches(5)
    report = compare(TorchReference(model, card.head, card=card), [OrtBackend(exported.artifact), OrtBackend(exported.artifact)], batches, tolerance=TOLERANCES["fp32"])
    assert report and report.passed and report.num_images == len(images.paths)
    assert [(c.reference, c.candidate) for c in report.comparisons] == [("torch", "onnxruntime"), ("torch", "onnxruntime#2")]
    diff = report.comparisons[0].outputs["logits"]
    assert diff and 0 <= diff.mean_abs <= diff.stats["p99"] <= diff.max_abs <= 1e-4 and diff.top1_agree == 1.0 and diff.bounds == {"max": 1e-4}
    assert report.comparisons[0].outputs["probs"].bounds == {}
    # The statistics cover every image at once (the batches are merged): recompute them here.
    ref = TorchReference(model, card.head, card=card)
    with ref, OrtBackend(exported.artifact) as ort_backend:
        got = np.concatenate([np.abs(ort_backend.infer(b)["logits"] - ref.infer(b)["logits"]) for b in batches])
    assert np.isclose(diff.max_abs, got.max(), rtol=1e-3, atol=1e-9)
    assert np.isclose(diff.stats["p99"], np.quantile(got, 0.99), rtol=1e-2, atol=1e-9)
    assert (report.comparisons[0].reference_top1 == report.comparisons[0].candidate_top1).all()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and data["comparisons"][0]["outputs"]["logits"]["passed"] is True
    assert "onnxruntime vs torch" in report.table()


def test_compare_fails_a_perturbed_model_on_the_bound_it_breaks(tiny_run, exported, tmp_path):
    model, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    bad = _corrupt(exported.artifact, tmp_path / "bad.onnx")
    report = compare(TorchReference(model, card.head), [OrtBackend(bad)], collect_images(card).batches(8), tolerance=TOLERANCES["fp32"])
    assert not report
    logits = report.comparisons[0].outputs["logits"]
    assert not logits and logits.max_abs > 1e-4
    with pytest.raises(UsageError):
        compare(TorchReference(model, card.head), [OrtBackend(bad)], [], tolerance=TOLERANCES["fp32"])


def test_verify_passes_on_the_export_and_rewrites_the_report(tiny_run, exported):
    before = json.loads(exported.report_path.read_text())
    done = run_verify(exported.artifact, tiny_run / "last.pt")
    after = json.loads(done.report_path.read_text())
    assert done.report.passed and after["passed"] and after["artifact_sha256"] == before["artifact_sha256"]


def test_corrupted_onnx_makes_verify_exit_6(tiny_run, exported, tmp_path):
    bad = _corrupt(exported.artifact, tmp_path / "model.onnx")
    with pytest.raises(EquivalenceError, match="\\|logits diff\\| max ") as info:
        run_verify(bad, tiny_run / "last.pt")
    assert info.value.exit_code == 6
    result = runner.invoke(app, ["verify", str(bad), "--checkpoint", str(tiny_run / "last.pt")])
    assert result.exit_code == 6, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    report = json.loads((tmp_path / "model.onnx.verify.json").read_text())
    assert report["passed"] is False and report["comparisons"][0]["outputs"]["logits"]["passed"] is False
    assert bad.is_file()  # verify marks an artifact failed; it never deletes it


def test_failed_export_exits_6_and_places_no_artifact(tiny_run, tmp_path):
    """A real fp16 failure: BatchNorm scales of 1e6 overflow fp16's range (max 65504)."""
    def overflow(ckpt):
        name = [k for k, v in ckpt["model"].items() if k.startswith("backbone") and k.endswith(".weight") and v.ndim == 1][-1]
        ckpt["model"][name] = ckpt["model"][name] * 1e6

    ckpt = _rewrite(tiny_run / "last.pt", tmp_path / "run" / "last.pt", overflow)
    result = runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--precision", "fp16"])
    assert result.exit_code == 6, result.output
    assert "equivalence check failed" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.pt", "model.fp16.onnx.verify.json"]
    report = json.loads((ckpt.parent / "model.fp16.onnx.verify.json").read_text())
    assert report["passed"] is False and report["precision"] == "fp16"


def test_verify_decides_same_model_by_the_weights(tiny_run, exported, tmp_path):
    """Issue 9: verify compared cards, so the same weights with other metrics were refused (exit 5)."""
    def remeasure(ckpt):
        ckpt["card"]["metrics"] = {"target_acc_ct": 0.123}

    def retrain(ckpt):
        name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
        ckpt["model"][name] = ckpt["model"][name] + 0.01

    same_weights = _rewrite(tiny_run / "last.pt", tmp_path / "same" / "last.pt", remeasure)
    assert run_verify(exported.artifact, same_weights).report.passed
    other = _rewrite(tiny_run / "last.pt", tmp_path / "other" / "last.pt", retrain)
    with pytest.raises(ArtifactError, match="exported from other weights"):
        run_verify(exported.artifact, other)


def test_conversions_keep_the_weights_record(tiny_run, exported, tmp_path):
    from symnets_deploy.export.onnx import onnx_weights
    from symnets_deploy.train.checkpoint import weights_sha256

    model, _, _ = model_from_checkpoint(tiny_run / "last.pt")
    assert onnx_weights(exported.artifact) == weights_sha256(model)
    fp16 = run_export(ExportConfig(from_onnx=str(exported.artifact), precision="fp16", output=str(tmp_path / "m.fp16.onnx")))
    assert onnx_weights(fp16.artifact) == weights_sha256(model)
    assert run_verify(fp16.artifact, tiny_run / "last.pt").report.passed


def test_spread_is_deterministic_and_covers_the_list():
    items = list(range(100))
    assert spread(items, 4) == [0, 25, 50, 75] and spread(items, 200) == items


def test_target_domain_is_found_by_name_on_the_data_path(tiny_run, shapes_root, tmp_path, monkeypatch):
    """A model trained elsewhere names a data root that is not here; a folder of that name on the data path is used."""
    from symnets_deploy.card import ModelCard

    card = ModelCard.from_dict(load_checkpoint(tiny_run / "last.pt")["card"])
    moved = card.replace(train_config={**card.train_config, "data_root": str(tmp_path / "gpu-box" / shapes_root.name)})
    monkeypatch.setenv("SYMNETS_DATA_PATH", str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="looked in .*gpu-box.*; pass --calibration-images"):
        collect_images(moved)
    monkeypatch.setenv("SYMNETS_DATA_PATH", str(shapes_root.parent))
    images = collect_images(moved)
    assert images.source == str(shapes_root / card.target) and images.labels is not None
    assert len(images.paths) == len(collect_images(card).paths)


def test_a_failed_export_over_an_existing_artifact_keeps_the_old_pair(tiny_run, tmp_path):
    """Issue 9, case 9: a report must never describe another file than the artifact beside it."""
    from symnets_deploy.sidecar import sha256_file

    def overflow(ckpt):
        name = [k for k, v in ckpt["model"].items() if k.startswith("backbone") and k.endswith(".weight") and v.ndim == 1][-1]
        ckpt["model"][name] = ckpt["model"][name] * 1e6

    out = tmp_path / "out" / "model.fp16.onnx"
    good = run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), precision="fp16", output=str(out)))
    report = json.loads(good.report_path.read_text())
    assert report["artifact_sha256"] == sha256_file(out)  # placed as a pair
    before = (out.read_bytes(), good.report_path.read_text())
    bad = _rewrite(tiny_run / "last.pt", tmp_path / "bad" / "last.pt", overflow)
    with pytest.raises(EquivalenceError, match="rejected.verify.json; the existing artifact and its report are unchanged"):
        run_export(ExportConfig(checkpoint=str(bad), precision="fp16", output=str(out)))
    assert (out.read_bytes(), good.report_path.read_text()) == before
    rejected = json.loads((out.parent / "model.fp16.onnx.rejected.verify.json").read_text())
    assert rejected["passed"] is False and rejected["artifact_sha256"] != report["artifact_sha256"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.fp16.onnx", "model.fp16.onnx.rejected.verify.json", "model.fp16.onnx.verify.json"]
