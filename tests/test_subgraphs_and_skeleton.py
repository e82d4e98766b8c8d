"""Weights at any subgraph depth, outer-scope reads, and the weight-free skeleton."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graph_analysis import Role, analyze
from graph_analysis.loading import load_skeleton, read_model


def _nested_model() -> onnx.ModelProto:
    """Loop body -> If -> Scan body, each level holding a Constant weight; the innermost level also
    reads an initializer of the main graph (outer scope)."""
    f = TensorProto.FLOAT
    w = lambda name, seed: numpy_helper.from_array(  # noqa: E731
        np.random.default_rng(seed).standard_normal((4, 4)).astype(np.float32), name
    )
    scan_body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["scan.w"], value=w("scan.w", 3)),
            helper.make_node("MatMul", ["s_in", "scan.w"], ["s1"]),
            helper.make_node("MatMul", ["s1", "outer.w"], ["s_out"]),
        ],
        "scan_body",
        [helper.make_tensor_value_info("s_in", f, [1, 4])],
        [helper.make_tensor_value_info("s_out", f, [1, 4])],
    )
    then_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["if.w"], value=w("if.w", 2)),
            helper.make_node("MatMul", ["carry", "if.w"], ["t1"]),
            helper.make_node("Unsqueeze", ["t1", "zero"], ["t2"]),
            helper.make_node("Scan", ["t2"], ["t3"], body=scan_body, num_scan_inputs=1),
            helper.make_node("Squeeze", ["t3", "zero"], ["then_out"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", f, [1, 4])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["carry"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", f, [1, 4])],
    )
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["loop.w"], value=w("loop.w", 1)),
            helper.make_node("MatMul", ["carry", "loop.w"], ["c1"]),
            helper.make_node("If", ["flag"], ["c2"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Add", ["c1", "c2"], ["carry_out"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carry", f, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carry_out", f, [1, 4]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "", "x"], ["y"], body=body, name="loop")],
        "main",
        [helper.make_tensor_value_info("x", f, [1, 4])],
        [helper.make_tensor_value_info("y", f, [1, 4])],
        [
            w("outer.w", 4),
            numpy_helper.from_array(np.array(2, np.int64), "trip"),
            numpy_helper.from_array(np.array(True), "flag"),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weights_at_every_depth_are_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "nested.onnx"
    onnx.save_model(_nested_model(), path)
    import onnxruntime as ort

    # The fixture is a real, runnable model.
    out = ort.InferenceSession(str(path)).run(None, {"x": np.ones((1, 4), np.float32)})[0]
    assert out.shape == (1, 4)
    report = analyze(path)
    assert report.parameters.total == 4 * 16
    graphs = {t.name: t.graph for t in report.tensors if t.role == Role.PARAMETER}
    assert graphs == {
        "outer.w": "",
        "loop.w": "loop.body",
        "if.w": "loop.body/If_2.then_branch",
        "scan.w": "loop.body/If_2.then_branch/Scan_3.body",
    }
    outer = next(t for t in report.tensors if t.name == "outer.w")
    assert outer.consumers == ("MatMul",)  # read from the innermost Scan body, through two scopes
    assert report.num_subgraphs == 4


def test_skeleton_keeps_structure_and_drops_payloads(tmp_path: Path, complex_path: Path) -> None:
    skeleton = load_skeleton(complex_path)
    full = onnx.load(complex_path)
    assert [n.op_type for n in skeleton.graph.node] == [n.op_type for n in full.graph.node]
    stubbed = {
        t.name for t in skeleton.graph.initializer if t.data_location == TensorProto.EXTERNAL
    }
    assert stubbed == {"fc1.weight", "fc2.weight"}  # more than 1024 elements
    kept = {t.name: t for t in skeleton.graph.initializer}
    assert numpy_helper.to_array(kept["flat_shape"]).tolist() == [-1, 4096]
    assert all(
        list(kept[n].dims) == list(full_t.dims)
        for n, full_t in ((t.name, t) for t in full.graph.initializer)
    )
    assert skeleton.ByteSize() < 20_000 < full.ByteSize()
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    shapes = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in inferred.graph.value_info
    }
    assert shapes["f"][1] == 4096  # the Reshape target was kept, so data propagation works


def test_skeleton_inlines_small_external_tensors(tmp_path: Path) -> None:
    from fixtures.builders import external_data_model

    path = external_data_model(tmp_path)
    skeleton = load_skeleton(path, keep_max_elements=20)
    by_name = {t.name: t for t in skeleton.graph.initializer}
    bias = numpy_helper.to_array(by_name["fc1.bias"])  # 20 elements: inlined from the .data file
    full = onnx.load(path)
    assert np.array_equal(
        bias, numpy_helper.to_array(next(t for t in full.graph.initializer if t.name == "fc1.bias"))
    )
    assert by_name["fc1.weight"].external_data[0].value == "modelsize-stripped-payload"


def test_read_model_records_graph_structure(zoo_path: Path) -> None:
    model = read_model(zoo_path)
    assert model.opsets == {"": 21}
    assert model.producer_name == "modelsize-fixtures"
    names = [g.path for g in model.graphs()]
    assert sorted(names) == [
        "",
        "/branch/If.else_branch",
        "/branch/If.then_branch",
        "/loop/Loop.body",
    ]
