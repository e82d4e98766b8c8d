"""A minimal protobuf wire-format reader: walks messages in place, never copies payload bytes.

ONNX files are protobuf messages. ``onnx.load`` materialises every tensor payload; to size a model we
only need names, dims, data types and *where* each payload lies. These helpers iterate the fields of a
message inside a buffer (an ``mmap`` of the file) and return byte offsets, so a 27 GB model is read by
touching only its few megabytes of structure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "FIXED32",
    "FIXED64",
    "LEN",
    "VARINT",
    "Buffer",
    "WireError",
    "count_varints",
    "encode_varint",
    "iter_fields",
    "len_fields",
    "read_varint",
    "to_int64",
]

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10
_COUNT_CHUNK = 1 << 24


class Buffer(Protocol):
    """What the reader needs from a buffer: ``bytes``, ``memoryview`` and ``mmap`` all qualify."""

    def __getitem__(self, index: int, /) -> int: ...  # pragma: no cover - protocol

    def __len__(self) -> int: ...  # pragma: no cover - protocol


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, bad length, bad wire type)."""


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, position after it)."""
    result = 0
    shift = 0
    for _ in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise WireError("varint longer than 10 bytes")


def to_int64(value: int) -> int:
    """Reinterpret a decoded varint as a signed int64 (negative numbers take 10 bytes on the wire)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer (or an int64 as two's complement) as a varint."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def len_field(field: int, payload: bytes | bytearray) -> bytes:
    """A LEN field of ``payload``: key, length and the bytes (any field number: a key of 16 or
    more takes two bytes)."""
    return encode_varint(field << 3 | LEN) + encode_varint(len(payload)) + payload


def iter_fields(buf: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Iterate the fields of the message in ``buf[start:end]``.

    Yields ``(field_number, wire_type, field_start, value_start, value_end)``: for LEN fields the value
    is ``buf[value_start:value_end]``; for VARINT fields ``value_start`` is the decoded value and
    ``value_end`` the position after it; FIXED32/FIXED64 span their 4/8 bytes. ``field_start`` is where
    the field's key begins, so ``buf[field_start:value_end]`` is the whole field, verbatim.

    Raises:
        WireError: a length running past ``end``, an unknown or group wire type, field number 0.
    """
    pos = start
    while pos < end:
        field_start = pos
        key, pos = read_varint(buf, pos, end)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield field, wire_type, field_start, value, pos
        elif wire_type == LEN:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"a field claims {length} bytes but only {end - pos} remain")
            yield field, wire_type, field_start, pos, pos + length
            pos += length
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield field, wire_type, field_start, pos, pos + 8
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield field, wire_type, field_start, pos, pos + 4
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")


def len_fields(buf: Buffer, start: int, end: int) -> list[tuple[int, int, int]]:
    """``(field_number, value_start, value_end)`` of each LEN field of the message in
    ``buf[start:end]``; other fields are skipped, and checked as by :func:`iter_fields`.

    A list, with one-byte keys and lengths decoded inline: several times faster than
    :func:`iter_fields` on messages of many small fields (a value_info per tensor).
    """
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80 and key & 7 == LEN and key >> 3:
            pos += 1
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"a field claims {length} bytes but only {end - pos} remain")
            out.append((key >> 3, pos, pos + length))
            pos += length
            continue
        for field, wire_type, _fs, a, b in iter_fields(buf, pos, end):
            if wire_type == LEN:
                out.append((field, a, b))
            pos = b
            break
    return out


def count_varints(buf: Buffer, start: int, end: int) -> int:
    """Count the varints packed in ``buf[start:end]`` (bytes with the high bit clear end one).

    Works through numpy in chunks so a large packed field is counted without a Python loop and without
    holding more than one chunk of temporaries. No view of ``buf`` outlives the call, also when it
    raises: a live view would stop the caller from closing its memory map.

    Raises:
        WireError: the field ends inside a varint.
    """
    import numpy as np

    if end > start and buf[end - 1] & 0x80:
        raise WireError("packed varint field ends inside a varint")
    total = 0
    pos = start
    while pos < end:
        stop = min(end, pos + _COUNT_CHUNK)
        view = np.frombuffer(buf, dtype=np.uint8, count=stop - pos, offset=pos)  # type: ignore[call-overload]
        try:
            total += int(np.count_nonzero(view < 0x80))
        finally:
            del view
        pos = stop
    return total
