"""TensorRT without TensorRT: the sidecar, profile arguments, and the missing-library path.

Tests that need TensorRT and a CUDA GPU are marked ``trt`` and skip with that reason.
"""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app
from symnets_deploy.errors import ArtifactError, MissingDependencyError, UsageError
from symnets_deploy.gpu import CudaDevice, cuda_device, require_tensorrt
from symnets_deploy.sidecar import EngineSidecar, check_plan, read_sidecar, sha256_file, sidecar_path, write_sidecar

runner = CliRunner()
CARD = {
    "class_names": ["circle", "square", "triangle"], "input_size": 32, "resize_size": 37, "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5], "backbone": "tiny", "head": "ct",
}


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "model.plan"
    path.write_bytes(b"serialized engine bytes")
    return path


@pytest.fixture
def sidecar(plan):
    return EngineSidecar(
        card=CARD, tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
        profile={"min": 1, "opt": 8, "max": 32}, precision="fp16", onnx_sha256="ab" * 32, plan_sha256=sha256_file(plan),
        package_version="0.1.0", created="2025-01-01T00:00:00+00:00",
    )


def test_sidecar_round_trip(plan, sidecar):
    path = write_sidecar(plan, sidecar)
    assert path == sidecar_path(plan) == plan.with_name("model.plan.json")
    assert json.loads(path.read_text())["compute_capability"] == "9.0"
    assert read_sidecar(plan) == sidecar
    assert EngineSidecar.from_dict(sidecar.to_dict()) == sidecar
    assert sidecar.model_card().class_names == ("circle", "square", "triangle")
    assert check_plan(plan, tensorrt_version="10.3.0", compute_capability="9.0") == sidecar
    assert [p.name for p in plan.parent.iterdir() if p.name.startswith(".")] == []


def test_sha256_file_matches_hashlib(plan):
    import hashlib

    assert sha256_file(plan) == hashlib.sha256(b"serialized engine bytes").hexdigest()


@pytest.mark.parametrize("kwargs, words", [
    ({"tensorrt_version": "10.4.0", "compute_capability": "9.0"}, ["TensorRT 10.3.0", "10.4.0 is installed"]),
    ({"tensorrt_version": "10.3.0", "compute_capability": "8.9"}, ["compute capability 9.0", "this GPU has 8.9"]),
])
def test_check_refuses_another_tensorrt_or_gpu(plan, sidecar, kwargs, words):
    write_sidecar(plan, sidecar)
    with pytest.raises(ArtifactError) as info:
        check_plan(plan, **kwargs)
    assert all(w in str(info.value) for w in words) and str(plan) in str(info.value)
    assert info.value.exit_code == 5


def test_check_refuses_a_replaced_plan(plan, sidecar):
    write_sidecar(plan, sidecar)
    plan.write_bytes(b"another engine")
    with pytest.raises(ArtifactError, match="sha256"):
        check_plan(plan, tensorrt_version="10.3.0", compute_capability="9.0")


def test_weights_hash_is_optional_for_sidecars_written_before_it(plan, sidecar):
    data = sidecar.to_dict()
    assert data.pop("weights_sha256") is None
    assert EngineSidecar.from_dict(data) == sidecar
    with_weights = EngineSidecar.from_dict({**data, "weights_sha256": "cd" * 32})
    assert with_weights.weights_sha256 == "cd" * 32
    with pytest.raises(ArtifactError, match="weights_sha256 must be strings"):
        EngineSidecar.from_dict({**data, "weights_sha256": 7})


def test_read_sidecar_errors_name_the_file(plan, sidecar):
    path = sidecar_path(plan)
    with pytest.raises(ArtifactError, match="sidecar not found") as info:
        read_sidecar(plan)
    assert str(path) in str(info.value)
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_sidecar(plan)
    data = sidecar.to_dict()
    del data["plan_sha256"], data["gpu_name"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="missing keys gpu_name, plan_sha256") as info:
        read_sidecar(plan)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("profile", [{"min": 4, "opt": 2, "max": 8}, {"min": 0, "opt": 1, "max": 1}, {"min": 1, "opt": "8", "max": 32}, [1, 8, 32]])
def test_invalid_sidecar_profile(plan, sidecar, profile):
    write_sidecar(plan, sidecar)
    data = {**sidecar.to_dict(), "profile": profile}
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="profile"):
        read_sidecar(plan)


def test_invalid_card_in_sidecar(plan, sidecar):
    data = {**sidecar.to_dict(), "card": {**CARD, "class_names": []}}
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="class_names is empty"):
        read_sidecar(plan)


# -- the build side (export/ needs torch; the sidecar tests above do not) ---------------------
try:
    import torch

    from symnets_deploy.export import trt as T
    from symnets_deploy.export.api import ExportConfig
except ImportError:  # a runtime-only install: the sidecar tests above still run
    torch = T = ExportConfig = None

needs_torch = pytest.mark.skipif(torch is None, reason="export/ needs torch: pip install 'symnets-deploy[export]'")
has_cuda = torch is not None and torch.cuda.is_available()


@needs_torch
@pytest.mark.parametrize("sizes", [(2, 1, 4), (1, 8, 4), (0, 1, 1), (-1, 1, 1), (1, 1, 0), (True, 1, 2), (1.5, 2, 4)])
def test_profile_needs_1_le_min_le_opt_le_max(sizes):
    with pytest.raises(UsageError):
        T.TrtProfile(*sizes)


@needs_torch
def test_profile_shapes_and_defaults():
    assert T.TrtProfile().to_dict() == {"min": 1, "opt": 8, "max": 32}
    assert T.TrtProfile(1, 1, 1).to_dict() == {"min": 1, "opt": 1, "max": 1}
    assert T.TrtProfile(2, 4, 16).shapes(224) == ((2, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224))
    config = ExportConfig(checkpoint="run/last.pt", format="trt", max_batch=64)
    assert config.profile() == T.TrtProfile(1, 8, 64)
    assert config.default_output().name == "model.plan"


@needs_torch
def test_profile_options_are_validated_before_any_work():
    with pytest.raises(UsageError, match="min-batch <= --opt-batch"):
        ExportConfig(checkpoint="missing/last.pt", format="trt", min_batch=16, opt_batch=8)
    with pytest.raises(UsageError, match="apply to --format trt only"):
        ExportConfig(checkpoint="missing/last.pt", format="onnx", max_batch=8)


@needs_torch
def test_timing_cache_is_per_version_and_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = T.default_timing_cache("10.3.0", CudaDevice("GPU", "8.9"))
    assert path == tmp_path / "symnets-deploy" / "tensorrt-10.3.0-sm89.timing-cache"


@needs_torch
def test_missing_tensorrt_is_exit_4_with_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed, also where it is
    with pytest.raises(MissingDependencyError) as info:
        require_tensorrt("building a TensorRT engine")
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "pip install 'symnets-deploy[trt]'" in message and "NVIDIA GPU" in message and "\n" not in message


def test_no_cuda_python_is_exit_4(monkeypatch):
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed, also where it is
    with pytest.raises(MissingDependencyError, match="needs cuda-python") as info:
        cuda_device("building a TensorRT engine")
    assert info.value.exit_code == 4 and "symnets-deploy[trt]" in str(info.value)


@needs_torch
def test_cli_export_trt_without_tensorrt_exits_4_in_one_line(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(p.name for p in tiny_run.iterdir())
    result = runner.invoke(app, ["export", "--checkpoint", str(tiny_run / "last.pt"), "--format", "trt", "--output", str(out / "model.plan")])
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: building a TensorRT engine needs 'tensorrt'") and "symnets-deploy[trt]" in line
    assert list(out.iterdir()) == [] and sorted(p.name for p in tiny_run.iterdir()) == before


@needs_torch
def test_cli_verify_plan_without_tensorrt_exits_4(tiny_run, plan, sidecar, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    write_sidecar(plan, sidecar)
    result = runner.invoke(app, ["verify", str(plan), "--checkpoint", str(tiny_run / "last.pt")])
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert "checking a TensorRT engine needs 'tensorrt'" in result.stderr and "building" not in result.stderr


def test_cli_verify_plan_checks_the_sidecar_before_tensorrt(tiny_run, plan, monkeypatch):
    """Issue 9, case 11: a plan without its sidecar was exit 4 (no TensorRT) in verify but 5 in predict."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    from PIL import Image

    image = plan.parent / "images" / "one.png"
    image.parent.mkdir()
    Image.new("RGB", (8, 8)).save(image)
    for command in (["verify", str(plan), "--checkpoint", str(tiny_run / "last.pt")], ["predict", str(image), "--engine", str(plan)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 5, (command, result.output)
        assert "sidecar" in result.stderr and "Traceback" not in result.output


# -- real TensorRT ----------------------------------------------------------------------------
@pytest.mark.trt
@needs_torch
def test_trt_engine_build_and_check(tiny_run, tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU")
    if not has_cuda:
        pytest.skip("needs TensorRT and a CUDA GPU")
    from symnets_deploy.export.api import run_export, run_verify

    out = tmp_path / "model.plan"
    cache = tmp_path / "timing.cache"
    result = run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), format="trt", output=str(out), min_batch=1, opt_batch=4, max_batch=8, timing_cache=str(cache)))
    assert result.report.passed and out.is_file() and cache.is_file()
    assert [(c.reference, c.candidate) for c in result.report.comparisons] == [("onnxruntime", "tensorrt")]
    car = read_sidecar(out)
    import tensorrt

    assert car.tensorrt_version == tensorrt.__version__ and car.profile == {"min": 1, "opt": 4, "max": 8}
    assert car.plan_sha256 == sha256_file(out) and car.onnx_sha256 == sha256_file(out.with_suffix(".onnx"))
    major, minor = torch.cuda.get_device_capability()
    check_plan(out, tensorrt_version=tensorrt.__version__, compute_capability=f"{major}.{minor}")
    assert run_verify(out, tiny_run / "last.pt").report.passed


# -- verify on a plan, with stand-in TensorRT and CUDA modules (tests/runtime/trt_standin.py) ---
def _standin_plan_of(run, folder, monkeypatch, weights):
    """A stand-in plan with the run's card and a zero linear model, recording ``weights``."""
    import numpy as np

    from symnets_deploy.train.checkpoint import model_from_checkpoint
    from tests.runtime import trt_standin

    trt_standin.install(monkeypatch)
    _model, card, _ = model_from_checkpoint(run / "last.pt")
    weight = np.zeros((card.num_classes, 3))
    return trt_standin.make_plan(folder, card, weight, np.zeros(card.num_classes), profile=(1, 4), weights_sha256=weights)


@needs_torch
def test_verify_refuses_a_plan_built_from_other_weights(tiny_run, tmp_path, monkeypatch):
    plan = _standin_plan_of(tiny_run, tmp_path, monkeypatch, "00" * 32)
    result = runner.invoke(app, ["verify", str(plan), "--checkpoint", str(tiny_run / "last.pt")])
    assert result.exit_code == 5, result.output
    assert "exported from other weights" in result.stderr and "Traceback" not in result.output


@needs_torch
def test_verify_runs_the_plan_and_catches_an_engine_that_computes_something_else(tiny_run, tmp_path, monkeypatch):
    from symnets_deploy.train.checkpoint import model_from_checkpoint, weights_sha256

    model, _card, _ = model_from_checkpoint(tiny_run / "last.pt")
    plan = _standin_plan_of(tiny_run, tmp_path, monkeypatch, weights_sha256(model))
    result = runner.invoke(app, ["verify", str(plan), "--checkpoint", str(tiny_run / "last.pt")])
    # Same weights by hash, so the check runs; the stand-in engine outputs uniform probabilities.
    assert result.exit_code == 6, result.output
    assert "equivalence check failed" in result.stderr
    report = json.loads(plan.with_name("model.plan.verify.json").read_text())
    assert report["passed"] is False and report["comparisons"][0]["candidate"] == "tensorrt"
