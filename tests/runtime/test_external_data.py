"""External data of an ONNX model: only plain files inside its folder, whatever onnxruntime does (issue 9, case 5)."""

from __future__ import annotations

import os
import time
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


# -- large and malformed files: refused from their structure, at once (issue 18, item 6) -----


def test_a_file_over_2_gib_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.onnx"
    path.touch()
    os.truncate(path, 3 * 2**30)  # sparse: no disk used, and the old walk took minutes over its zeros
    start = time.perf_counter()
    with pytest.raises(ArtifactError, match=r"huge\.onnx: 3\.0 GiB, over the 2 GiB .*refused before reading it") as info:
        check_external_data(path)
    assert time.perf_counter() - start < 5  # generous: it is a stat, where the walk used to take over 5 minutes
    assert "\n" not in str(info.value)


def test_a_file_of_zeros_is_refused_on_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "zeros.onnx"
    path.write_bytes(bytes(4 * 2**20))  # each zero byte pair was an accepted field 0 before
    with pytest.raises(ArtifactError, match=r"zeros\.onnx: .*not a well-formed ONNX file \(malformed protobuf at byte 0: field number 0\)"):
        check_external_data(path)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.touch()
    with pytest.raises(ArtifactError, match=r"empty\.onnx: empty file \(0 bytes\)"):
        check_external_data(path)


@pytest.mark.parametrize(("blob", "match"), [
    (b"\x00\x01", "at byte 0: field number 0"),
    (b"\x80\x80\x80\x80\x10\x00", "field number 536870912"),  # over protobuf's 2**29 - 1
    (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    (b"\x3b", "wire type 3 \\(group\\) in field 7"),
    (b"\x3c", "wire type 4 \\(group\\) in field 7"),
    (b"\x3e", "invalid protobuf wire type 6"),
    (b"\x3f", "invalid protobuf wire type 7"),
    (b"\x3a\x04\x2a\x02\x00\x00", "at byte 4: field number 0"),  # inside graph -> initializer, not at the top
    (b"\x3a\x7f", "runs 127 bytes past the end"),
])
def test_malformed_tags_are_refused_at_once(blob: bytes, match: str) -> None:
    with pytest.raises(ArtifactError, match=match):
        external_locations(blob)


def model_with_locations(folder: Path) -> tuple[Path, list[str]]:
    """A model with external tensors in an initializer, a Constant attribute, an If branch and a sparse initializer."""
    def external(name: str, location: str) -> onnx.TensorProto:
        tensor = numpy_helper.from_array(WEIGHTS, name)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(WEIGHTS.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor

    branch = helper.make_graph([helper.make_node("Identity", ["b"], ["y"])], "branch", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                               initializer=[external("b", "branch.bin")])
    nodes = [
        helper.make_node("Constant", [], ["c"], value=external("c", "const.bin")),
        helper.make_node("If", ["cond"], ["chosen"], then_branch=branch, else_branch=branch),
        helper.make_node("MatMul", ["images", "w"], ["logits"]),
    ]
    sparse = helper.make_sparse_tensor(external("s", "sparse.bin"), numpy_helper.from_array(np.array([0], np.int64), "i"), [6])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 2]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])], initializer=[external("w", "weights.bin")],
                              sparse_initializer=[sparse])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], doc_string="x" * 2**20)  # a long field, jumped over
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path, ["weights.bin", "const.bin", "branch.bin", "branch.bin", "sparse.bin"]


def test_every_location_of_a_real_model_is_read_from_the_mapped_file(tmp_path: Path) -> None:
    path, expected = model_with_locations(tmp_path)
    assert sorted(external_locations(path.read_bytes())) == sorted(expected)
    for name in set(expected):
        (tmp_path / name).write_bytes(WEIGHTS.tobytes())
    check_external_data(path)  # mapped: every location found and accepted
    (tmp_path / "sparse.bin").unlink()
    with pytest.raises(ArtifactError, match="'sparse.bin' is not a file beside"):
        check_external_data(path)
