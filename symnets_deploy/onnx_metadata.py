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
bytes of the ``.onnx`` file itself are read or written here. Files are mapped, not read whole
(:func:`~symnets_deploy.external_data.mapped_onnx`), and walked with the same field walker as
the external-data check, so a huge or zero-filled file is refused at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.external_data import (
    LEN,
    Buffer,
    external_locations,
    mapped_onnx,
    wire_fields,
)

_METADATA_PROPS = 14  # ModelProto.metadata_props
_KEY, _VALUE = 1, 2  # StringStringEntryProto
_COPY_CHUNK = 1 << 24  # bytes copied from the source map per write


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode(raw: Buffer, what: str, at: int) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"metadata {what} at byte {at} is not UTF-8 ({exc.reason})") from None


def _entries(data: Buffer) -> Iterator[tuple[str, str, int, int]]:
    """``(key, value, field start, field end)`` of every top-level metadata entry, in file order."""
    for number, wire, start, payload, end in wire_fields(data, 0, len(data)):
        if number != _METADATA_PROPS:
            continue
        if wire != LEN:
            raise ArtifactError(f"metadata_props (field 14) at byte {start} has wire type {wire}, not 2 (length-delimited)")
        # Protobuf semantics: a missing string is "", a repeated singular field keeps its last value.
        key = value = ""
        for sub, sub_wire, sub_start, sub_payload, sub_end in wire_fields(data, payload, end):
            if sub in (_KEY, _VALUE):
                if sub_wire != LEN:
                    raise ArtifactError(f"metadata entry field {sub} at byte {sub_start} has wire type {sub_wire}, not 2")
                if sub == _KEY:
                    key = _decode(data[sub_payload:sub_end], "key", sub_start)
                else:
                    value = _decode(data[sub_payload:sub_end], "value", sub_start)
        yield key, value, start, end


def read_metadata(data: Buffer) -> dict[str, str]:
    """The ``metadata_props`` of a serialized ONNX ``ModelProto``.

    Only the top-level message is walked; the graph is skipped, not parsed.

    Args:
        data: the bytes of a ``.onnx`` file (an empty message gives ``{}``), or the map of
            :func:`~symnets_deploy.external_data.mapped_onnx`.

    Returns:
        ``{key: value}`` in first-appearance order. For a key present more than once the last
        entry's value wins, as in onnxruntime's ``custom_metadata_map``.

    Raises:
        ArtifactError: the bytes are not a well-formed protobuf message (truncated varint,
            length past the end, field number 0, unsupported wire type) or a key/value is not
            UTF-8. The message is one line without the file name; callers add it.
    """
    return {key: value for key, value, _, _ in _entries(data)}


def read_metadata_file(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file ``path``, mapped rather than read into memory.

    Args:
        path: an ``.onnx`` file.

    Returns:
        As :func:`read_metadata`.

    Raises:
        ArtifactError: the file cannot be read, is empty, over 2 GiB or malformed; the message
            names the file.
    """
    try:
        with mapped_onnx(path) as data:
            try:
                return read_metadata(data)
            except ArtifactError as exc:  # the walker's message lacks the file name
                raise ArtifactError(f"{path}: not a well-formed ONNX file ({exc})") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _encode_entry(key: str, value: str) -> bytes:
    k, v = key.encode("utf-8"), value.encode("utf-8")
    body = bytes([_KEY << 3 | LEN]) + _encode_varint(len(k)) + k + bytes([_VALUE << 3 | LEN]) + _encode_varint(len(v)) + v
    return bytes([_METADATA_PROPS << 3 | LEN]) + _encode_varint(len(body)) + body


def _check_entries(entries: Mapping[str, str]) -> None:
    for key, value in entries.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageError(f"metadata keys and values must be str, got {type(key).__name__} -> {type(value).__name__} for {key!r}")
        for text, what in ((key, "key"), (value, "value")):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"metadata {what} for {key!r} cannot be encoded as UTF-8 (lone surrogate?)") from None


def _splice(data: Buffer, entries: Mapping[str, str]) -> tuple[list[tuple[int, int]], bytes]:
    """How :func:`set_metadata` rewrites ``data``: the byte ranges it keeps, then the bytes it appends."""
    _check_entries(entries)
    kept: list[tuple[int, int]] = []
    copied = 0  # start of the run of bytes not yet kept
    for key, _, start, end in _entries(data):
        if key in entries:
            kept.append((copied, start))
            copied = end
    kept.append((copied, len(data)))
    return kept, b"".join(_encode_entry(key, value) for key, value in entries.items())


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
    kept, appended = _splice(data, entries)
    buf = memoryview(data)
    return b"".join([*(buf[start:end] for start, end in kept), appended])


def set_metadata_file(src: str | Path, dst: str | Path, entries: Mapping[str, str]) -> Path:
    """Write a copy of the ONNX file ``src`` to ``dst`` with the metadata ``entries`` set.

    ``dst`` is written atomically (a temp file renamed into place), so a reader never sees a
    half-written model. Writing in place is refused: keep the original until the copy is
    checked, then rename it yourself. ``src`` is mapped and copied in chunks, never held in
    memory whole.

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
        ArtifactError: ``src`` is empty, over 2 GiB or not a well-formed protobuf message; the
            message names ``src``.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)):
        raise UsageError(f"{dst}: is the input model {src}; write the copy elsewhere")
    with ExitStack() as stack:
        try:
            data = stack.enter_context(mapped_onnx(src))
        except OSError as exc:
            raise UsageError(f"{src}: cannot read it ({exc.strerror or exc})") from None
        try:
            kept, appended = _splice(data, entries)
            locations = external_locations(data) if src.parent.resolve() != dst.parent.resolve() else []
        except ArtifactError as exc:  # the walker's message lacks the file name
            raise ArtifactError(f"{src}: not a well-formed ONNX file ({exc})") from None
        if locations:
            raise UsageError(
                f"{dst}: {src} keeps tensors in external files ({locations[0]!r}, ...) relative to its folder; "
                "write the copy into that same folder"
            )

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as out:
                out.writelines(data[at : min(at + _COPY_CHUNK, end)] for start, end in kept for at in range(start, end, _COPY_CHUNK))
                out.write(appended)

        return atomic_write(dst, write)
