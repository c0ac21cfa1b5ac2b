"""External data of an ONNX model: only plain files inside its folder, whatever onnxruntime does (issue 9, case 5)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from symnets_deploy.backends import OrtBackend  # noqa: E402
from symnets_deploy.errors import ArtifactError  # noqa: E402
from symnets_deploy.external_data import check_external_data, external_locations  # noqa: E402

WEIGHTS = np.arange(6, dtype=np.float32).reshape(2, 3)


def model_with_external(folder: Path, location: str, *, in_attribute: bool = False) -> Path:
    """A MatMul model whose weight tensor points at external data ``location`` (written by hand)."""
    tensor = numpy_helper.from_array(WEIGHTS, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(WEIGHTS.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 2])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])]
    if in_attribute:  # a Constant node's tensor attribute, nested one level deeper
        nodes = [helper.make_node("Constant", [], ["w"], value=tensor), helper.make_node("MatMul", ["images", "w"], ["logits"])]
        graph = helper.make_graph(nodes, "g", inputs, outputs)
    else:
        graph = helper.make_graph([helper.make_node("MatMul", ["images", "w"], ["logits"])], "g", inputs, outputs, initializer=[tensor])
    path = folder / "model.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    return path


@pytest.mark.parametrize("in_attribute", [False, True])
def test_locations_are_found_in_initializers_and_node_attributes(tmp_path: Path, in_attribute: bool) -> None:
    path = model_with_external(tmp_path, "weights.bin", in_attribute=in_attribute)
    assert external_locations(path.read_bytes()) == ["weights.bin"]


def test_a_plain_file_beside_the_model_is_accepted(tmp_path: Path) -> None:
    path = model_with_external(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(WEIGHTS.tobytes())
    check_external_data(path)
    import onnxruntime as ort

    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": np.ones((1, 2), np.float32)})[0]
    np.testing.assert_allclose(out, np.ones((1, 2)) @ WEIGHTS)


@pytest.mark.parametrize("location, words", [
    ("../../../etc/passwd", "relative path inside"),
    ("/etc/passwd", "relative path inside"),
    ("link.bin", "outside the model's folder"),
    ("missing.bin", "not a file beside"),
])
def test_locations_outside_the_folder_are_refused_before_loading(tmp_path: Path, location: str, words: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(WEIGHTS.tobytes())
    folder = tmp_path / "model"
    path = model_with_external(folder, location)
    os.symlink(secret, folder / "link.bin")
    with pytest.raises(ArtifactError, match=f"external data '{location}' .*{words}"):
        check_external_data(path)
    with pytest.raises(ArtifactError, match="refused before loading"):
        OrtBackend(path).activate()  # the runtime's gate, whatever the onnxruntime version
