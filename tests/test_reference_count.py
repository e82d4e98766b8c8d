"""analyze's parameter total against an independent reference count (benchmarks/reference_count.py).

The reference uses the plain onnx API and one rule (every stored floating tensor of more than one
element, keyed by the graph's edge names). Where analyze legitimately differs by a documented rule
(unused tensors, one-element weights, integer quantized weights), the test states the difference
exactly; where analyze is wrong, the test is a strict xfail naming the bug.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnx.inliner
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.reference_count import reference_count, reference_tensors
from graph_analysis import analyze

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
OPSET = [helper.make_opsetid("", 18)]


def _f32(shape: tuple[int, ...], name: str, seed: int = 0) -> TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _save(
    graph: onnx.GraphProto, path: Path, functions: list[onnx.FunctionProto] | None = None
) -> Path:
    opsets = [*OPSET, *([helper.make_opsetid("local", 1)] if functions else [])]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions or [])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _self_add(name: str) -> onnx.NodeProto:
    """A node reading ``name`` as data (Add with itself) so that analyze sees a weight read as data."""
    return helper.make_node("Add", [name, name], [f"{name}_out"])


def _outputs(names: list[str]) -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info(f"{n}_out", TensorProto.FLOAT, None) for n in names]


# --- committed fixtures: the difference is stated exactly, tensor by tensor -------------------------


def test_seed_simple_differs_by_one_element_bias() -> None:
    """fc2.bias has one element in a Gemm bias slot: analyze counts it, the reference rule does not."""
    path = FIXTURES / "seed_simple.onnx"
    assert reference_count(path) == 240
    assert analyze(path).parameters.total == 240 + 1


def test_storage_zoo_differs_by_quantized_and_unused() -> None:
    """q4/q8 integer weights (128 elements) count for analyze; the 16-element unused weight does not."""
    path = FIXTURES / "storage_zoo.onnx"
    assert reference_count(path) == 848
    assert analyze(path).parameters.total == 848 + 128 - 16


# --- one generated model per storage form ------------------------------------------------------------


def test_initializer(tmp_path: Path) -> None:
    graph = helper.make_graph([_self_add("w")], "g", [], _outputs(["w"]), [_f32((3, 4), "w")])
    path = _save(graph, tmp_path / "m.onnx")
    assert reference_count(path) == 12
    assert analyze(path).parameters.total == 12


def test_sparse_initializer_counts_dense_elements(tmp_path: Path) -> None:
    values = numpy_helper.from_array(np.arange(1, 6, dtype=np.float32), "s")
    indices = numpy_helper.from_array(np.array([0, 7, 19, 42, 99], dtype=np.int64), "s_idx")
    sparse = helper.make_sparse_tensor(values, indices, [10, 10])
    graph = helper.make_graph(
        [_self_add("s")], "g", [], _outputs(["s"]), sparse_initializer=[sparse]
    )
    path = _save(graph, tmp_path / "m.onnx")
    assert reference_count(path) == 100
    assert analyze(path).parameters.total == 100


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        ("value", _f32((2, 3), "c"), 6),
        ("value_floats", [0.5, 1.5, 2.5, 3.5], 4),
        ("value_float", 0.5, 0),
        ("value_ints", [1, 2, 3], 0),
    ],
)
def test_constant_node_value_forms(tmp_path: Path, attr: str, value: object, expected: int) -> None:
    attrs: dict[str, Any] = {attr: value}
    node = helper.make_node("Constant", [], ["c"], **attrs)
    graph = helper.make_graph([node, _self_add("c")], "g", [], _outputs(["c"]))
    if attr == "value_ints":
        graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    path = _save(graph, tmp_path / "m.onnx")
    assert reference_count(path) == expected
    assert analyze(path).parameters.total == expected


def _sparse_constant(tmp_path: Path, values_name: str) -> Path:
    values = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], dtype=np.float32), values_name)
    indices = numpy_helper.from_array(np.array([1, 5, 15], dtype=np.int64), "idx")
    node = helper.make_node(
        "Constant", [], ["c"], sparse_value=helper.make_sparse_tensor(values, indices, [4, 4])
    )
    graph = helper.make_graph([node, _self_add("c")], "g", [], _outputs(["c"]))
    return _save(graph, tmp_path / "m.onnx")


def test_constant_sparse_value(tmp_path: Path) -> None:
    path = _sparse_constant(tmp_path, "c")
    assert reference_count(path) == 16
    assert analyze(path).parameters.total == 16


def _if_model(depth: int, prefix: str = "") -> onnx.GraphProto:
    """An If whose branches hold an initializer and a Constant, nested ``depth`` levels deep."""
    cond = helper.make_node(
        "Constant", [], [f"{prefix}cond"], value=numpy_helper.from_array(np.array(True), "t")
    )

    def branch(tag: str, level: int) -> onnx.GraphProto:
        name = f"{prefix}{tag}{level}"
        const = helper.make_node(
            "Constant", [], [f"{name}_c"], value=_f32((5,), f"{name}_c", level)
        )
        add = helper.make_node("Add", [f"{name}_w", f"{name}_c"], [f"{name}_y"])
        nodes = [const, add]
        out = f"{name}_y"
        if level < depth:
            inner_then, inner_else = branch("then", level + 1), branch("else", level + 1)
            nodes.append(
                helper.make_node(
                    "If",
                    [f"{prefix}cond"],
                    [f"{name}_z"],
                    then_branch=inner_then,
                    else_branch=inner_else,
                )
            )
            nodes.append(helper.make_node("Add", [f"{name}_y", f"{name}_z"], [f"{name}_out"]))
            out = f"{name}_out"
        return helper.make_graph(
            nodes,
            name,
            [],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [5])],
            [_f32((5,), f"{name}_w", level + 10)],
        )

    top = helper.make_node(
        "If", [f"{prefix}cond"], ["y"], then_branch=branch("then", 1), else_branch=branch("else", 1)
    )
    return helper.make_graph(
        [cond, top], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])]
    )


@pytest.mark.parametrize("depth", [1, 3])
def test_subgraphs_at_any_depth(tmp_path: Path, depth: int) -> None:
    path = _save(_if_model(depth), tmp_path / "m.onnx")
    # each branch at each level: a 5-element initializer and a 5-element Constant; 2**level branches
    expected = sum(2**level * 10 for level in range(1, depth + 1))
    assert reference_count(path) == expected
    assert analyze(path).parameters.total == expected


def _function_model() -> tuple[onnx.GraphProto, list[onnx.FunctionProto]]:
    """A local function holding a 3x4 Constant weight, called twice: stored once."""
    const = helper.make_node("Constant", [], ["w"], value=_f32((3, 4), "w"))
    add = helper.make_node("Add", ["x", "w"], ["y"])
    function = helper.make_function("local", "AddW", ["x"], ["y"], [const, add], OPSET)
    calls = [
        helper.make_node("AddW", ["x"], ["a"], domain="local"),
        helper.make_node("AddW", ["a"], ["b"], domain="local"),
    ]
    graph = helper.make_graph(
        calls,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 4])],
    )
    return graph, [function]


def test_function_body_counted_once(tmp_path: Path) -> None:
    graph, functions = _function_model()
    path = _save(graph, tmp_path / "m.onnx", functions)
    assert reference_count(path) == 12
    assert analyze(path).parameters.total == 12


def _renamed_constants(tmp_path: Path) -> Path:
    """Constant tensors whose own ``name`` differs from the node output, as onnx.inliner leaves them."""
    graph, functions = _function_model()
    model = helper.make_model(
        graph, opset_imports=[*OPSET, helper.make_opsetid("local", 1)], functions=functions
    )
    model.ir_version = 9
    inlined = onnx.inliner.inline_local_functions(model)
    path = tmp_path / "inlined.onnx"
    onnx.save(inlined, str(path))
    return path


def test_inliner_really_leaves_mismatched_names(tmp_path: Path) -> None:
    """The premise of the next test: the inliner renames outputs, not the attribute tensors' names."""
    inlined = onnx.load(str(_renamed_constants(tmp_path)))
    constants = [n for n in inlined.graph.node if n.op_type == "Constant"]
    assert len(constants) == 2
    assert all(n.attribute[0].t.name != n.output[0] for n in constants)
    assert {t.name for t in reference_tensors(inlined) if t.is_parameter} == {
        n.output[0] for n in constants
    }


def _dense_constant_named(tmp_path: Path, tensor_name: str) -> Path:
    node = helper.make_node("Constant", [], ["c"], value=_f32((2, 3), tensor_name))
    graph = helper.make_graph([node, _self_add("c")], "g", [], _outputs(["c"]))
    return _save(graph, tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_renamed_constants, 24),
        (lambda tmp: _dense_constant_named(tmp, "some_other_name"), 6),
        (lambda tmp: _sparse_constant(tmp, "values_named_otherwise"), 16),
    ],
    ids=["inlined-function", "dense-value", "sparse-value"],
)
def test_constants_keyed_by_node_output(
    tmp_path: Path, build: Callable[[Path], Path], expected: int
) -> None:
    path = build(tmp_path)
    assert reference_count(path) == expected
    assert analyze(path).parameters.total == expected


def test_external_data_alias_counted_once(tmp_path: Path) -> None:
    """Two initializers pointing at one (file, offset, length) are one stored tensor."""
    data = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    (tmp_path / "w.bin").write_bytes(data.tobytes())
    tensors = []
    for name in ("a", "b"):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4, 8])
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(data.nbytes))):
            t.external_data.add(key=key, value=value)
        tensors.append(t)
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
        tensors,
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 9
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert reference_count(path) == 32
    assert analyze(path).parameters.total == 32


def test_integer_and_one_element_differences_stated(tmp_path: Path) -> None:
    """A DequantizeLinear INT8 weight and a one-element Conv bias: analyze counts both, the reference neither."""
    weight_q = numpy_helper.from_array(np.ones((2, 1, 3, 3), dtype=np.int8), "wq")
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "scale")
    conv_w = _f32((1, 2, 3, 3), "conv_w")
    conv_b = numpy_helper.from_array(np.array([0.5], dtype=np.float32), "conv_b")
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "scale"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["h"]),
        helper.make_node("Conv", ["h", "conv_w", "conv_b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight_q, scale, conv_w, conv_b],
    )
    path = _save(graph, tmp_path / "m.onnx")
    assert reference_count(path) == 18
    assert analyze(path).parameters.total == 18 + 18 + 1


def test_dynamic_quantize_lstm_zero_points_are_metadata(tmp_path: Path) -> None:
    hidden, size = 2, 3
    w = numpy_helper.from_array(np.ones((2, size, 4 * hidden), dtype=np.int8), "w")
    r = numpy_helper.from_array(np.ones((2, hidden, 4 * hidden), dtype=np.int8), "r")
    meta = [
        numpy_helper.from_array(np.full((2,), 0.1, dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros((2,), dtype=np.int8), "w_zp"),
        numpy_helper.from_array(np.full((2,), 0.1, dtype=np.float32), "r_scale"),
        numpy_helper.from_array(np.zeros((2,), dtype=np.int8), "r_zp"),
    ]
    node = helper.make_node(
        "DynamicQuantizeLSTM",
        ["x", "w", "r", "", "", "", "", "", "w_scale", "w_zp", "r_scale", "r_zp"],
        ["y"],
        domain="com.microsoft",
        hidden_size=hidden,
        direction="bidirectional",
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, r, *meta],
    )
    model = helper.make_model(
        graph, opset_imports=[*OPSET, helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    # analyze counts the integer weights (48 + 32); the per-direction scales and zero points are metadata
    assert analyze(path).parameters.total == 2 * size * 4 * hidden + 2 * hidden * 4 * hidden


# --- the corpus benchmark's attribution of differences ------------------------------------------------


def test_check_count_attributes_every_documented_difference() -> None:
    from benchmarks.corpus import check_count

    check = check_count(FIXTURES / "storage_zoo.onnx")
    assert (check.ours, check.reference) == (960, 848)
    assert check.explained
    causes = {g.cause: (g.elements, g.tensors) for g in check.gaps}
    assert causes["integer quantized weight (counted by analyze)"] == (
        128,
        ("q4.weight", "q8.weight"),
    )
    assert causes["unused: read by no node (analyze leaves it out)"] == (-16, ("unused.weight",))


def test_check_count_flags_a_tensor_missing_under_its_edge_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that records nothing under the edge name is reported as a bug, not explained away."""
    import graph_analysis
    from benchmarks.corpus import check_count

    empty = SimpleNamespace(tensors=(), parameters=SimpleNamespace(total=0), by_role={})
    monkeypatch.setattr(graph_analysis, "analyze", lambda path: empty)
    check = check_count(_dense_constant_named(tmp_path, "c"))
    assert (check.ours, check.reference) == (0, 6)
    assert not check.explained
    assert [(g.cause, g.explained, g.elements, g.tensors) for g in check.gaps] == [
        ("no record under the graph's edge name", False, -6, ("c",))
    ]
