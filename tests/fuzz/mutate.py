"""Mutations of a :class:`~tests.fuzz.seeds.Case`: raw bytes, wire format, protobuf fields, files.

A model is parsed into a tree of protobuf fields (onnx.proto's descriptors say which length-delimited
fields are messages), one mutation is applied somewhere in it, and the tree is written back, so most
mutants stay well-formed protobuf and reach the loader's deeper checks. Raw-byte mutations (flips,
truncations, length and varint corruption) reach the wire reader itself.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import onnx

from graph_analysis import _wire

from .seeds import Case

__all__ = ["mutate"]

_INTERESTING_INTS = [
    0,
    1,
    2,
    7,
    127,
    128,
    255,
    256,
    2**31 - 1,
    2**31,
    2**32,
    2**32 + 1,
    2**53 + 1,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
    10**12,
    99,
    16,
    17,
    26,
]
_INTERESTING_STRINGS = [
    b"",
    b"..",
    b"../outside.bin",
    b"/etc/passwd",
    b"C:\\x",
    b"a" * 300,
    b"w\x00.bin",
    b"\xff\xfe",
    b"N\xc3",
    b"sub/../../outside.bin",
    b"weights.bin",
    b"sub/w.data",
    b"special",
    b"loop",
    b"fifo",
    b"dir",
    b"outside",
    b"modelsize-stripped-payload",
    b"location",
    b"offset",
    b"length",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b"x" * 5000,
    b"Constant",
    b"If",
    b"Loop",
    b"local",
    b"ai.onnx",
    b"modelsize.framework",
]
_DAMAGED_RECORDS = [
    '{"schema": 1, "totals": {"total": Infinity}}',
    '{"schema": 1, "totals": {"total": 1e400}}',
    "[" * 50_000 + "]" * 50_000,
    '{"schema": 1, "framework": [], "totals": null}',
    '{"schema": 1, "tensors": [{"elements": -3}], "initializers": {"w": 3}}',
    '{"schema": 1, "framework": {"name": 1, "version": {}}, "exporter": null}',
    "null",
    '{"schema": 1e400}',
]


@dataclass
class _Field:
    number: int
    wire: int
    value: Any  # int (VARINT), bytes (LEN, FIXED), list[_Field] (parsed message)
    descriptor: Any = None  # message descriptor when value is a parsed message


def _parse(data: bytes, descriptor: Any, depth: int = 0) -> list[_Field]:
    fields: list[_Field] = []
    for number, wire, _fs, a, b in _wire.iter_fields(data, 0, len(data)):
        if wire == _wire.VARINT:
            fields.append(_Field(number, wire, a))
            continue
        payload = data[a:b]
        fd = descriptor.fields_by_number.get(number) if descriptor is not None else None
        if wire == _wire.LEN and fd is not None and fd.type == fd.TYPE_MESSAGE and depth < 60:
            try:
                sub = _parse(payload, fd.message_type, depth + 1)
            except _wire.WireError:
                fields.append(_Field(number, wire, payload))
            else:
                fields.append(_Field(number, wire, sub, fd.message_type))
            continue
        fields.append(_Field(number, wire, payload))
    return fields


def _serialize(fields: list[_Field]) -> bytes:
    out = bytearray()
    for f in fields:
        out += _wire.encode_varint(f.number << 3 | f.wire)
        if f.wire == _wire.VARINT:
            out += _wire.encode_varint(f.value if isinstance(f.value, int) else 0)
        elif f.wire == _wire.LEN:
            payload = _serialize(f.value) if isinstance(f.value, list) else f.value
            out += _wire.encode_varint(len(payload)) + payload
        else:
            out += f.value if isinstance(f.value, bytes) else b"\0" * (8 if f.wire == 1 else 4)
    return bytes(out)


def _locations(fields: list[_Field]) -> list[tuple[list[_Field], int]]:
    """Every (containing list, index) in the tree."""
    found: list[tuple[list[_Field], int]] = []
    stack = [fields]
    while stack:
        current = stack.pop()
        for index, f in enumerate(current):
            found.append((current, index))
            if isinstance(f.value, list):
                stack.append(f.value)
    return found


def _messages(fields: list[_Field], name: str) -> list[_Field]:
    """Every parsed sub-message of the given message type name (TensorProto, GraphProto, ...)."""
    return [
        lst[i]
        for lst, i in _locations(fields)
        if isinstance(lst[i].value, list)
        and lst[i].descriptor is not None
        and lst[i].descriptor.name == name
    ]


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


# -- raw byte mutations ---------------------------------------------------------------------------


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.getrandbits(8)
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def _splice_bytes(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        return data[:i] + _random_bytes(rng, rng.choice((1, 2, 3, 10))) + data[i:]
    j = min(len(data), i + rng.choice((1, 2, 8, 64)))
    return data[:i] + data[j:]


def _raw_length_or_varint(data: bytes, rng: random.Random) -> bytes:
    """Corrupt a length prefix or a varint in place (the tree is not rebuilt: parents disagree)."""
    spots: list[tuple[int, int, int]] = []  # (position of the varint, its end, wire type)

    def walk(start: int, end: int, depth: int) -> None:
        try:
            for _number, wire, fs, a, b in _wire.iter_fields(data, start, end):
                key_end = _wire.read_varint(data, fs, end)[1]
                if wire == _wire.LEN:
                    spots.append((key_end, a, wire))
                    if depth < 8 and b - a > 1 and len(spots) < 4000:
                        walk(a, b, depth + 1)
                elif wire == _wire.VARINT:
                    spots.append((key_end, b, wire))
        except _wire.WireError:
            pass

    walk(0, len(data), 0)
    if not spots:
        return _flip(data, rng)
    pos, end, _wire_type = rng.choice(spots)
    old = _wire.read_varint(data, pos, len(data))[0]
    choice = rng.random()
    if choice < 0.3:
        new = _wire.encode_varint(max(0, old + rng.choice((-2, -1, 1, 2, 7))))
    elif choice < 0.6:
        new = _wire.encode_varint(rng.choice(_INTERESTING_INTS))
    elif choice < 0.8:
        new = data[pos:end][:-1] + bytes([data[end - 1] | 0x80]) if end > pos else b"\x80"
    else:
        new = b"\xff" * rng.choice((9, 10, 11))
    return data[:pos] + new + data[end:]


# -- tree mutations -------------------------------------------------------------------------------


def _tree_mutation(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes | None:
    try:
        tree = _parse(data, onnx.ModelProto.DESCRIPTOR)
    except _wire.WireError:
        return None
    spots = _locations(tree)
    if not spots:
        return None
    lst, index = rng.choice(spots)
    f = lst[index]
    op = rng.randrange(10)
    if op == 0:
        del lst[index]
    elif op == 1:
        lst.insert(index, _Field(f.number, f.wire, f.value, f.descriptor))
    elif op == 2:
        if f.wire == _wire.VARINT:
            f.value = rng.choice(_INTERESTING_INTS)
        else:
            lst[index] = _Field(f.number, _wire.VARINT, rng.choice(_INTERESTING_INTS))
    elif op == 3 and isinstance(f.value, bytes):
        f.value = (
            rng.choice(_INTERESTING_STRINGS) if rng.random() < 0.7 else _flip(f.value or b"x", rng)
        )
    elif op == 4:
        f.number = rng.choice(
            (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 25)
        )
    elif op == 5 and donors:
        # a field from another seed, where the same message type sits
        donor = rng.choice(donors)
        try:
            donor_spots = _locations(_parse(donor, onnx.ModelProto.DESCRIPTOR))
        except _wire.WireError:
            return None
        same = [
            dl[di] for dl, di in donor_spots if dl[di].number == f.number and dl[di].wire == f.wire
        ]
        if same:
            lst[index] = rng.choice(same)
    elif op == 6 and isinstance(f.value, list) and f.value:
        # swap two children, or repeat one many times
        if rng.random() < 0.5 and len(f.value) > 1:
            i, j = rng.randrange(len(f.value)), rng.randrange(len(f.value))
            f.value[i], f.value[j] = f.value[j], f.value[i]
        else:
            child = rng.choice(f.value)
            f.value.extend([child] * rng.choice((2, 10, 200)))
    elif op == 7 and isinstance(f.value, bytes) and f.value:
        f.value = f.value[: rng.randrange(len(f.value))]
    elif op == 8:
        lst.insert(
            index, _Field(rng.randrange(1, 30), rng.choice((0, 1, 2, 5)), rng.getrandbits(16))
        )
        if lst[index].wire in (1, 2, 5):
            lst[index].value = _random_bytes(
                rng, {1: 8, 5: 4}.get(lst[index].wire, rng.randrange(12))
            )
    else:
        return _semantic(tree, rng)
    return _serialize(tree)


def _semantic(tree: list[_Field], rng: random.Random) -> bytes:
    """ONNX-aware edits: dims, data types, external data, names, nesting, the framework record."""
    tensors = _messages(tree, "TensorProto")
    graphs = _messages(tree, "GraphProto")
    op = rng.randrange(7)
    if op == 0 and tensors:  # dims
        t = rng.choice(tensors).value
        dim = rng.choice((0, 1, 3, 2**31, 2**40, 2**63, 2**64 - 1, 10**12))
        t.insert(0, _Field(1, _wire.VARINT, dim))
    elif op == 1 and tensors:  # data type
        t = rng.choice(tensors).value
        t[:] = [f for f in t if f.number != 2]
        t.append(_Field(2, _wire.VARINT, rng.choice((0, 1, 7, 8, 16, 17, 21, 22, 23, 25, 26, 99))))
    elif op == 2 and tensors:  # external data
        t = rng.choice(tensors).value
        t[:] = [f for f in t if f.number not in (9, 13, 14)]
        loc = rng.choice(_INTERESTING_STRINGS[:17])
        entries = [(b"location", loc)]
        if rng.random() < 0.5:
            entries.append((b"offset", str(rng.choice((0, 4, -8, 2**64, 10**9))).encode()))
        if rng.random() < 0.5:
            entries.append((b"length", rng.choice((b"64", b"0", b"x", b"-1", b"99999999999"))))
        for key, value in entries:
            entry = [_Field(1, _wire.LEN, key), _Field(2, _wire.LEN, value)]
            t.append(_Field(13, _wire.LEN, entry, onnx.StringStringEntryProto.DESCRIPTOR))
        t.append(_Field(14, _wire.VARINT, 1))
    elif op == 3:  # a name that is not UTF-8
        spots = [
            (lst, i)
            for lst, i in _locations(tree)
            if isinstance(lst[i].value, bytes) and lst[i].wire == 2
        ]
        if spots:
            lst, i = rng.choice(spots)
            lst[i].value = lst[i].value + b"\xff"
    elif op == 4 and graphs:  # nest a graph under an If in itself
        g = rng.choice(graphs)
        inner = _Field(
            6, _wire.LEN, [_Field(f.number, f.wire, f.value, f.descriptor) for f in g.value]
        )
        attr = [_Field(1, _wire.LEN, b"then_branch"), _Field(20, _wire.VARINT, 5), inner]
        node = [
            _Field(1, _wire.LEN, b"cond"),
            _Field(2, _wire.LEN, b"nested_out"),
            _Field(4, _wire.LEN, b"If"),
            _Field(5, _wire.LEN, attr, onnx.AttributeProto.DESCRIPTOR),
        ]
        g.value.append(_Field(1, _wire.LEN, node, onnx.NodeProto.DESCRIPTOR))
    elif op == 5:  # the framework record
        props = [f for f in tree if f.number == 14 and isinstance(f.value, list)]
        record = rng.choice(_DAMAGED_RECORDS)
        if rng.random() < 0.3:
            try:
                data = json.loads(
                    '{"schema": 1, "framework": {"name": "t", "version": "1"}, "exporter": "e", '
                    '"totals": {"total": 1, "trainable": 1, "non_trainable": 0, "buffers": 0}}'
                )
                key = rng.choice(["total", "trainable", "buffers"])
                data["totals"][key] = rng.choice([1.5, -1, "7", None, True, [1]])
                record = json.dumps(data)
            except ValueError:
                pass
        entry = [
            _Field(1, _wire.LEN, b"modelsize.framework"),
            _Field(2, _wire.LEN, record.encode()),
        ]
        for p in props:
            tree.remove(p)
        tree.append(_Field(14, _wire.LEN, entry, onnx.StringStringEntryProto.DESCRIPTOR))
    elif tensors:  # packed varints cut inside a varint, or a segment
        t = rng.choice(tensors).value
        if rng.random() < 0.5:
            t.append(_Field(7, _wire.LEN, b"\x01\xac\x82"))
        else:
            t.append(_Field(3, _wire.LEN, [_Field(1, 0, 0), _Field(2, 0, 2)]))
    return _serialize(tree)


# -- files next to the model ----------------------------------------------------------------------


def _file_mutation(case: Case, rng: random.Random) -> Case:
    files = dict(case.files)
    specials = dict(case.specials)
    names = list(files) or ["weights.bin"]
    name = rng.choice(names)
    op = rng.randrange(4)
    if op == 0 and name in files:
        files[name] = files[name][: rng.randrange(len(files[name]) + 1)]
    elif op == 1:
        files.pop(name, None)
    elif op == 2:
        files.pop(name, None)
        specials[name] = rng.choice(("fifo", "dir", "loop", "outside"))
    else:
        for special in ("fifo", "dir", "loop", "outside"):
            specials[special] = special
    return replace(case, files=files, specials=specials)


_Mutator = Callable[[bytes, random.Random], bytes]
_RAW: list[_Mutator] = [_flip, _truncate, _splice_bytes, _raw_length_or_varint]


def mutate(case: Case, rng: random.Random, donors: list[bytes]) -> Case:
    """One to three mutations of ``case`` (bytes, tree, semantic or files), as a new case."""
    out = case
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.random()
        if kind < 0.12:
            out = _file_mutation(out, rng)
            continue
        data = out.model
        if kind < 0.45 and data:
            data = rng.choice(_RAW)(data, rng)
        else:
            mutated = _tree_mutation(data, rng, donors) if data else None
            data = mutated if mutated is not None else (_flip(data, rng) if data else data)
        out = replace(out, model=data)
    return out
