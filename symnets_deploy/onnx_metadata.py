"""Read and set an ONNX model's string metadata without the onnx package.

An edge install has numpy, pillow and onnxruntime only, yet still needs to stamp and read the
``metadata_props`` of a model (field 14 of ``ModelProto``, a repeated
``StringStringEntryProto {string key = 1; string value = 2;}``). This module walks the
protobuf wire format of the *top-level* ``ModelProto`` and nothing below it: the graph and
every other field are skipped by wire type and copied as opaque bytes, so a rewrite leaves
them byte-identical.

Duplicate keys: onnxruntime's ``get_modelmeta().custom_metadata_map`` keeps the *last* entry
of a key (checked with onnxruntime 1.32 in ``tests/runtime/test_onnx_metadata.py``), and
:func:`read_metadata` does the same. ``onnx.checker`` rejects duplicates, so
:func:`set_metadata` removes every older entry of a key it sets.

Models over 2 GB keep their tensors in external files named relative to the model; only the
bytes of the ``.onnx`` file itself are read or written here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.external_data import external_locations

_METADATA_PROPS = 14  # ModelProto.metadata_props
_KEY, _VALUE = 1, 2  # StringStringEntryProto
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10  # 64 bits at 7 bits a byte


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos``; returns ``(value, position after it)``."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= end:
            raise ArtifactError(f"truncated varint at byte {pos}: the file ends inside it")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise ArtifactError(f"malformed varint at byte {pos}: longer than {_MAX_VARINT_BYTES} bytes")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Walk one message's fields without decoding their payloads.

    Args:
        buf: the serialized bytes.
        start, end: the message's byte range in ``buf``.

    Yields:
        ``(field number, wire type, field start, payload start, field end)`` per field, where
        ``buf[field start:field end]`` is the whole field (tag included) and, for wire type 2,
        ``buf[payload start:field end]`` is its payload.

    Raises:
        ArtifactError: truncated varint, a length or fixed-size value past ``end``, field
            number 0, or a wire type other than 0, 1, 2 and 5 (3/4 are deprecated groups).
    """
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ArtifactError(f"malformed protobuf at byte {field_start}: field number 0")
        if wire == _VARINT:
            _, pos = _varint(buf, pos, end)
            payload = pos
        elif wire in (_I64, _I32):
            payload, pos = pos, pos + (8 if wire == _I64 else 4)
        elif wire == _LEN:
            length, payload = _varint(buf, pos, end)
            pos = payload + length
        elif wire in (3, 4):
            raise ArtifactError(f"unsupported protobuf wire type {wire} (group) in field {number} at byte {field_start}")
        else:
            raise ArtifactError(f"invalid protobuf wire type {wire} in field {number} at byte {field_start}")
        if pos > end:
            raise ArtifactError(f"field {number} at byte {field_start} runs {pos - end} bytes past the end of its message")
        yield number, wire, field_start, payload, pos


def _decode(raw: memoryview, what: str, at: int) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"metadata {what} at byte {at} is not UTF-8 ({exc.reason})") from None


def _entries(data: bytes) -> Iterator[tuple[str, str, int, int]]:
    """``(key, value, field start, field end)`` of every top-level metadata entry, in file order."""
    buf = memoryview(data)
    for number, wire, start, payload, end in _fields(buf, 0, len(buf)):
        if number != _METADATA_PROPS:
            continue
        if wire != _LEN:
            raise ArtifactError(f"metadata_props (field 14) at byte {start} has wire type {wire}, not 2 (length-delimited)")
        # Protobuf semantics: a missing string is "", a repeated singular field keeps its last value.
        key = value = ""
        for sub, sub_wire, sub_start, sub_payload, sub_end in _fields(buf, payload, end):
            if sub in (_KEY, _VALUE):
                if sub_wire != _LEN:
                    raise ArtifactError(f"metadata entry field {sub} at byte {sub_start} has wire type {sub_wire}, not 2")
                if sub == _KEY:
                    key = _decode(buf[sub_payload:sub_end], "key", sub_start)
                else:
                    value = _decode(buf[sub_payload:sub_end], "value", sub_start)
        yield key, value, start, end


def read_metadata(data: bytes) -> dict[str, str]:
    """The ``metadata_props`` of a serialized ONNX ``ModelProto``.

    Only the top-level message is walked; the graph is skipped, not parsed.

    Args:
        data: the bytes of a ``.onnx`` file (an empty message gives ``{}``).

    Returns:
        ``{key: value}`` in first-appearance order. For a key present more than once the last
        entry's value wins, as in onnxruntime's ``custom_metadata_map``.

    Raises:
        ArtifactError: the bytes are not a well-formed protobuf message (truncated varint,
            length past the end, unsupported wire type) or a key/value is not UTF-8. The
            message is one line without the file name; callers add it.
    """
    return {key: value for key, value, _, _ in _entries(data)}


def _encode_entry(key: str, value: str) -> bytes:
    k, v = key.encode("utf-8"), value.encode("utf-8")
    body = bytes([_KEY << 3 | _LEN]) + _encode_varint(len(k)) + k + bytes([_VALUE << 3 | _LEN]) + _encode_varint(len(v)) + v
    return bytes([_METADATA_PROPS << 3 | _LEN]) + _encode_varint(len(body)) + body


def _check_entries(entries: Mapping[str, str]) -> None:
    for key, value in entries.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"metadata keys and values must be str, got {type(key).__name__} -> {type(value).__name__} for {key!r}")
        for text, what in ((key, "key"), (value, "value")):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"metadata {what} for {key!r} cannot be encoded as UTF-8 (lone surrogate?)") from None


def set_metadata(data: bytes, entries: Mapping[str, str]) -> bytes:
    """A copy of a serialized ``ModelProto`` in which each key of ``entries`` has that value.

    Every existing top-level ``metadata_props`` entry whose key is in ``entries`` is removed,
    then one entry per key is appended at the end, in ``entries`` order. All other fields,
    including other metadata entries, keep their bytes and their order; the graph is never
    decoded. Protobuf parsers merge repeated fields wherever they appear, so onnx and
    onnxruntime both read the appended entries.

    Args:
        data: the bytes of a ``.onnx`` file.
        entries: ``{key: value}``, both ``str``; an empty mapping returns the input unchanged.

    Returns:
        The new serialized model.

    Raises:
        ArtifactError: ``data`` is malformed (see :func:`read_metadata`).
        UsageError: a key or value is not a ``str`` or not encodable as UTF-8.
    """
    _check_entries(entries)
    buf = memoryview(data)
    parts: list[memoryview | bytes] = []
    kept = 0  # start of the run of bytes not yet copied
    for key, _, start, end in _entries(data):
        if key in entries:
            parts.append(buf[kept:start])
            kept = end
    parts.append(buf[kept:])
    parts.extend(_encode_entry(key, value) for key, value in entries.items())
    return b"".join(parts)


def set_metadata_file(src: str | Path, dst: str | Path, entries: Mapping[str, str]) -> Path:
    """Write a copy of the ONNX file ``src`` to ``dst`` with the metadata ``entries`` set.

    ``dst`` is written atomically (a temp file renamed into place), so a reader never sees a
    half-written model. Writing in place is refused: keep the original until the copy is
    checked, then rename it yourself.

    Args:
        src: an existing ``.onnx`` file.
        dst: the output path; its folder is created if needed. When ``src`` has external data,
            ``dst`` must be in the same folder, since data locations are relative to the model.
        entries: ``{key: value}`` as in :func:`set_metadata`.

    Returns:
        ``dst``.

    Raises:
        UsageError: ``dst`` is ``src`` (same resolved path or same file), ``src`` cannot be
            read, an entry is not ``str``, or ``dst`` would lose ``src``'s external data.
        ArtifactError: ``src`` is not a well-formed protobuf message; the message names ``src``.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)):
        raise UsageError(f"{dst}: is the input model {src}; write the copy elsewhere")
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise UsageError(f"{src}: cannot read it ({exc.strerror or exc})") from None
    try:
        out = set_metadata(data, entries)
    except ArtifactError as exc:
        raise ArtifactError(f"{src}: not a well-formed ONNX file ({exc})") from None
    if src.parent.resolve() != dst.parent.resolve():
        try:
            locations = external_locations(data)
        except ValueError as exc:
            raise ArtifactError(f"{src}: not a well-formed ONNX file ({exc})") from None
        if locations:
            raise UsageError(
                f"{dst}: {src} keeps tensors in external files ({locations[0]!r}, ...) relative to its folder; "
                "write the copy into that same folder"
            )
    return atomic_write(dst, lambda tmp: tmp.write_bytes(out))
