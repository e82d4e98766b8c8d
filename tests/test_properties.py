"""Invariants that must hold on any graph: totals equal breakdowns, unused tensors change nothing,
every truncation is refused cleanly."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from graph_analysis import analyze
from graph_analysis.errors import InputError

_DTYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int64, np.int32]
_OPS = [
    ("MatMul", 1),
    ("Add", 1),
    ("Gather", 0),
    ("Gather", 1),
    ("Reshape", 1),
    ("Mul", 0),
    ("Conv", 1),
    ("Conv", 2),
    ("BatchNormalization", 3),
    ("DequantizeLinear", 0),
    ("DequantizeLinear", 1),
]


@st.composite
def random_models(draw: st.DrawFn) -> onnx.ModelProto:
    """Graphs of 1-8 tensors of random types/shapes, each read by 0-2 nodes at random input slots.

    The graphs are not meant to run; they only need to be well-formed ONNX for the analysis.
    """
    count = draw(st.integers(1, 8))
    inits, nodes = [], []
    for i in range(count):
        dtype = draw(st.sampled_from(_DTYPES))
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
        name = draw(st.sampled_from(["layer", "block.0", "/enc/l1"])) + f".w{i}"
        inits.append(numpy_helper.from_array(np.zeros(shape, dtype=dtype), name))
        for _ in range(draw(st.integers(0, 2))):
            op, slot = draw(st.sampled_from(_OPS))
            inputs = ["x"] * 5
            inputs[slot] = name
            nodes.append(
                helper.make_node(
                    op, inputs[: max(slot + 1, 2)], [f"o{len(nodes)}"], name=f"/n{len(nodes)}/{op}"
                )
            )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save(model: onnx.ModelProto, folder: str, name: str = "m.onnx") -> Path:
    path = Path(folder) / name
    onnx.save_model(model, path)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_models())
def test_totals_equal_their_breakdowns(model: onnx.ModelProto) -> None:
    with tempfile.TemporaryDirectory() as folder:
        report = analyze(_save(model, folder))
    p = report.parameters
    assert p.total == p.learned + p.running_stats
    assert p.total == sum(r.num_elements for r in p.by_dtype)
    assert p.total == sum(r.num_parameters for r in report.layers if r.depth == 1)
    assert p.total == sum(r.num_parameters for r in report.by_op)
    # Each layer row equals its own tensors plus its children.
    for row in report.layers:
        children = [
            c for c in report.layers if c.depth == row.depth + 1 and c.key.startswith(row.key + ".")
        ]
        assert sum(c.num_parameters for c in children) <= row.num_parameters
    assert report.size.weights_bytes == sum(r.nbytes for r in report.size.by_dtype)
    roles = sum(t.num_elements for t in report.by_role.values())
    assert roles == sum(t.num_elements for t in report.tensors)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_models(), st.sampled_from(_DTYPES), st.lists(st.integers(1, 6), max_size=3))
def test_unused_tensor_changes_no_parameter_figure(
    model: onnx.ModelProto, dtype: type, shape: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        before = analyze(_save(model, folder, "a.onnx"))
        model.graph.initializer.append(numpy_helper.from_array(np.ones(shape, dtype), "never_read"))
        model.graph.node.append(helper.make_node("Constant", [], ["also_never_read"], value_int=3))
        after = analyze(_save(model, folder, "b.onnx"))
    assert after.parameters == before.parameters
    assert after.layers == before.layers
    assert after.size.by_precision == before.size.by_precision
    assert after.size.weights_bytes == before.size.weights_bytes


def test_every_truncation_is_refused(complex_path: Path, tmp_path: Path) -> None:
    # Every prefix of a valid file (one opset, no trailing metadata) is refused with an InputError.
    data = (Path(__file__).parent.parent / "fixtures" / "seed_simple.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(InputError):
            analyze(path)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.onnx"
        path.write_bytes(data)
        with contextlib.suppress(InputError):
            analyze(path)
