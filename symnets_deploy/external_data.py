"""Where an ONNX file's tensors keep external data, read without the onnx package, and checked.

An ONNX model may store large tensors in other files named by a relative ``location``. Some
onnxruntime versions follow any location, so a crafted model could read ``../../etc/passwd`` or
a symlinked file as weights. The runtime refuses such a model before any runtime sees it,
whatever the installed version: external data must be plain files inside the model's own folder.

The file is walked at the protobuf wire level (ModelProto -> graphs -> initializers, node
attributes, sparse tensors, functions, training graphs), so the torch- and onnx-free runtime
needs nothing beyond the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from symnets_deploy.errors import ArtifactError

# Field numbers of onnx.proto that lead to TensorProtos, per message kind.
_MODEL = {7: "graph", 20: "training", 25: "function"}
_TRAINING = {1: "graph", 2: "graph"}
_FUNCTION = {7: "node"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_KINDS = {"model": _MODEL, "training": _TRAINING, "function": _FUNCTION, "graph": _GRAPH, "node": _NODE, "attribute": _ATTRIBUTE, "sparse": _SPARSE}
_TENSOR_EXTERNAL_DATA = 13  # repeated StringStringEntryProto {key = 1, value = 2}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _messages(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, end)`` of every length-delimited field of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("field runs past its message")
            yield key >> 3, pos, pos + length
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")


def external_locations(data: bytes) -> list[str]:
    """The ``location`` of every external-data tensor in a serialized ModelProto.

    Raises:
        ValueError: the bytes are not a well-formed protobuf message.
    """
    buf = memoryview(data)
    locations: list[str] = []
    stack = [("model", 0, len(buf))]
    while stack:
        kind, start, end = stack.pop()
        if kind == "tensor":
            for field, s, e in _messages(buf, start, end):
                if field == _TENSOR_EXTERNAL_DATA:
                    entry = {f: bytes(buf[a:b]) for f, a, b in _messages(buf, s, e)}
                    if entry.get(1) == b"location":
                        locations.append(entry.get(2, b"").decode("utf-8", errors="surrogateescape"))
            continue
        children = _KINDS[kind]
        stack.extend((children[field], s, e) for field, s, e in _messages(buf, start, end) if field in children)
    return locations


def check_external_data(path: str | Path) -> None:
    """Refuse an ONNX file whose external data is not a plain file inside the model's folder.

    Args:
        path: the ``.onnx`` file.

    Raises:
        ArtifactError: unreadable or malformed file, or an external-data location that is
            absolute, climbs out with ``..``, resolves outside the folder, is a symlink, or is
            missing.
    """
    path = Path(path)
    try:
        locations = external_locations(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot load it: not a well-formed ONNX file ({exc})") from None
    folder = os.path.realpath(path.parent)
    for location in locations:
        candidate = path.parent / location
        problem = None
        if not location or os.path.isabs(location) or ".." in Path(location).parts:
            problem = "must be a relative path inside the model's folder"
        elif candidate.is_symlink() or not os.path.realpath(candidate).startswith(folder + os.sep):
            problem = "leads outside the model's folder (through a symlink)"
        elif not candidate.is_file():
            problem = "is not a file beside the model"
        if problem:
            raise ArtifactError(f"{path}: external data {location!r} {problem}; refused before loading")
