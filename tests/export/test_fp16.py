"""fp16 export: fp16 weights and compute inside, float32 I/O, checked against fp16 thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")
pytest.importorskip("torch")

from onnx import TensorProto, helper  # noqa: E402

from symnets_deploy.backends.ort import OrtBackend  # noqa: E402
from symnets_deploy.export.api import ExportConfig, run_export  # noqa: E402
from symnets_deploy.export.fp16 import convert_to_fp16  # noqa: E402
from symnets_deploy.card import ONNX_PRECISION_KEY  # noqa: E402
from symnets_deploy.export.onnx import onnx_precision  # noqa: E402
from symnets_deploy.export.tolerances import TOLERANCES  # noqa: E402
from symnets_deploy.train.checkpoint import model_from_checkpoint  # noqa: E402


def _float_types(model) -> dict[int, int]:
    counts: dict[int, int] = {}
    for t in model.graph.initializer:
        if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16) and np.prod(t.dims) > 1:
            counts[t.data_type] = counts.get(t.data_type, 0) + 1
    return counts


@pytest.fixture(scope="module")
def tiny_fp16(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_fp16") / "model.fp16.onnx"
    return run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), precision="fp16", output=str(out)))


def test_fp16_export_has_fp16_weights_and_float32_io(tiny_fp16):
    model = onnx.load(str(tiny_fp16.artifact))
    onnx.checker.check_model(model, full_check=True)
    types = _float_types(model)
    assert types.get(TensorProto.FLOAT16, 0) > 0 and TensorProto.FLOAT not in types  # every weight tensor is fp16
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    assert {p.key: p.value for p in model.metadata_props}[ONNX_PRECISION_KEY] == "fp16"
    assert onnx_precision(tiny_fp16.artifact).value == "fp16"


def test_fp16_export_passes_its_thresholds(tiny_fp16, tiny_run):
    report = json.loads(tiny_fp16.report_path.read_text())
    assert report["passed"] and report["precision"] == "fp16"
    assert report["tolerance"] == TOLERANCES["fp16"].to_dict()
    assert report["tolerance"] == {"bounds": {"probs": {"p99": 0.01, "max": 0.03}}, "top1": 0.995, "error_quantile": 0.99}
    (cmp,) = report["comparisons"]
    probs = cmp["outputs"]["probs"]
    assert probs["p99_abs"] <= 1e-2 and probs["max_abs"] <= 3e-2 and cmp["top1_agree"] >= 0.995
    _, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    with OrtBackend(tiny_fp16.artifact) as backend:
        assert backend.card() == card and backend.precision() == "fp16"


def test_lite0_fp16_passes_on_real_images(lite0_run, office_root, tmp_path):
    result = run_export(ExportConfig(
        checkpoint=str(lite0_run / "last.pt"), precision="fp16", output=str(tmp_path / "model.fp16.onnx"),
        calibration_images=str(office_root / "amazon"), max_images=8,
    ))
    (cmp,) = result.report.comparisons
    assert result.report.passed and cmp.outputs["probs"].max_abs <= 3e-2 and cmp.top1_agree >= 0.995
    # fp16 really changed the numbers: the check compares two different computations.
    assert cmp.outputs["logits"].max_abs > 1e-6


def test_converter_handles_an_output_that_is_also_consumed_inside_the_graph(tmp_path):
    """logits is a graph output and the Softmax input: the raw converter breaks such graphs."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3]), helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 3])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    converted = convert_to_fp16(model)
    onnx.checker.check_model(converted, full_check=True)
    assert len(model.graph.node) == 2  # the input model is left alone
    path = tmp_path / "m.onnx"
    onnx.save(converted, str(path))
    x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    logits, probs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    assert logits.dtype == probs.dtype == np.float32
    np.testing.assert_allclose(logits, x @ np.linspace(-1, 1, 12).reshape(4, 3), atol=1e-2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
