"""Seed inputs: the committed fixtures and small generated models with every storage form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["Case", "build_seeds", "load_case", "save_case"]

MODEL_NAME = "m.onnx"
SPECIALS_NAME = "specials.json"
FINDING_NAME = "finding.txt"
_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@dataclass
class Case:
    """One fuzz input: the model's bytes, the files next to it, and special entries to create.

    ``specials`` maps a relative name to ``fifo``, ``dir``, ``loop`` (a symbolic link to itself) or
    ``outside`` (a symbolic link to a file outside the model's folder).
    """

    name: str
    model: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    specials: dict[str, str] = field(default_factory=dict)

    def size(self) -> int:
        return len(self.model) + sum(len(v) for v in self.files.values())


def _opsets(*extra: tuple[str, int]) -> list[onnx.OperatorSetIdProto]:
    return [helper.make_opsetid("", 17), *(helper.make_opsetid(d, v) for d, v in extra)]


def _f32(name: str, shape: tuple[int, ...], seed: int) -> TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _vi(
    name: str, dims: list[int | str] | None, elem: int = TensorProto.FLOAT
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def _everything() -> onnx.ModelProto:
    """One model with each storage form: raw, typed (float_data, int64_data, string), sparse,
    Constant nodes of every attribute form, an If with subgraphs, a Loop, a local function,
    metadata with a framework record."""
    typed = TensorProto(name="typed", data_type=TensorProto.FLOAT, dims=[3], float_data=[1, 2, 3])
    ints = TensorProto(
        name="ints", data_type=TensorProto.INT64, dims=[4], int64_data=[1, 300, -5, 7]
    )
    strings = TensorProto(
        name="strs", data_type=TensorProto.STRING, dims=[2], string_data=[b"a", b"bc"]
    )
    int4 = TensorProto(name="nibbles", data_type=TensorProto.INT4, dims=[5], int32_data=[1, 2, 3])
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.5, 2.5], np.float32), "sp"),
        numpy_helper.from_array(np.array([1, 6], np.int64), "sp_idx"),
        [2, 4],
    )
    then_graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["tw"], value=_f32("tw", (4, 4), 3)),
            helper.make_node("MatMul", ["x", "tw"], ["t_out"], name="/if/then/MatMul"),
        ],
        "then",
        [],
        [_vi("t_out", [1, 4])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e_out"])], "else", [], [_vi("e_out", [1, 4])]
    )
    body = helper.make_graph(
        [
            helper.make_node("Add", ["lx", "bias"], ["ly"], name="/loop/Add"),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("lx", [1, 4])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("ly", [1, 4])],
        [_f32("bias", (4,), 4)],
    )
    function = helper.make_function(
        "local",
        "Scale",
        ["fx"],
        ["fy"],
        [
            helper.make_node("Constant", [], ["fk"], value_floats=[2.0, 3.0]),
            helper.make_node("Mul", ["fx", "fk"], ["fy"]),
        ],
        _opsets(),
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="/fc/MatMul"),
        helper.make_node("Constant", [], ["c_t"], value=_f32("c_t", (2, 2), 5)),
        helper.make_node("Constant", [], ["c_f"], value_float=1.5),
        helper.make_node("Constant", [], ["c_fs"], value_floats=[1.0, 2.0]),
        helper.make_node("Constant", [], ["c_i"], value_int=3),
        helper.make_node("Constant", [], ["c_is"], value_ints=[1, 2, 3]),
        helper.make_node("Constant", [], ["c_s"], value_string="hello"),
        helper.make_node("Constant", [], ["c_ss"], value_strings=["a", "b"]),
        helper.make_node("Constant", [], ["c_sp"], sparse_value=sparse),
        helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node(
            "If", ["cond"], ["branch"], then_branch=then_graph, else_branch=else_graph
        ),
        helper.make_node("Constant", [], ["trip"], value_int=2),
        helper.make_node("Loop", ["trip", "cond", "h"], ["looped"], body=body),
        helper.make_node("Scale", ["looped"], ["scaled"], domain="local", name="/fn/Scale"),
        helper.make_node("Add", ["scaled", "typed_b"], ["y"], name="/out/Add"),
    ]
    graph = helper.make_graph(
        nodes,
        "everything",
        [_vi("x", ["batch", 4])],
        [_vi("y", ["batch", 4]), _vi("branch", None)],
        [_f32("w", (4, 4), 1), typed, ints, strings, int4, _f32("typed_b", (4,), 2)],
        sparse_initializer=[
            helper.make_sparse_tensor(
                numpy_helper.from_array(np.array([7.0], np.float32), "sparse_w"),
                numpy_helper.from_array(np.array([[0, 1]], np.int64), "sparse_w_idx"),
                [3, 3],
            )
        ],
    )
    model = helper.make_model(graph, opset_imports=_opsets(("local", 1)), functions=[function])
    record = {
        "schema": 1,
        "framework": {"name": "torch", "version": "2"},
        "exporter": "fuzz",
        "fallback_reason": None,
        "totals": {"total": 16, "trainable": 16, "non_trainable": 0, "buffers": 0},
        "tensors": [{"name": "w", "kind": "parameter", "trainable": True, "elements": 16}],
        "initializers": {"w": {"framework_name": "w", "kind": "parameter", "trainable": True}},
    }
    helper.set_model_props(model, {"modelsize.framework": json.dumps(record), "author": "fuzz"})
    return model


def _external(model: onnx.ModelProto, location: str) -> tuple[bytes, dict[str, bytes]]:
    """Move every initializer of the main graph with raw_data to ``location``."""
    blob = bytearray()
    for tensor in model.graph.initializer:
        if not tensor.raw_data:
            continue
        data = tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", location),
            ("offset", str(len(blob))),
            ("length", str(len(data))),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        blob += data
        blob += b"\0" * (-len(blob) % 16)
    return model.SerializeToString(), {location: bytes(blob)}


def _deep_if(depth: int) -> onnx.ModelProto:
    """Ifs nested ``depth`` deep (the loader's recursion on subgraphs)."""
    inner = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o0"])], "g0", [], [_vi("o0", [1])]
    )
    for level in range(1, depth + 1):
        leaf = helper.make_graph(
            [helper.make_node("Identity", ["x"], [f"e{level}"])],
            f"e{level}",
            [],
            [_vi(f"e{level}", [1])],
        )
        node = helper.make_node("If", ["cond"], [f"o{level}"], then_branch=inner, else_branch=leaf)
        inner = helper.make_graph([node], f"g{level}", [], [_vi(f"o{level}", [1])])
    graph = helper.make_graph(
        list(inner.node),
        "deep",
        [_vi("x", [1]), _vi("cond", [], TensorProto.BOOL)],
        [_vi(f"o{depth}", [1])],
    )
    return helper.make_model(graph, opset_imports=_opsets())


def _training() -> onnx.ModelProto:
    model = onnx.load_from_string(_everything().SerializeToString())
    init = helper.make_graph([], "init", [], [], [_f32("state", (2,), 9)])
    info = model.training_info.add()
    info.initialization.CopyFrom(init)
    return model


def build_seeds() -> list[Case]:
    """Every seed, small (a few KB each) so that many mutations run per second."""
    from fixtures.builders import seed_simple

    cases = [
        Case("seed_simple", (_FIXTURES / "seed_simple.onnx").read_bytes()),
        Case("storage_zoo", (_FIXTURES / "storage_zoo.onnx").read_bytes()),
        Case("everything", _everything().SerializeToString()),
        Case("deep_if", _deep_if(12).SerializeToString()),
        Case("training", _training().SerializeToString()),
    ]
    model, files = _external(seed_simple(), "weights.bin")
    cases.append(Case("external", model, files))
    model, files = _external(_everything(), "sub/w.data")
    cases.append(Case("external_everything", model, files))
    return cases


def save_case(case: Case, folder: Path) -> Path:
    """Write ``case`` into ``folder`` (model as m.onnx, files, special entries); returns the model."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_NAME
    path.write_bytes(case.model)
    for name, data in case.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for name, kind in case.specials.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            continue
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "dir":
            target.mkdir()
        elif kind == "loop":
            os.symlink(target.name, target)
        elif kind == "outside":
            os.symlink(os.path.join("..", "outside.bin"), target)
    return path


def load_case(folder: Path) -> Case:
    """A case saved by :func:`save_case` (regular files only, plus ``specials.json``)."""
    specials_path = folder / SPECIALS_NAME
    specials = json.loads(specials_path.read_text()) if specials_path.exists() else {}
    files = {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not p.is_symlink()
        and p.name not in (MODEL_NAME, SPECIALS_NAME, FINDING_NAME)
    }
    return Case(folder.name, (folder / MODEL_NAME).read_bytes(), files, specials)
