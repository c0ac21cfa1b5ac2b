"""TrtBackend without TensorRT: sidecar checks, profile batch sizes, and the inference path.

No engine can be built here (DESIGN.md section 5). The first tests use stand-in bytes with a real
sidecar, so everything TrtBackend decides before deserialising runs for real; the rest run the
whole backend against ``trt_standin`` (documented TensorRT and cuda-python API over host memory),
so its buffers, copies, batching, clean-up and error paths execute and are checked against NumPy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from symnets_deploy._optional import is_available
from symnets_deploy.backends import BatchLimits, TrtBackend, open_backend
from symnets_deploy.backends.trt import plan_batch_limits
from symnets_deploy.card import ModelCard
from symnets_deploy.errors import ArtifactError, MissingDependencyError, UsageError
from symnets_deploy.sidecar import EngineSidecar, check_plan, sha256_file, sidecar_path, write_sidecar

from . import trt_standin

CARD = ModelCard(class_names=("cat", "dog"), input_size=32, resize_size=37, mean=(0.5,) * 3, std=(0.5,) * 3, backbone="tiny")
no_tensorrt = pytest.mark.skipif(is_available("tensorrt"), reason="TensorRT is installed: these check its absence")


def make_plan(folder: Path, *, profile=None, version: str = "10.3.0", capability: str = "9.0") -> Path:
    """A stand-in plan file with a valid sidecar (correct sha256)."""
    plan = folder / "model.plan"
    plan.write_bytes(b"serialized engine stand-in")
    sidecar = EngineSidecar(
        card=CARD.to_dict(), tensorrt_version=version, gpu_name="NVIDIA H100", compute_capability=capability,
        profile=profile or {"min": 1, "opt": 8, "max": 32}, precision="fp16", onnx_sha256="0" * 64,
        plan_sha256=sha256_file(plan), package_version="0.1.0", created="2025-01-01T00:00:00+00:00",
    )
    write_sidecar(plan, sidecar)
    return plan


def test_profile_gives_batch_limits() -> None:
    limits = plan_batch_limits({"min": 2, "opt": 8, "max": 16})
    assert limits == BatchLimits(2, 16, fixed=False)
    assert [limits.fit(b) for b in (1, 8, 64)] == [2, 8, 16]
    # The short last batch runs at its own size inside the profile, padded only below min.
    assert [limits.rows_for(n, 8) for n in (1, 2, 5, 8)] == [2, 2, 5, 8]


def test_fixed_limits_pad_every_batch() -> None:
    assert [BatchLimits(1, None, fixed=True).rows_for(n, 8) for n in (1, 8)] == [8, 8]
    assert BatchLimits().fit(1000) == 1000


def test_check_plan_accepts_the_matching_machine(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    sidecar = check_plan(plan, tensorrt_version="10.3.0", compute_capability="9.0")
    assert sidecar.model_card() == CARD and sidecar.profile == {"min": 1, "opt": 8, "max": 32}


@pytest.mark.parametrize(
    "version, capability, words",
    [("10.4.0", "9.0", ["TensorRT 10.3.0", "TensorRT 10.4.0"]), ("10.3.0", "8.6", ["compute capability 9.0", "NVIDIA H100", "8.6"])],
)
def test_check_plan_refuses_another_tensorrt_or_gpu(tmp_path: Path, version: str, capability: str, words: list) -> None:
    plan = make_plan(tmp_path)
    with pytest.raises(ArtifactError) as info:
        check_plan(plan, tensorrt_version=version, compute_capability=capability)
    assert all(w in str(info.value) for w in words) and info.value.exit_code == 5


def test_check_plan_refuses_a_replaced_plan_even_without_versions(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    plan.write_bytes(b"another engine")
    with pytest.raises(ArtifactError, match="sha256"):
        check_plan(plan)


def test_missing_or_broken_sidecar_is_an_artifact_error_before_tensorrt(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        TrtBackend(plan).activate()
    sidecar_path(plan).unlink()
    with pytest.raises(ArtifactError, match="sidecar not found") as info:
        open_backend(plan).activate()
    assert info.value.exit_code == 5


@no_tensorrt
def test_valid_plan_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    with pytest.raises(MissingDependencyError) as info:
        TrtBackend(plan).activate()
    assert "symnets-deploy[trt]" in str(info.value) and info.value.exit_code == 4


def test_plan_on_cpu_or_missing_is_a_usage_error(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    with pytest.raises(UsageError, match="CUDA GPU only"):
        TrtBackend(plan, device="cpu").activate()
    with pytest.raises(UsageError, match="not found"):
        TrtBackend(tmp_path / "absent.plan").activate()


# -- the inference path, against stand-in TensorRT and CUDA modules ----------------------------
WEIGHT = np.array([[0.02, -0.01, 0.0], [-0.015, 0.02, 0.005]])
BIAS = np.array([0.1, -0.2])


def standin_plan(folder: Path, **kwargs) -> Path:
    return trt_standin.make_plan(folder, CARD, WEIGHT, BIAS, **kwargs)


def random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, 3, CARD.input_size, CARD.input_size)).astype(np.float32)


@pytest.mark.parametrize("out_dtype, atol", [("float32", 1e-5), ("float16", 2e-3)])
def test_every_batch_size_of_the_profile_goes_through_its_buffers(tmp_path: Path, monkeypatch, out_dtype: str, atol: float) -> None:
    _trt, rt = trt_standin.install(monkeypatch)
    with TrtBackend(standin_plan(tmp_path, profile=(2, 5), out_dtype=out_dtype)) as backend:
        assert backend.card() == CARD and backend.output_classes() == 2 and backend.precision() == "fp32"
        assert backend.batch_limits() == BatchLimits(2, 5, fixed=False)
        for count, seed in ((5, 1), (2, 2), (3, 3)):  # a smaller batch after a larger one reuses the buffers
            images = random_images(count, seed)
            out = backend.infer(images)
            logits, probs = trt_standin.expected_outputs(images, WEIGHT, BIAS)
            assert {k: (v.dtype, v.shape) for k, v in out.items()} == {"logits": (np.float32, (count, 2)), "probs": (np.float32, (count, 2))}
            np.testing.assert_allclose(out["logits"], logits, atol=atol, rtol=0)
            np.testing.assert_allclose(out["probs"], probs, atol=atol, rtol=0)
        assert rt.current == 0 and len(rt.memory.blocks) == 3 and len(rt.streams) == 1
    assert rt.memory.blocks == {} and rt.streams == set()  # deactivate frees every buffer and the stream


@pytest.mark.parametrize("count", [1, 6])
def test_a_batch_outside_the_profile_is_refused(tmp_path: Path, monkeypatch, count: int) -> None:
    trt_standin.install(monkeypatch)
    with TrtBackend(standin_plan(tmp_path, profile=(2, 5))) as backend:
        with pytest.raises(UsageError, match=r"outside the engine's profile \[2, 5\]"):
            backend.infer(random_images(count))


def test_predictor_batches_and_pads_to_the_profile(tmp_path: Path, monkeypatch) -> None:
    from symnets_deploy import Predictor
    from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch

    trt_standin.install(monkeypatch)
    plan = standin_plan(tmp_path, profile=(4, 4))
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    paths = []
    for i in range(7):  # batches of 4 and 3; the 3 are padded to the profile's min of 4
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(paths[-1])
    expected = trt_standin.expected_outputs(to_batch([preprocess_image(p, PreprocessConfig.from_card(CARD)) for p in paths]), WEIGHT, BIAS)[1]
    with Predictor.load(plan, batch_size=8, top_k=2) as predictor:
        results = predictor.predict_paths(paths)
    assert [r.path for r in results] == [str(p) for p in paths] and all(r.ok for r in results)
    assert [r.label for r in results] == [CARD.class_names[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([max(r.topk_probs) for r in results], expected.max(1), atol=1e-5)


def test_predict_cli_runs_a_plan(tmp_path: Path, monkeypatch) -> None:
    from symnets_deploy.cli.main import app

    trt_standin.install(monkeypatch)
    plan = standin_plan(tmp_path)
    image = tmp_path / "one.png"
    Image.new("RGB", (40, 40), (250, 10, 10)).save(image)
    result = CliRunner().invoke(app, ["predict", str(image), "--engine", str(plan), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.strip()]
    # Red raises class 0's logit (0.02 * R) far above class 1's (-0.015 * R).
    assert '"label": "cat"' in row and str(image) in row


@pytest.mark.parametrize("setup, error, words", [
    ({"devices": 0}, MissingDependencyError, ["needs a CUDA GPU", "none is visible"]),
    ({"version": "10.4.0"}, ArtifactError, ["TensorRT 10.3.0", "TensorRT 10.4.0 is installed"]),
    ({"capability": "8.9"}, ArtifactError, ["compute capability 9.0", "this GPU has 8.9"]),
])
def test_the_machine_is_checked_against_the_sidecar(tmp_path: Path, monkeypatch, setup: dict, error, words: list) -> None:
    _trt, rt = trt_standin.install(monkeypatch, **setup)
    backend = TrtBackend(standin_plan(tmp_path))
    with pytest.raises(error) as info:
        backend.activate()
    assert all(w in str(info.value) for w in words), str(info.value)
    assert not backend.is_active and rt.memory.blocks == {} and rt.streams == set()


def test_a_plan_tensorrt_cannot_deserialize_is_an_artifact_error(tmp_path: Path, monkeypatch) -> None:
    trt_standin.install(monkeypatch)
    plan = make_plan(tmp_path)  # bytes that are no engine, under a sidecar that matches them
    with pytest.raises(ArtifactError, match="could not deserialize") as info:
        TrtBackend(plan).activate()
    assert info.value.exit_code == 5


def test_an_engine_with_other_tensor_names_is_refused(tmp_path: Path, monkeypatch) -> None:
    trt_standin.install(monkeypatch)
    with pytest.raises(ArtifactError, match="expected input 'images'"):
        TrtBackend(standin_plan(tmp_path, names=("input", "logits", "probs"))).activate()


def test_a_failed_allocation_frees_what_was_allocated(tmp_path: Path, monkeypatch) -> None:
    _trt, rt = trt_standin.install(monkeypatch)
    rt.memory.fail_after = 2  # input and logits buffers succeed, probs fails
    backend = TrtBackend(standin_plan(tmp_path))
    with pytest.raises(RuntimeError, match="cudaMalloc failed: cudaErrorMemoryAllocation"):
        backend.activate()
    assert rt.memory.allocated == 2 and rt.memory.blocks == {} and rt.streams == set() and not backend.is_active


def test_a_failed_execution_is_a_runtime_error(tmp_path: Path, monkeypatch) -> None:
    trt_standin.install(monkeypatch)
    with TrtBackend(standin_plan(tmp_path, fail_execute=True)) as backend:
        with pytest.raises(RuntimeError, match="execute_async_v3 failed"):
            backend.infer(random_images(2))


def test_a_plan_carries_its_reference_profile_in_the_sidecar(tmp_path: Path, monkeypatch) -> None:
    from symnets_deploy import Predictor
    from symnets_deploy.info import describe_file
    from symnets_deploy.monitoring import build_profile
    from symnets_deploy.reference import artifact_profile

    trt_standin.install(monkeypatch)
    reference = random_images(60, seed=5)
    profile = build_profile(trt_standin.expected_outputs(reference, WEIGHT, BIAS)[0], source="stand-in target")
    plan = standin_plan(tmp_path, reference_profile=profile.to_dict())
    assert artifact_profile(plan) == profile  # read from the sidecar, without TensorRT
    assert describe_file(plan)["reference_profile"]["images"] == 60
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(35):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    with Predictor.load(plan, batch_size=8) as predictor:
        assert predictor.profile == profile
        results = predictor.predict_paths(sorted(folder.iterdir()))
        summary = predictor.monitoring_summary()
    assert summary["images"] == 35 and all(r.low_confidence is not None for r in results)
