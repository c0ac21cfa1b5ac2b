"""ONNX metadata read and set at the wire level, checked against onnx and onnxruntime."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from symnets_deploy import onnx_metadata
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.onnx_metadata import (
    read_metadata,
    read_metadata_file,
    set_metadata,
    set_metadata_file,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

BASE_META = [("symnets.card", '{"classes": 3}'), ("author", "lab"), ("license", "MIT")]


def _model(meta=BASE_META):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="symnets", producer_version="1.2")
    model.ir_version = 8
    model.model_version = 7
    model.doc_string = "tiny test model"
    for key, value in meta:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


@pytest.fixture
def data() -> bytes:
    return _model().SerializeToString()


def _session(blob: bytes):
    return ort.InferenceSession(blob, providers=["CPUExecutionProvider"])


def _pairs(blob: bytes) -> list[tuple[str, str]]:
    return [(e.key, e.value) for e in onnx.load_from_string(blob).metadata_props]


def _without_metadata(blob: bytes):
    model = onnx.load_from_string(blob)
    del model.metadata_props[:]
    return model


# -- read ------------------------------------------------------------------------------------


@pytest.mark.parametrize("meta", [[], BASE_META, [("a", "1"), ("b", "2"), ("a", "3")]], ids=["none", "three", "duplicate"])
def test_read_matches_onnx(meta):
    blob = _model(meta).SerializeToString()
    assert read_metadata(blob) == dict(_pairs(blob))  # dict(): last duplicate wins
    assert read_metadata(blob) == dict(meta)


def test_read_empty_message_is_empty():
    assert read_metadata(b"") == {}


@pytest.mark.parametrize("order", [("1", "3"), ("3", "1")])
def test_duplicate_keys_last_wins_like_onnxruntime(order):
    first, last = order
    blob = _model([("a", first), ("b", "2"), ("a", last)]).SerializeToString()
    ort_map = _session(blob).get_modelmeta().custom_metadata_map
    assert ort_map == {"a": last, "b": "2"}
    assert read_metadata(blob) == ort_map


def test_entry_fields_in_any_order_and_unknown_fields_skipped():
    # value before key, plus an unknown varint field 3 inside the entry: protobuf accepts both.
    entry = b"\x12\x01v" + b"\x18\x05" + b"\x0a\x01k"
    blob = _model([]).SerializeToString() + b"\x72" + bytes([len(entry)]) + entry
    assert _pairs(blob) == [("k", "v")]
    assert read_metadata(blob) == {"k": "v"}


# -- set -------------------------------------------------------------------------------------


def test_set_adds_key_seen_by_onnx_and_onnxruntime(data):
    out = set_metadata(data, {"symnets.calibration": "0.93"})
    assert out.startswith(data)  # nothing removed: the old bytes are a prefix
    assert _pairs(out) == BASE_META + [("symnets.calibration", "0.93")]
    meta = _session(out).get_modelmeta()
    assert meta.custom_metadata_map == dict(BASE_META) | {"symnets.calibration": "0.93"}
    assert meta.producer_name == "symnets" and meta.version == 7
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    before, = _session(data).run(["logits"], {"images": x})
    after, = _session(out).run(["logits"], {"images": x})
    np.testing.assert_array_equal(after, before)


def test_replace_leaves_one_entry_with_the_new_value():
    blob = _model([("a", "1"), ("keep", "k"), ("a", "2"), ("z", "last")]).SerializeToString()
    out = set_metadata(blob, {"a": "new"})
    assert _pairs(out) == [("keep", "k"), ("z", "last"), ("a", "new")]
    assert read_metadata(out) == {"keep": "k", "z": "last", "a": "new"}
    assert _session(out).get_modelmeta().custom_metadata_map == {"keep": "k", "z": "last", "a": "new"}
    onnx.checker.check_model(onnx.load_from_string(out))  # no duplicate keys left


def test_other_fields_unchanged(data):
    out = set_metadata(data, {"author": "someone else", "new": "x"})
    assert _without_metadata(out) == _without_metadata(data)  # graph, opset, producer, doc, versions
    old, new = onnx.load_from_string(data), onnx.load_from_string(out)
    assert new.graph.SerializeToString() == old.graph.SerializeToString()
    assert new.opset_import == old.opset_import
    assert (new.producer_name, new.producer_version, new.ir_version, new.model_version) == ("symnets", "1.2", 8, 7)
    assert _pairs(out) == [("symnets.card", '{"classes": 3}'), ("license", "MIT"), ("author", "someone else"), ("new", "x")]


def test_set_is_idempotent_and_empty_is_identity(data):
    once = set_metadata(data, {"a": "1", "author": "x"})
    assert set_metadata(once, {"a": "1", "author": "x"}) == once
    assert set_metadata(data, {}) == data


def test_unicode_keys_and_values(data):
    entries = {"名前": "ÄÖÜ 🚀 ümlaut", "emoji🙂": "", "plain": "line1\nline2\t\u0000end"}
    out = set_metadata(data, entries)
    assert read_metadata(out) == dict(BASE_META) | entries
    assert dict(_pairs(out)) == dict(BASE_META) | entries
    assert _session(out).get_modelmeta().custom_metadata_map == dict(BASE_META) | entries


def test_large_json_value(data):
    payload = json.dumps({"centroids": [[i * 0.5, -i] for i in range(70_000)]})
    assert len(payload) > 1_000_000
    out = set_metadata(data, {"symnets.clusters": payload})
    assert read_metadata(out)["symnets.clusters"] == payload
    assert dict(_pairs(out))["symnets.clusters"] == payload
    assert json.loads(_session(out).get_modelmeta().custom_metadata_map["symnets.clusters"]) == json.loads(payload)


def test_set_rejects_non_str_entries(data):
    with pytest.raises(UsageError, match="must be str"):
        set_metadata(data, {"n": 3})
    with pytest.raises(UsageError, match="UTF-8"):
        set_metadata(data, {"bad": "\ud800"})


# -- malformed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"\x80", "truncated varint"),
        (b"\x08\xff\xff", "truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x72\x05ab", "past the end"),
        (b"\x09\x00\x00", "past the end"),  # fixed64 with 2 of 8 bytes
        (b"\x0b", "wire type 3 \\(group\\)"),
        (b"\x0c", "wire type 4 \\(group\\)"),
        (b"\x0e", "invalid protobuf wire type 6"),
        (b"\x00\x01", "field number 0"),
        (b"\x80\x80\x80\x80\x10\x00", "field number 536870912"),  # over protobuf's 2**29 - 1
        (b"\x0f", "invalid protobuf wire type 7"),
        (b"\x70\x01", "field 14.*wire type 0"),
        (b"\x72\x04\x0a\x05abc", "past the end"),  # entry's key runs past the entry
        (b"\x72\x03\x0a\x01\xff", "not UTF-8"),
    ],
)
def test_malformed_raises_artifact_error(blob, match):
    for call in (lambda: read_metadata(blob), lambda: set_metadata(blob, {"k": "v"})):
        with pytest.raises(ArtifactError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_truncated_model_raises(data):
    with pytest.raises(ArtifactError, match="past the end"):
        read_metadata(data[: len(data) // 2])


# -- files -----------------------------------------------------------------------------------


def test_set_metadata_file_writes_a_copy(tmp_path, data):
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    dst = set_metadata_file(src, tmp_path / "out" / "stamped.onnx", {"k": "v"})
    assert dst == tmp_path / "out" / "stamped.onnx"
    assert read_metadata(dst.read_bytes()) == dict(BASE_META) | {"k": "v"}
    assert src.read_bytes() == data
    assert [p.name for p in dst.parent.iterdir()] == ["stamped.onnx"]  # no temp left behind


def test_set_metadata_file_copies_the_mapped_source_in_chunks(tmp_path, data, monkeypatch):
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    monkeypatch.setattr(onnx_metadata, "_COPY_CHUNK", 7)  # many chunks, none aligned with a field
    dst = set_metadata_file(src, tmp_path / "stamped.onnx", {"author": "x", "k": "v"})
    assert dst.read_bytes() == set_metadata(data, {"author": "x", "k": "v"})


def test_read_metadata_file_matches_the_bytes(tmp_path, data):
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    assert read_metadata_file(src) == read_metadata(data) == dict(BASE_META)
    src.write_bytes(b"\x72\x05ab")
    with pytest.raises(ArtifactError, match=r"model\.onnx: not a well-formed ONNX file \(.*past the end"):
        read_metadata_file(src)
    with pytest.raises(ArtifactError, match=r"missing\.onnx: cannot read it"):
        read_metadata_file(tmp_path / "missing.onnx")


@pytest.mark.parametrize(("size", "match"), [
    (3 * 2**30, r"3\.0 GiB, over the 2 GiB .*refused before reading it"),  # sparse: no disk used
    (0, r"empty file \(0 bytes\)"),
    (4 * 2**20, r"not a well-formed ONNX file \(malformed protobuf at byte 0: field number 0\)"),
])
def test_huge_empty_and_zero_files_are_refused_at_once(tmp_path, size, match):
    src = tmp_path / "big.onnx"
    src.touch()
    os.truncate(src, size)
    with pytest.raises(ArtifactError, match=rf"big\.onnx: {match}") as info:
        read_metadata_file(src)
    assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match=rf"big\.onnx: {match}"):
        set_metadata_file(src, tmp_path / "out.onnx", {"k": "v"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx"]


def test_set_metadata_file_refuses_its_input(tmp_path, data):
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.onnx").symlink_to(src)
    os.link(src, tmp_path / "hard.onnx")
    for dst in (src, tmp_path / "sub" / ".." / "model.onnx", tmp_path / "link.onnx", tmp_path / "hard.onnx"):
        with pytest.raises(UsageError, match="is the input model"):
            set_metadata_file(src, dst, {"k": "v"})
    assert src.read_bytes() == data


def test_set_metadata_file_names_the_file(tmp_path):
    src = tmp_path / "broken.onnx"
    src.write_bytes(b"\x72\x05ab")
    with pytest.raises(ArtifactError, match=r"broken\.onnx: .*past the end"):
        set_metadata_file(src, tmp_path / "out.onnx", {"k": "v"})
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(UsageError, match="cannot read"):
        set_metadata_file(tmp_path / "missing.onnx", tmp_path / "out.onnx", {"k": "v"})


def test_set_metadata_file_keeps_external_data_reachable(tmp_path):
    src = tmp_path / "big.onnx"
    onnx.save_model(_model(), src, save_as_external_data=True, all_tensors_to_one_file=True, location="big.data", size_threshold=0)
    assert read_metadata(src.read_bytes()) == dict(BASE_META)
    with pytest.raises(UsageError, match="same folder"):
        set_metadata_file(src, tmp_path / "elsewhere" / "big.onnx", {"k": "v"})
    dst = set_metadata_file(src, tmp_path / "big.stamped.onnx", {"k": "v"})
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["k"] == "v"
    x = np.ones((2, 4), np.float32)
    expected, = _session(_model().SerializeToString()).run(["logits"], {"images": x})
    np.testing.assert_array_equal(session.run(["logits"], {"images": x})[0], expected)
