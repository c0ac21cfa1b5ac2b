"""OrtBackend and open_backend on ONNX files made by export_onnx (CPU provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from symnets_deploy.backends import BACKENDS, BatchLimits, OrtBackend, TrtBackend, open_backend  # noqa: E402
from symnets_deploy.backends.ort import select_providers  # noqa: E402
from symnets_deploy.card import ONNX_CARD_KEY  # noqa: E402
from symnets_deploy.errors import ArtifactError, MissingDependencyError, UsageError  # noqa: E402

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
ALL = [TRT, CUDA, CPU, "AzureExecutionProvider"]


@pytest.mark.parametrize(
    "device, provider, available, expected",
    [
        ("auto", None, [CPU], [CPU]),
        ("auto", None, ALL, [TRT, CUDA, CPU]),
        ("auto", None, [CUDA, CPU], [CUDA, CPU]),
        ("cpu", None, ALL, [CPU]),
        ("cuda", None, [CUDA, CPU], [CUDA, CPU]),
        ("auto", "cuda", ALL, [CUDA, CPU]),
        ("cuda", "TensorRT", ALL, [TRT, CUDA, CPU]),
        ("auto", "cpu", ALL, [CPU]),
    ],
)
def test_select_providers_prefers_tensorrt_then_cuda_then_cpu(device, provider, available, expected) -> None:
    assert select_providers(device, provider, available) == expected


@pytest.mark.parametrize(
    "device, provider, error, words",
    [
        ("cuda", None, MissingDependencyError, "symnets-deploy[gpu]"),
        ("auto", "cuda", MissingDependencyError, "symnets-deploy[gpu]"),
        ("auto", "openvino", UsageError, "valid: tensorrt, cuda, cpu"),
        ("cpu", "cuda", UsageError, "contradicts"),
        ("cuda", "cpu", UsageError, "contradicts"),
    ],
)
def test_impossible_provider_requests_explain_themselves(device, provider, error, words) -> None:
    with pytest.raises(error) as info:
        select_providers(device, provider, [CPU])
    assert words in str(info.value)


def test_infers_logits_and_probs_of_the_contract(tiny_onnx: Path) -> None:
    with OrtBackend(tiny_onnx, device="cpu", threads=1) as backend:
        card = backend.card()
        spec = backend.input_spec()
        assert (spec.name, spec.shape, spec.dtype) == ("images", (None, 3, card.input_size, card.input_size), "float32")
        assert backend.providers == [CPU]
        assert backend.batch_limits() == BatchLimits(1, None, fixed=False)
        assert backend.precision() == "fp32"  # the exporter records it in the metadata
        images = np.random.default_rng(0).uniform(0, 255, (5, *spec.shape[1:])).astype(np.float32)
        out = backend.infer(images)
    assert out["logits"].shape == out["probs"].shape == (5, card.num_classes)
    exp = np.exp(out["logits"] - out["logits"].max(1, keepdims=True))
    np.testing.assert_allclose(out["probs"], exp / exp.sum(1, keepdims=True), atol=1e-6)
    assert not backend.is_active


def test_io_binding_path_gives_the_same_outputs(tiny_onnx: Path) -> None:
    images = np.random.default_rng(1).uniform(0, 255, (3, 3, 32, 32)).astype(np.float32)
    with OrtBackend(tiny_onnx, device="cpu") as plain, OrtBackend(tiny_onnx, device="cpu", io_binding=True) as bound:
        assert not plain.io_binding and bound.io_binding
        a, b = plain.infer(images), bound.infer(images)
    for name in ("logits", "probs"):
        np.testing.assert_array_equal(a[name], b[name])


def test_wrong_input_is_a_usage_error(tiny_onnx: Path) -> None:
    with OrtBackend(tiny_onnx) as backend:
        with pytest.raises(UsageError, match="shape"):
            backend.infer(np.zeros((2, 3, 16, 16), np.float32))
        with pytest.raises(UsageError, match="float32"):
            backend.infer(np.zeros((2, 3, 32, 32), np.float64))


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(src))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def test_onnx_without_a_card_is_an_artifact_error(tiny_onnx: Path, tmp_path: Path) -> None:
    def drop_card(model):
        keep = [p for p in model.metadata_props if p.key != ONNX_CARD_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)

    bare = _edited_copy(tiny_onnx, tmp_path / "bare.onnx", drop_card)
    with OrtBackend(bare) as backend, pytest.raises(ArtifactError, match="no model card") as info:
        backend.card()
    assert info.value.exit_code == 5


def test_renamed_io_and_garbage_files_are_artifact_errors(tiny_onnx: Path, tmp_path: Path) -> None:
    def rename_input(model):
        old = model.graph.input[0].name
        model.graph.input[0].name = "pixels"
        for node in model.graph.node:
            node.input[:] = ["pixels" if n == old else n for n in node.input]

    with pytest.raises(ArtifactError, match="expected input 'images'"):
        OrtBackend(_edited_copy(tiny_onnx, tmp_path / "renamed.onnx", rename_input)).activate()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf model")
    with pytest.raises(ArtifactError, match="cannot load"):
        OrtBackend(garbage).activate()


def test_open_backend_picks_from_the_table(tiny_onnx: Path, tmp_path: Path) -> None:
    assert set(BACKENDS) == {".onnx", ".plan"}
    assert isinstance(open_backend(tiny_onnx, device="cpu"), OrtBackend)
    upper = tmp_path / "MODEL.ONNX"
    upper.write_bytes(tiny_onnx.read_bytes())
    assert isinstance(open_backend(upper), OrtBackend)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine")
    assert isinstance(open_backend(plan), TrtBackend)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("missing.onnx", {}, "not found"),
        ("model.bin", {}, "unknown engine type '.bin'"),
        ("model.pt", {}, "is a training checkpoint, not an exported model; run 'symnets export"),
        (".", {}, "is a folder, not a model file"),
        ("model.onnx", {"device": "tpu"}, "unknown device"),
        ("model.plan", {"provider": "cuda"}, "always runs on TensorRT"),
    ],
)
def test_open_backend_usage_errors(tmp_path: Path, name: str, kwargs: dict, message: str) -> None:
    for existing in ("model.pt", "model.bin", "model.onnx", "model.plan"):
        (tmp_path / existing).write_bytes(b"x")
    with pytest.raises(UsageError, match=message) as info:
        open_backend(tmp_path / name, **kwargs)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("threads, concurrency, calls, intra", [(1, 0, 1, 1), (2, 0, 2, 1), (4, 0, 2, 2), (4, 1, 1, 4), (3, 3, 3, 1)])
def test_cpu_threads_are_split_over_concurrent_calls(tiny_onnx: Path, threads: int, concurrency: int, calls: int, intra: int) -> None:
    with OrtBackend(tiny_onnx, device="cpu", threads=threads, concurrency=concurrency) as backend:
        assert backend.max_concurrency() == calls
        assert backend.session.get_session_options().intra_op_num_threads == intra


def test_concurrent_calls_give_the_same_outputs(tiny_onnx: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [np.random.default_rng(i).uniform(0, 255, (4, 3, 32, 32)).astype(np.float32) for i in range(8)]
    with OrtBackend(tiny_onnx, device="cpu", threads=2, concurrency=2) as backend:
        sequential = [backend.infer(b)["probs"] for b in batches]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(lambda b: backend.infer(b)["probs"], batches))
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)
