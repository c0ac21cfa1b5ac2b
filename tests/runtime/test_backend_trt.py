"""TrtBackend without TensorRT: sidecar checks, profile batch sizes and error paths.

No engine can be built here (DESIGN.md section 5), so the plan files are stand-in bytes with a
real sidecar; everything TrtBackend decides before deserialising is exercised for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from symnets_deploy._optional import is_available
from symnets_deploy.backends import BatchLimits, TrtBackend, open_backend
from symnets_deploy.backends.trt import check_plan, plan_batch_limits
from symnets_deploy.card import ModelCard
from symnets_deploy.errors import ArtifactError, MissingDependencyError, UsageError
from symnets_deploy.sidecar import EngineSidecar, sha256_file, sidecar_path, write_sidecar

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
