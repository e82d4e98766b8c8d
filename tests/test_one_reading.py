"""One reading of a model: every analysis sees the same tensors, named by the graph's edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from graph_analysis import Role, analyze

F32 = TensorProto.FLOAT

# Per call of the local function: Conv weight 2x2x3x3 and bias 2, an 8x8 MatMul weight in each If
# branch; the int64 Reshape target is a constant.
_PER_CALL = 2 * 2 * 3 * 3 + 2 + 8 * 8 + 8 * 8
_CALLS = 2


def _constant(output: str, array: np.ndarray, own_name: str) -> onnx.NodeProto:
    # The attribute tensor's own name differs from the node's output, as after onnx.inliner.
    return helper.make_node(
        "Constant", [], [output], value=numpy_helper.from_array(array, own_name)
    )


def _branch(name: str, out: str, seed: int) -> onnx.GraphProto:
    weight = np.random.default_rng(seed).standard_normal((8, 8)).astype(np.float32)
    nodes = [_constant("m", weight, "weight"), helper.make_node("MatMul", ["r", "m"], [out])]
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, F32, [1, 8])])


def inlined_function_model() -> onnx.ModelProto:
    """A model-local function whose weights are Constant nodes (some in If branches), called twice
    and inlined with ``onnx.inliner``: the Constant outputs get prefixes, their tensors keep the
    names ``weight``/``bias`` (what real exports look like)."""
    rng = np.random.default_rng(0)
    body = [
        _constant("W", rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "weight"),
        _constant("B", rng.standard_normal(2).astype(np.float32), "bias"),
        _constant("shape", np.array([-1, 8], dtype=np.int64), "weight"),
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node(
            "If",
            ["flag"],
            ["y"],
            then_branch=_branch("then", "t", 1),
            else_branch=_branch("else", "e", 2),
        ),
    ]
    opset = [helper.make_opsetid("", 17)]
    function = helper.make_function("local", "Block", ["x", "flag"], ["y"], body, opset)
    calls = [
        helper.make_node("Block", ["X", "F"], [f"Y{k}"], domain="local") for k in range(_CALLS)
    ]
    graph = helper.make_graph(
        calls,
        "g",
        [
            helper.make_tensor_value_info("X", F32, [1, 2, 2, 2]),
            helper.make_tensor_value_info("F", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info(f"Y{k}", F32, [1, 8]) for k in range(_CALLS)],
    )
    model = helper.make_model(
        graph, opset_imports=[*opset, helper.make_opsetid("local", 1)], functions=[function]
    )
    model.ir_version = 8
    return onnx.inliner.inline_local_functions(model)


@pytest.fixture
def inlined_path(tmp_path: Path) -> Path:
    path = tmp_path / "inlined.onnx"
    onnx.save(inlined_function_model(), str(path))
    return path


def test_constant_tensors_are_named_by_the_node_output(inlined_path: Path) -> None:
    report = analyze(inlined_path)
    assert report.parameters.total == _CALLS * _PER_CALL == 332
    assert report.parameters.learned == 332
    assert report.by_role[Role.UNUSED].tensors == 0
    assert report.by_role[Role.CONSTANT].num_elements == _CALLS * 2
    names = {t.name for t in report.tensors}
    assert "weight" not in names and "bias" not in names
    assert {"W__1", "B__1", "W__2", "B__2"} <= names


def test_memory_estimate_sees_the_same_weights(inlined_path: Path) -> None:
    from graph_analysis.bindings import parse_bindings
    from graph_analysis.memory import estimate_memory

    estimate = estimate_memory(inlined_path, parse_bindings(["F="]), train=True)
    # Every weight once at its dense size, plus the two int64[2] Reshape targets.
    assert estimate.inference.weights_bytes == 332 * 4 + _CALLS * 2 * 8
    assert estimate.training is not None
    assert estimate.training.trainable_parameters == 332
    # The reading names graphs as shapes and liveness do, so branch weights are never activations.
    from graph_analysis._weights import read_weights
    from graph_analysis.shapes import iter_graphs

    model = inlined_function_model()
    assert {t.graph for t in read_weights(inlined_path).tensors} == {
        path for path, _graph in iter_graphs(model.graph)
    }
    assert not {t.name for t in estimate.inference.peak_tensors} & {
        t.name for t in read_weights(inlined_path).tensors
    }
    # In memory or from the file: one reading, the same figures.
    again = estimate_memory(inlined_function_model(), parse_bindings(["F="]), train=True)
    assert again.inference == estimate.inference
    assert again.training == estimate.training


def test_quantization_preparation_sees_the_same_weights(inlined_path: Path) -> None:
    from converters._graph_prep import graph_makeup, lift_constants
    from graph_analysis._weights import read_weights

    weights = read_weights(inlined_path)
    parameters = {t.name for t in weights.tensors if t.role is Role.PARAMETER}
    assert sum(t.num_elements for t in weights.tensors if t.name in parameters) == 332
    makeup = graph_makeup(weights, {})
    assert makeup.conv_bytes == _CALLS * (2 * 2 * 3 * 3 + 2) * 4
    assert makeup.matmul_bytes == _CALLS * 2 * 8 * 8 * 4
    assert makeup.total_bytes == 332 * 4
    # Lifting Constant-node weights into initializers (what the quantizer needs) names them by the
    # same edge names the reading uses, in the main graph and in the If branches.
    model = onnx.load(str(inlined_path))
    assert lift_constants(model) == len(parameters) == 8
    lifted = {t.name for g in _graphs(model.graph) for t in g.initializer}
    assert lifted == parameters


def test_quantized_variant_keeps_every_weight(inlined_path: Path, tmp_path: Path) -> None:
    from converters.quantize import QuantMethod, quantize_model
    from graph_analysis.bindings import parse_bindings

    result = quantize_model(
        inlined_path,
        tmp_path / "q.onnx",
        method=QuantMethod.DYNAMIC,
        bindings=parse_bindings(["F="]),
    )
    assert result.recommendation.makeup.total_bytes == 332 * 4
    assert result.quantized_ops.get("ConvInteger") == _CALLS
    # The If branches' MatMul weights were lifted into their branch and quantized there.
    assert result.quantized_ops.get("MatMulInteger") == _CALLS * 2
    assert analyze(result.output).parameters.total == 332


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found.extend(_graphs(attr.g))
    return found


def test_a_constant_whose_tensor_is_named_like_another_weight(tmp_path: Path) -> None:
    # The Constant's tensor calls itself "W", the name of an initializer: only edges name tensors.
    w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "W")
    c = helper.make_node(
        "Constant", [], ["C"], value=numpy_helper.from_array(np.ones(4, dtype=np.float32), "W")
    )
    nodes = [
        c,
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Add", ["H", "C"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", F32, [1, 4])],
        [helper.make_tensor_value_info("Y", F32, [1, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "clash.onnx"
    onnx.save(model, str(path))
    report = analyze(path)
    assert {(t.name, t.role) for t in report.tensors} == {
        ("W", Role.PARAMETER),
        ("C", Role.PARAMETER),
    }
    assert report.parameters.total == 16 + 4


def test_local_function_weights_count_in_memory_as_in_the_report(tmp_path: Path) -> None:
    from graph_analysis.memory import estimate_memory

    path = tmp_path / "functions.onnx"
    model = inlined_function_model()
    # The same model before inlining: the weights live in the function body, counted once.
    body = [n for n in model.graph.node][:6]
    function = helper.make_function(
        "local", "Block", ["X", "F"], ["Y0"], body, [helper.make_opsetid("", 17)]
    )
    graph = helper.make_graph(
        [helper.make_node("Block", ["X", "F"], ["Y0"], domain="local")],
        "g",
        list(model.graph.input),
        [model.graph.output[0]],
    )
    single = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[function],
    )
    onnx.save(single, str(path))
    report = analyze(path)
    assert report.parameters.total == _PER_CALL
    estimate = estimate_memory(path, train=True)
    assert estimate.training is not None
    assert estimate.training.trainable_parameters == _PER_CALL
    assert estimate.inference.weights_bytes == _PER_CALL * 4 + 2 * 8


_OWN_NAMES = st.sampled_from(["", "weight", "W__1", "B__2", "m__1", "X", "Y0", "shape__1"])


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_attribute_tensor_names_never_change_a_figure(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    """Whatever a Constant's tensor calls itself (empty, another edge's name), the figures stay."""
    model = inlined_function_model()
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.op_type == "Constant":
                node.attribute[0].t.name = data.draw(_OWN_NAMES)
    path = tmp_path_factory.mktemp("names") / "renamed.onnx"
    onnx.save(model, str(path))
    report = analyze(path)
    assert report.parameters.total == 332
    assert report.by_role[Role.UNUSED].tensors == 0
    from graph_analysis._weights import read_weights

    weights = read_weights(path)
    assert sum(t.nbytes for t in weights.tensors) == 332 * 4 + _CALLS * 2 * 8


def test_parameters_the_framework_froze_are_not_trained(tmp_path: Path) -> None:
    from graph_analysis.framework import (
        METADATA_KEY,
        FrameworkInfo,
        FrameworkTensor,
        FrameworkTotals,
        InitializerOrigin,
        TensorKind,
        write_framework_json,
    )
    from graph_analysis.memory import estimate_memory

    p = TensorKind.PARAMETER
    tensors = (FrameworkTensor("W1", p, False, 64), FrameworkTensor("W2", p, True, 32))
    info = FrameworkInfo(
        "torch",
        "2.13.0",
        "test",
        FrameworkTotals(96, 32, 64, 0),
        tensors,
        {t.name: InitializerOrigin(t.name, t.kind, t.trainable) for t in tensors},
    )
    inits = [
        numpy_helper.from_array(np.ones((8, 8), dtype=np.float32), "W1"),
        numpy_helper.from_array(np.ones((8, 4), dtype=np.float32), "W2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["H"]),
        helper.make_node("MatMul", ["H", "W2"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", F32, [2, 8])],
        [helper.make_tensor_value_info("Y", F32, [2, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {METADATA_KEY: write_framework_json(info)})
    path = tmp_path / "frozen.onnx"
    onnx.save(model, str(path))
    training = estimate_memory(path, train=True).training
    assert training is not None
    assert training.trainable_parameters == 32  # as the framework's own count of trainable
    assert training.frozen_bytes == 64 * 4
    assert training.item("gradients") == 32 * 4


def _reference_parameters(model: onnx.ModelProto) -> int:
    """An independent count, plain onnx API: floating tensors of more than one element stored as
    initializers or Constant nodes, in every graph, that some node reads by its edge name."""
    stored: dict[str, int] = {}
    read: set[str] = set()
    for graph in _graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
                stored[tensor.name] = int(np.prod(tensor.dims))
        for node in graph.node:
            read.update(node.input)
            if node.op_type == "Constant":
                value = node.attribute[0].t
                if value.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
                    stored[node.output[0]] = int(np.prod(value.dims))
    return sum(n for name, n in stored.items() if name in read and n > 1)


@st.composite
def weight_chains(draw: st.DrawFn) -> onnx.ModelProto:
    """X -> MatMul -> ... with each weight an initializer or a Constant (its tensor's own name
    drawn at random, possibly another edge's), some of the chain inside an If branch."""
    # Widths from 2: a 1x1 MatMul weight is a parameter by the rule (a one-element float in a
    # weight slot), which the simple reference does not model.
    widths = draw(st.lists(st.integers(2, 5), min_size=2, max_size=6))
    in_branch = draw(st.integers(0, len(widths) - 1))
    main: list[onnx.NodeProto] = []
    branch: list[onnx.NodeProto] = []
    initializers = []
    current = "X"
    for k in range(1, len(widths)):
        weight = np.ones((widths[k - 1], widths[k]), dtype=np.float32)
        target = branch if k > in_branch else main
        if draw(st.booleans()):
            own = draw(st.sampled_from(["", "X", "W1", "H1", "weight", f"W{k}"]))
            target.append(
                helper.make_node(
                    "Constant", [], [f"W{k}"], value=numpy_helper.from_array(weight, own)
                )
            )
        else:
            initializers.append(numpy_helper.from_array(weight, f"W{k}"))
        target.append(helper.make_node("MatMul", [current, f"W{k}"], [f"H{k}"]))
        current = f"H{k}"
    out = helper.make_tensor_value_info("Y", F32, [1, widths[-1]])
    if branch:
        branch.append(helper.make_node("Identity", [current], ["B"]))
        body = helper.make_graph(branch, "b", [], [helper.make_tensor_value_info("B", F32, None)])
        other = helper.make_graph(
            [helper.make_node("Identity", [f"H{in_branch}" if in_branch else "X"], ["E"])],
            "e",
            [],
            [helper.make_tensor_value_info("E", F32, None)],
        )
        main.append(helper.make_node("If", ["F"], ["Y"], then_branch=body, else_branch=other))
    else:
        main.append(helper.make_node("Identity", [current], ["Y"]))
    graph = helper.make_graph(
        main,
        "g",
        [
            helper.make_tensor_value_info("X", F32, [1, widths[0]]),
            helper.make_tensor_value_info("F", TensorProto.BOOL, []),
        ],
        [out],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@settings(max_examples=30, deadline=None)
@given(weight_chains())
def test_every_analysis_counts_the_reference(tmp_path_factory, model: onnx.ModelProto) -> None:  # type: ignore[no-untyped-def]
    from graph_analysis._weights import read_weights
    from graph_analysis.bindings import parse_bindings
    from graph_analysis.memory import estimate_memory

    reference = _reference_parameters(model)
    path = tmp_path_factory.mktemp("chains") / "chain.onnx"
    onnx.save(model, str(path))
    assert analyze(path).parameters.total == reference
    training = estimate_memory(path, parse_bindings(["F="]), train=True).training
    assert training is not None and training.trainable_parameters == reference
    weights = read_weights(path)
    assert sum(t.num_elements for t in weights.tensors if t.role is Role.PARAMETER) == reference


def test_check_fit_and_scan_read_and_classify_the_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands that show counts and estimates together read the file's record once: the
    counts, the memory estimate and the MACs all come from that one reading."""
    from graph_analysis import loading
    from graph_analysis.deploy import Limits, check_model, fit_model, scan_model

    weight = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F32, ["n", 8])],
        [helper.make_tensor_value_info("y", F32, ["n", 8])],
        [weight],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    reads: list[object] = []
    original = loading._Reader.model

    def counting(self, size):  # type: ignore[no-untyped-def]
        if self.path == path:  # not the optimized graph onnxruntime writes
            reads.append(self)
        return original(self, size)

    monkeypatch.setattr(loading._Reader, "model", counting)
    limits = Limits(max_params=10**9, max_memory_bytes=1 << 40, max_macs=10**15)
    result = check_model(path, limits)
    assert result.ok and len(reads) == 1
    reads.clear()
    fit_model(path, 1 << 30)
    assert len(reads) == 1
    reads.clear()
    row = scan_model(str(path))
    assert row.ok and row.summary["estimated_inference_peak_bytes"] > 0 and len(reads) == 1
    reads.clear()
    from graph_analysis.runtime.profile import profile_model

    profiled = profile_model(path, runs=1, warmup=0)
    assert profiled.compute.macs == 8 * 8 and len(reads) == 1
