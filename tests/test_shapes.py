"""Dim binding and shape inference: every kind of dynamic dim is bindable, errors are clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import ShapeBindingError
from graph_analysis.shapes import bind_inputs, infer_shapes, load_model_skeleton


def _model(dims: list[object], *, elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("X", elem_type, dims)
    y = helper.make_tensor_value_info("Y", elem_type, None)
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _set_raw_dims(model: onnx.ModelProto, values: list[int | None]) -> onnx.ModelProto:
    """Dims as some exporters write them: dim_value -1/0, or a dim with neither field set."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, values, strict=True):
        dim.Clear()
        if value is not None:
            dim.dim_value = value
    return model


def _input_dims(model: onnx.ModelProto) -> list[int]:
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", ["batch", "p2o.DynamicDimension.0", "?", "unk__123"])
def test_named_dims_bind_with_dim(name: str) -> None:
    model = _model([name, 8])
    bound, values, defaulted = bind_inputs(model, parse_bindings(dims=[f"{name}=5"]))
    assert _input_dims(bound) == [5, 8]
    assert values == {name: 5}
    assert defaulted == ()


@pytest.mark.parametrize("raw", [-1, 0, None])
def test_unknown_dim_values_bind_by_batch_shape_and_literal_name(raw: int | None) -> None:
    model = _set_raw_dims(_model([1, 8]), [raw, 8])
    assert _input_dims(bind_inputs(model, parse_bindings(batch=3))[0]) == [3, 8]
    assert _input_dims(bind_inputs(model, parse_bindings(["X=4,8"]))[0]) == [4, 8]
    if raw is not None:
        assert _input_dims(bind_inputs(model, parse_bindings(dims=[f"{raw}=6"]))[0]) == [6, 8]


def test_unbound_dims_default_and_are_reported() -> None:
    bound, _values, defaulted = bind_inputs(_model(["batch", "seq"]), parse_bindings())
    assert _input_dims(bound) == [1, 1]
    assert len(defaulted) == 2 and "batch" in defaulted[0]


def test_unbound_dim_is_an_error_without_default() -> None:
    with pytest.raises(ShapeBindingError, match=r"dim 1 \(seq\) is not bound"):
        bind_inputs(_model([2, "seq"]), parse_bindings(), default_dim=None)


@pytest.mark.parametrize(
    ("shapes", "dims", "message"),
    [
        (["Z=1,2"], [], r"--input-shape Z: no such input"),
        (["X=1,2,3"], [], r"rank 3 given, the model's input has rank 2"),
        (["X=2,9"], [], r"dim 1 is fixed at 8 in the model, 9 given"),
        ([], ["seq=4"], r"--dim seq: no input has a dim named 'seq'"),
    ],
)
def test_binding_errors(shapes: list[str], dims: list[str], message: str) -> None:
    with pytest.raises(ShapeBindingError, match=message):
        bind_inputs(_model(["batch", 8]), parse_bindings(shapes, dims))


def test_batch_on_a_fixed_batch_model() -> None:
    with pytest.raises(ShapeBindingError, match=r"--batch 4: no input has an unknown leading dim"):
        bind_inputs(_model([1, 8]), parse_bindings(batch=4))
    assert _input_dims(bind_inputs(_model([1, 8]), parse_bindings(batch=1))[0]) == [1, 8]


def test_same_symbol_on_two_inputs_gets_one_value() -> None:
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["n", 4])
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Add", ["A", "B"], ["Y"])], "g", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ShapeBindingError, match="bound to both"):
        bind_inputs(model, parse_bindings(["A=2,4", "B=3,4"]))
    shapes = infer_shapes(model, parse_bindings(["A=2,4"]))
    assert [t.dims for t in shapes.inputs] == [(2, 4), (2, 4)]


def test_cli_binding_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(["batch", 8]), str(path))
    result = CliRunner().invoke(app, ["memory", str(path), "--input-shape", "X=1,2,3"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"modelsize: {path}: --input-shape X: rank 3")
    result = CliRunner().invoke(app, ["memory", str(path), "--dim", "nope=3"])
    assert result.exit_code == 2 and "no input has a dim named 'nope'" in result.stderr


def test_data_propagation_resolves_shape_chains() -> None:
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[batch, 16] X) => (float[?, ?] Y) {
          s = Shape(X)
          neg = Constant<value = int64[1] {-1}>()
          zero = Constant<value = int64[1] {0}>()
          one = Constant<value = int64[1] {1}>()
          d0 = Slice(s, zero, one)
          four = Constant<value = int64[1] {4}>()
          target = Concat<axis = 0>(d0, four, neg)
          Y = Reshape(X, target)
        }
        """
    )
    shapes = infer_shapes(model, parse_bindings(batch=3)).lookup()
    assert shapes[("", "Y")].dims == (3, 4, 4)


def test_subgraph_tensors_are_inferred() -> None:
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[n, 8] X, bool c) => (float[?, ?] Y) {
          Y = If(c) <
            then_branch = t () => (float[?, ?] a) { a = Relu(X) },
            else_branch = e () => (float[?, ?] b) { b = Sigmoid(X) }
          >
        }
        """
    )
    shapes = infer_shapes(model, parse_bindings(["X=5,8", "c="]))
    inner = {(t.graph, t.name): t for t in shapes.tensors}
    branch = next(k for k in inner if k[1] == "a")
    assert branch[0].endswith(".then_branch")
    assert inner[branch].dims == (5, 8)


def test_unknown_op_output_is_reported_and_sized_like_its_input() -> None:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 8])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [
            helper.make_node("Mystery", ["X"], ["T"], domain="com.example"),
            helper.make_node("Relu", ["T"], ["Y"]),
        ],
        "g",
        [x],
        [y],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    shapes = infer_shapes(model)
    unknown = {u.name: u for u in shapes.unknown}
    assert unknown["T"].producer == "Mystery"
    assert unknown["T"].assumed_nbytes == 2 * 8 * 4
    assert "largest known activation input" in unknown["T"].treatment


def test_skeleton_drops_weight_payloads_keeps_shape_constants(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), "W")
    target = numpy_helper.from_array(np.array([-1, 128], dtype=np.int64), "target")
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 256])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["H"]),
            helper.make_node("Reshape", ["H", "target"], ["Y"]),
        ],
        "g",
        [x],
        [y],
        [w, target],
    )
    path = tmp_path / "ext.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(
        model, str(path), save_as_external_data=True, location="ext.data", size_threshold=1024
    )
    skeleton = load_model_skeleton(path)
    by_name = {t.name: t for t in skeleton.graph.initializer}
    assert list(by_name["W"].dims) == [256, 256]
    assert numpy_helper.to_array(by_name["target"]).tolist() == [-1, 128]
    shapes = infer_shapes(path, parse_bindings(batch=2)).lookup()
    assert shapes[("", "Y")].dims == (4, 128)


def test_loop_body_reads_outer_scope_and_is_inferred() -> None:
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[n, 16] X, int64 trips) => (float[?, ?] Y) {
          cond = Constant<value = bool {1}>()
          Y = Loop(trips, cond, X) <
            body = b (int64 i, bool c, float[?, ?] acc) => (bool c2, float[?, ?] next) {
              c2 = Identity(c)
              t = Add(acc, X)
              next = Relu(t)
            }
          >
        }
        """
    )
    shapes = infer_shapes(model, parse_bindings(["X=3,16", "trips="]))
    body = {t.name: t for t in shapes.tensors if t.graph.endswith(".body")}
    assert body["t"].dims == (3, 16)
    assert body["next"].nbytes == 3 * 16 * 4
    assert shapes.lookup()[("", "Y")].dims == (3, 16)


def test_symbolic_inference_fills_gaps_without_weight_payloads(tmp_path: Path) -> None:
    # com.microsoft Gelu is unknown to onnx's inference, known to onnxruntime's symbolic one; the
    # big initializer is a payload-less placeholder in the skeleton and must not be read.
    p = numpy_helper.from_array(np.ones((1, 64, 64), dtype=np.float32), "P")
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 64, 64])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["X", "P"], ["S"]),
            helper.make_node("Gelu", ["S"], ["G"], domain="com.microsoft"),
            helper.make_node("Relu", ["G"], ["Y"]),
        ],
        "g",
        [x],
        [y],
        [p],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    path = tmp_path / "gelu.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    shapes = infer_shapes(path, parse_bindings(batch=2))
    assert shapes.notes == ()
    assert shapes.unknown == ()
    assert "onnxruntime-symbolic" in shapes.engines
    assert shapes.lookup()[("", "Y")].dims == (2, 64, 64)


def _paddle_style_model() -> onnx.ModelProto:
    """x: [-1, 3, '?', '?'] as PaddlePaddle exports write it; a 3x3 Conv keeps H and W."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), dtype=np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_anonymous_dims_are_independent_per_occurrence() -> None:
    model = _paddle_style_model()
    bound, values, _defaulted = bind_inputs(model, parse_bindings(["x=1,3,48,192"]))
    assert _input_dims(bound) == [1, 3, 48, 192]
    assert values == {}  # '?' is no symbol: nothing to report as bound
    shapes = infer_shapes(model, parse_bindings(["x=1,3,48,192"])).lookup()
    assert shapes[("", "y")].dims == (1, 4, 48, 192)


def test_real_symbols_still_tie_dims_across_inputs() -> None:
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["batch", "?"])
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, ["batch", "?"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["A", "B"], ["Y"], axis=1)], "g", [a, b], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    bound, values, _ = bind_inputs(model, parse_bindings(["A=2,5", "B=2,7"]))
    assert [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in bound.graph.input] == [
        [2, 5],
        [2, 7],
    ]
    assert values == {"batch": 2}
    with pytest.raises(ShapeBindingError, match="'batch' is bound to both 2 and 3"):
        bind_inputs(model, parse_bindings(["A=2,5", "B=3,5"]))
    # Unbound: 'batch' of B follows A's, each '?' takes the default on its own.
    bound, _values, _ = bind_inputs(model, parse_bindings(["A=4,5"]))
    assert [d.dim_value for d in bound.graph.input[1].type.tensor_type.shape.dim] == [4, 1]


def test_anonymous_dims_in_memory_and_measure_binding(tmp_path: Path) -> None:
    from graph_analysis.memory import estimate_memory
    from graph_analysis.runtime.measure import measure_inference, model_input_specs

    path = tmp_path / "paddle.onnx"
    onnx.save(_paddle_style_model(), str(path))
    bindings = parse_bindings(["x=1,3,48,192"])
    specs = model_input_specs(path, bindings)
    assert [(s.name, s.dims) for s in specs] == [("x", (1, 3, 48, 192))]
    inference = estimate_memory(path, bindings).inference
    assert inference.inputs_bytes == 1 * 3 * 48 * 192 * 4
    assert inference.largest_activation_bytes == 1 * 4 * 48 * 192 * 4
    result = CliRunner().invoke(app, ["memory", str(path), "--input-shape", "x=1,3,48,192"])
    assert result.exit_code == 0, result.stderr
    # onnxruntime runs the model on the bound inputs: its output is the size the estimate counts.
    measured = measure_inference(path, bindings, runs=1)
    assert [(s.name, s.dims) for s in measured.inputs] == [("x", (1, 3, 48, 192))]
    assert measured.output_bytes == inference.largest_activation_bytes


def test_symbolic_inference_runs_on_constant_node_weights() -> None:
    # A weight stored as a Constant node (PaddlePaddle, inlined functions) is stubbed in the
    # skeleton like an initializer; onnxruntime's symbolic pass must not try to read it.
    weight = numpy_helper.from_array(np.zeros((8, 200), dtype=np.float32), "own_name")
    nodes = [
        helper.make_node("Constant", [], ["W"], value=weight),
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Gelu", ["H"], ["Y"], domain="com.microsoft"),  # unknown to onnx
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    skeleton = _skeleton_of(model)
    shapes = infer_shapes(skeleton, parse_bindings(batch=3))
    assert shapes.notes == ()
    assert "onnxruntime-symbolic" in shapes.engines
    assert shapes.lookup()[("", "Y")].dims == (3, 200)


def _skeleton_of(model: onnx.ModelProto) -> onnx.ModelProto:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, str(path))
        return load_model_skeleton(path)


def test_symbolic_inference_never_imports_torch() -> None:
    """onnxruntime.tools' __init__ imports torch when installed; the core loads the engine by path."""
    import subprocess
    import sys

    code = (
        "import sys; from graph_analysis.shapes import _symbolic_module; "
        "m = _symbolic_module(); print(m is not None, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["True", "False"]


def _segment_model() -> onnx.ModelProto:
    """Shape values computed early and read late, an unnamed If reading an outer tensor, a weight."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((6, 6), np.float32), "w")
    branch_out = helper.make_tensor_value_info("b", TensorProto.FLOAT, None)
    then_branch = helper.make_graph(
        [helper.make_node("Relu", ["h3"], ["b"])], "then", [], [branch_out]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["h3"], ["b"])], "else", [], [branch_out]
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h1"]),  # unnamed
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("ReduceSum", ["h3"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero_f"], ["cond"]),
        helper.make_node(  # unnamed, reads h3 from the outer scope
            "If", ["cond"], ["h4"], then_branch=then_branch, else_branch=else_branch
        ),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["h4", "target"], ["y"], name="reshape"),
    ]
    inits = [
        w,
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("ir_version", [3, 8])
@pytest.mark.parametrize("segment", [6, 7, 9, 20])
def test_segmented_inference_equals_whole_graph(
    segment: int, ir_version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph above INFERENCE_SEGMENT_NODES is inferred in segments: the same shapes, because a
    boundary never cuts a shape value (Shape -> ... -> Reshape, nodes 6-10) when it can move back
    (segments of 7: [0, 7) moved back to [0, 6), then [6, 11))."""
    from graph_analysis import shapes

    model = _segment_model()
    if ir_version < 4:  # initializers are graph inputs too before IR 4
        model.ir_version = ir_version
        model.graph.input.extend(
            helper.make_tensor_value_info(t.name, t.data_type, t.dims)
            for t in model.graph.initializer
        )
    bindings = parse_bindings(("x=4,6",), ())
    whole = infer_shapes(model, bindings, use_symbolic=False)
    monkeypatch.setattr(shapes, "INFERENCE_SEGMENT_NODES", segment)
    parts = infer_shapes(model, bindings, use_symbolic=False)
    assert whole.lookup()[("", "y")].dims == (4, 6)
    assert parts.lookup() == whole.lookup()
    assert parts.lookup()[("/If_5.else_branch", "b")].dims == (4, 6)
    assert not parts.unknown


def test_segmented_inference_says_when_a_shape_value_crosses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Segments of four nodes cannot hold Shape -> ... -> Reshape (five nodes): a note says so,
    and the shape lost is treated as unknown, not guessed silently."""
    from graph_analysis import shapes

    model = _segment_model()
    monkeypatch.setattr(shapes, "INFERENCE_SEGMENT_NODES", 4)
    parts = infer_shapes(model, parse_bindings(("x=4,6",), ()), use_symbolic=False)
    assert any("cut through a computed shape value" in n for n in parts.notes)
    assert ("", "y") in {(u.graph, u.name) for u in parts.unknown}
    # A shape the model declares still counts, as in a whole-graph inference.
    model.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6]))
    declared = infer_shapes(model, parse_bindings(("x=4,6",), ()), use_symbolic=False)
    assert declared.lookup()[("", "y")].dims == (4, 6)
    assert not declared.unknown


@pytest.mark.parametrize("ir_version", [3, 8])
@pytest.mark.parametrize("segment", [4, 7, 20])
def test_lazy_skeleton_gives_what_the_parsed_one_gives(
    segment: int, ir_version: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above LAZY_SKELETON_NODES the skeleton keeps its nodes as bytes (parsed when read) and its
    segments are spliced from them: the shapes and the memory estimate are those of the parsed
    skeleton, segment for segment (an If reading an outer tensor, shape values, a weight, IR 3)."""
    from graph_analysis import _weights, shapes
    from graph_analysis._graph import LazyModel, LazyNodes
    from graph_analysis._weights import weights_and_skeleton
    from graph_analysis.memory import estimate_memory

    model = _segment_model()
    if ir_version < 4:
        model.ir_version = ir_version
        model.graph.input.extend(
            helper.make_tensor_value_info(t.name, t.data_type, t.dims)
            for t in model.graph.initializer
        )
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    bindings = parse_bindings(("x=4,6",), ())
    monkeypatch.setattr(shapes, "INFERENCE_SEGMENT_NODES", segment)
    parsed = infer_shapes(path, bindings, use_symbolic=False)
    parsed_memory = estimate_memory(path, bindings, train=True)
    monkeypatch.setattr(_weights, "LAZY_SKELETON_NODES", 0)
    reading = weights_and_skeleton(path)
    assert isinstance(reading.skeleton, LazyModel)
    assert isinstance(reading.skeleton.graph.node, LazyNodes)
    assert [n.op_type for n in reading.skeleton.graph.node] == [n.op_type for n in model.graph.node]
    lazy = infer_shapes(path, bindings, use_symbolic=False)
    assert lazy.lookup() == parsed.lookup()
    assert (lazy.notes, [u.name for u in lazy.unknown]) == (
        parsed.notes,
        [u.name for u in parsed.unknown],
    )
    lazy_memory = estimate_memory(path, bindings, train=True)
    assert lazy_memory.inference == parsed_memory.inference
    assert lazy_memory.training == parsed_memory.training
    assert tuple(lazy_memory.inference.timeline_nodes) == tuple(
        parsed_memory.inference.timeline_nodes
    )


def test_lazy_skeleton_keeps_graph_fields_of_two_byte_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header of a lazy skeleton re-writes the graph's other fields: ``metadata_props``
    (field 16) has a two-byte key, which a one-byte key once corrupted."""
    from graph_analysis import _weights
    from graph_analysis._weights import weights_and_skeleton

    model = _segment_model()
    entry = model.graph.metadata_props.add()
    entry.key, entry.value = "k", "v"
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    monkeypatch.setattr(_weights, "LAZY_SKELETON_NODES", 0)
    skeleton = weights_and_skeleton(path).skeleton
    assert [(p.key, p.value) for p in skeleton.graph.metadata_props] == [("k", "v")]
    assert [o.name for o in skeleton.graph.output] == ["y"]
    assert len(skeleton.graph.node) == len(model.graph.node)


def test_lazy_skeleton_refuses_what_needs_every_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serializing or copying a lazy skeleton would silently drop its nodes: it refuses."""
    from graph_analysis import _weights
    from graph_analysis._weights import weights_and_skeleton

    path = tmp_path / "m.onnx"
    onnx.save(_segment_model(), str(path))
    monkeypatch.setattr(_weights, "LAZY_SKELETON_NODES", 0)
    skeleton = weights_and_skeleton(path).skeleton
    assert skeleton.ir_version and skeleton.graph.input[0].name == "x"
    assert skeleton.graph.node[-1].name == "reshape"
    assert skeleton.graph.node[1:3][0].op_type == "Relu"
    with pytest.raises(AttributeError, match="lazy skeleton"):
        skeleton.SerializeToString()
    with pytest.raises(AttributeError, match="lazy skeleton"):
        skeleton.graph.SerializeToString()
    with pytest.raises(AttributeError, match="lazy skeleton"):
        skeleton.CopyFrom(onnx.ModelProto())
    with pytest.raises(IndexError):
        skeleton.graph.node[11]


def test_value_info_reader_matches_protobuf() -> None:
    """The wire reader of inferred shapes (with its inline fast path) reads every layout as
    protobuf does: dim values of every width, symbols, negative and absent dims, long names, no
    shape, no type, denotations, a doc string."""
    from graph_analysis.shapes import _shape_of, _wire_shape

    cases = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 127, 128, 2**40, 2**62]),
        helper.make_tensor_value_info("n" * 300, TensorProto.INT64, ["batch", None, 0]),
        helper.make_tensor_value_info("s", TensorProto.BFLOAT16, []),
        helper.make_tensor_value_info("u", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("d", TensorProto.UINT8, [3] * 40),
        helper.make_tensor_value_info("doc", TensorProto.FLOAT, [2], doc_string="hello"),
        onnx.ValueInfoProto(name="untyped"),
    ]
    negative = helper.make_tensor_value_info("neg", TensorProto.FLOAT, [4, 5])
    negative.type.tensor_type.shape.dim[1].dim_value = -1
    denoted = helper.make_tensor_value_info("den", TensorProto.FLOAT, [4, 5])
    denoted.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    cases += [negative, denoted]
    for vi in cases:
        data = vi.SerializeToString()
        assert _wire_shape(data, 0, len(data), "g") == _shape_of(vi, "g"), vi.name
