"""Where an ONNX file's tensors keep external data, read without the onnx package, and checked.

An ONNX model may store large tensors in other files named by a relative ``location``. Some
onnxruntime versions follow any location, so a crafted model could read ``../../etc/passwd`` or
a symlinked file as weights. The runtime refuses such a model before any runtime sees it,
whatever the installed version: external data must be plain files inside the model's own folder.

The file is walked at the protobuf wire level (ModelProto -> graphs -> initializers, node
attributes, sparse tensors, functions, training graphs), so the torch- and onnx-free runtime
needs nothing beyond the standard library. The walker and the file mapping below are shared
with :mod:`symnets_deploy.onnx_metadata`.

The walk must end quickly whatever the file holds, since it runs before every load: a file over
protobuf's 2 GiB limit is refused from its size alone, the file is mapped rather than read,
the first malformed tag (field number 0, as in a file of zeros, or a wire type ONNX never uses)
stops it, and each field costs O(1) steps (fields not needed are jumped over), so the time
grows with the number of fields in the file, not with its bytes.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from symnets_deploy.errors import ArtifactError

#: Protobuf refuses to serialize or parse a message larger than this (INT_MAX bytes).
MAX_MESSAGE_BYTES = 2**31 - 1
#: Wire types: the only four ONNX writes (3 and 4, groups, are deprecated; 6 and 7 do not exist).
VARINT, I64, LEN, I32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10  # 64 bits at 7 bits a byte
_MAX_FIELD_NUMBER = 2**29 - 1

#: Anything indexable to ints and sliceable to bytes: ``bytes``, ``memoryview``, ``mmap.mmap``.
Buffer = bytes | bytearray | memoryview | mmap.mmap

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


def _read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos``.

    Returns:
        ``(value, position after it)``.

    Raises:
        ArtifactError: it runs past ``end`` or is longer than 10 bytes.
    """
    if pos < end:
        value = buf[pos]
        if value < 0x80:  # one byte: nearly every tag and length, so worth its own path
            return value, pos + 1
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= end:
            raise ArtifactError(f"truncated varint at byte {pos}: the message ends inside it")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise ArtifactError(f"malformed varint at byte {pos}: longer than {_MAX_VARINT_BYTES} bytes")


def wire_fields(buf: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Walk one message's fields without decoding their payloads, O(1) steps per field.

    Args:
        buf: the serialized bytes.
        start, end: the message's byte range in ``buf``.

    Yields:
        ``(field number, wire type, field start, payload start, field end)`` per field, where
        ``buf[field start:field end]`` is the whole field (tag included) and, for wire type 2,
        ``buf[payload start:field end]`` is its payload.

    Raises:
        ArtifactError: truncated or over-long varint, a length or fixed-size value past ``end``,
            field number 0 or over 2**29 - 1, or a wire type other than 0, 1, 2 and 5. The
            message is one line without the file name; callers add it.
    """
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            raise ArtifactError(f"malformed protobuf at byte {field_start}: field number {number}")
        if wire == VARINT:
            _, pos = _read_varint(buf, pos, end)
            payload = pos
        elif wire in (I64, I32):
            payload, pos = pos, pos + (8 if wire == I64 else 4)
        elif wire == LEN:
            length, payload = _read_varint(buf, pos, end)
            pos = payload + length
        elif wire in (3, 4):
            raise ArtifactError(f"unsupported protobuf wire type {wire} (group) in field {number} at byte {field_start}")
        else:
            raise ArtifactError(f"invalid protobuf wire type {wire} in field {number} at byte {field_start}")
        if pos > end:
            raise ArtifactError(f"field {number} at byte {field_start} runs {pos - end} bytes past the end of its message")
        yield number, wire, field_start, payload, pos


@contextmanager
def mapped_onnx(path: str | Path) -> Iterator[mmap.mmap]:
    """The bytes of an ONNX file, mapped read-only instead of read into memory.

    The size is checked on the open file before anything is mapped, so a huge or sparse file
    is refused at once; a FIFO is opened without blocking and refused. Slices of the map are
    ``bytes`` copies, so nothing holds it open after the ``with`` block.

    Args:
        path: the ``.onnx`` file.

    Yields:
        A read-only ``mmap`` of the whole file (index: int, slice: bytes, ``len``).

    Raises:
        ArtifactError: not a regular file, empty, or larger than protobuf's 2 GiB; the message
            names the file.
        OSError: the file cannot be opened or mapped.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{path}: not a regular file, so not an ONNX model")
        if info.st_size == 0:
            raise ArtifactError(f"{path}: empty file (0 bytes), not an ONNX model")
        if info.st_size > MAX_MESSAGE_BYTES:
            raise ArtifactError(
                f"{path}: {info.st_size / 2**30:.1f} GiB, over the 2 GiB that a protobuf ModelProto can hold, so not an ONNX "
                "model (larger models keep their weights in external data files); refused before reading it"
            )
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)  # the map keeps its own reference to the file
    # A file truncated in place while mapped would fault (SIGBUS) on the next read; the walk lasts
    # milliseconds, and our writers replace models by rename (atomic_write), never in place.
    with mapped:
        yield mapped


def external_locations(data: Buffer) -> list[str]:
    """The ``location`` of every external-data tensor in a serialized ModelProto.

    Args:
        data: the whole serialized model (``bytes``, or the map of :func:`mapped_onnx`).

    Returns:
        The locations in the order of the walk, undecodable bytes kept as surrogate escapes.

    Raises:
        ArtifactError: the bytes are not a well-formed protobuf message (see :func:`wire_fields`).
    """
    locations: list[str] = []
    stack = [("model", 0, len(data))]
    while stack:
        kind, start, end = stack.pop()
        if kind == "tensor":
            for number, wire, _, payload, field_end in wire_fields(data, start, end):
                if number == _TENSOR_EXTERNAL_DATA and wire == LEN:
                    entry = {n: data[p:e] for n, w, _, p, e in wire_fields(data, payload, field_end) if w == LEN}
                    if entry.get(1) == b"location":
                        locations.append(bytes(entry.get(2, b"")).decode("utf-8", errors="surrogateescape"))
            continue
        children = _KINDS[kind]
        stack.extend((children[n], p, e) for n, w, _, p, e in wire_fields(data, start, end) if w == LEN and n in children)
    return locations


def check_external_data(path: str | Path) -> None:
    """Refuse an ONNX file whose external data is not a plain file inside the model's folder.

    Args:
        path: the ``.onnx`` file.

    Raises:
        ArtifactError: unreadable, empty, over 2 GiB or malformed file, or an external-data
            location that is absolute, climbs out with ``..``, resolves outside the folder, is
            a symlink, or is missing.
    """
    path = Path(path)
    try:
        with mapped_onnx(path) as data:
            try:
                locations = external_locations(data)
            except ArtifactError as exc:  # the walker's message lacks the file name
                raise ArtifactError(f"{path}: cannot load it: not a well-formed ONNX file ({exc})") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read it ({exc.strerror or exc})") from None
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
