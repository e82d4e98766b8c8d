"""The graph onnxruntime runs: shape rules of its NCHWc and fused ops, the liveness of such a graph
(in-place Sum, kernel workspaces), when the estimate uses it, and the child that makes it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graph_analysis._weights import read_weights
from graph_analysis.bindings import parse_bindings
from graph_analysis.memory import EXPORTED_GRAPH, ExecutedGraph, estimate_memory, memory_to_dict
from graph_analysis.shapes import NCHWC_DOMAIN, infer_shapes

F32 = TensorProto.FLOAT
MS = "com.microsoft"


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid(NCHWC_DOMAIN, 1),
            helper.make_opsetid(MS, 1),
        ],
    )
    model.ir_version = 8
    return model


def _vi(name: str, dims: list[object] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, F32, dims)


def _w(name: str, *dims: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(dims, np.float32), name)


def _nchwc_graph() -> onnx.ModelProto:
    """Every rule once: X [n, 3, 32, 32] through NCHWc ops, reorders and fused ops."""
    nodes = [
        # 3 input channels: the first NCHWc Conv reads NCHW directly; 12 outputs padded to 16.
        helper.make_node(
            "Conv",
            ["X", "W1", "B1"],
            ["C1"],
            domain=NCHWC_DOMAIN,
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[1, 1],
            activation="Relu",
        ),
        helper.make_node("ReorderOutput", ["C1"], ["O1"], domain=NCHWC_DOMAIN, channels=12),
        helper.make_node("ReorderInput", ["O1"], ["R1"], domain=NCHWC_DOMAIN, channels_last=0),
        helper.make_node(
            "MaxPool", ["R1"], ["P1"], domain=NCHWC_DOMAIN, kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "Upsample", ["P1"], ["U1"], domain=NCHWC_DOMAIN, scales=[1, 1, 2, 2], mode="nearest"
        ),
        helper.make_node("GlobalAveragePool", ["U1"], ["G1"], domain=NCHWC_DOMAIN),
        helper.make_node(
            "ReorderOutput", ["U1"], ["O2"], domain=NCHWC_DOMAIN, channels=12, channels_last=1
        ),
        helper.make_node("ReorderInput", ["O2"], ["R2"], domain=NCHWC_DOMAIN, channels_last=1),
        helper.make_node(
            "FusedConv", ["O1", "W2"], ["F1"], domain=MS, kernel_shape=[1, 1], activation="Relu"
        ),
        helper.make_node("Flatten", ["G1"], ["V1"]),
        helper.make_node("FusedGemm", ["V1", "W3"], ["M1"], domain=MS, transB=1),
        helper.make_node("FusedMatMul", ["F1", "F1"], ["M2"], domain=MS, transB=1, alpha=1.0),
    ]
    weights = [_w("W1", 16, 3, 3, 3), _w("B1", 16), _w("W2", 5, 12, 1, 1), _w("W3", 7, 16)]
    outputs = [_vi(n, None) for n in ("R2", "M1", "M2")]
    return _model(nodes, [_vi("X", ["n", 3, 32, 32])], outputs, weights)


def test_nchwc_and_fused_op_shape_rules() -> None:
    shapes = infer_shapes(_nchwc_graph(), parse_bindings(batch=2), nchwc_block_size=8)
    dims = {t.name: t.dims for t in shapes.tensors}
    assert dims["C1"] == (2, 16, 32, 32)  # the weight's (padded) output channels
    assert dims["O1"] == (2, 12, 32, 32)  # ReorderOutput: its channels attribute
    assert dims["R1"] == (2, 16, 32, 32)  # ReorderInput: 12 rounded up to the block, 8
    assert dims["P1"] == (2, 16, 16, 16)
    assert dims["U1"] == (2, 16, 32, 32)
    assert dims["G1"] == (2, 16, 1, 1)
    assert dims["O2"] == (2, 32, 32, 12)  # channels_last output
    assert dims["R2"] == (2, 16, 32, 32)  # channels_last input
    assert dims["F1"] == (2, 5, 32, 32)
    assert dims["M1"] == (2, 7)
    assert dims["M2"] == (2, 5, 32, 32)
    assert shapes.unknown == ()


def test_reorder_input_without_the_block_size_stays_unknown() -> None:
    shapes = infer_shapes(_nchwc_graph(), parse_bindings(batch=2))
    assert "R1" in {u.name for u in shapes.unknown}
    assert {t.name: t.dims for t in shapes.tensors}["C1"] == (2, 16, 32, 32)
    wider = infer_shapes(_nchwc_graph(), parse_bindings(batch=2), nchwc_block_size=16)
    assert {t.name: t.dims for t in wider.tensors}["R1"] == (2, 16, 32, 32)


def _exported_conv() -> onnx.ModelProto:
    """X [1, 16, 8, 8] -> Conv -> Conv + X (residual): what the executed graph below runs."""
    nodes = [
        helper.make_node("Conv", ["X", "W"], ["A"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["A", "W"], ["B"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["B", "X"], ["Y"]),
    ]
    return _model(nodes, [_vi("X", [1, 16, 8, 8])], [_vi("Y", None)], [_w("W", 16, 16, 1, 1)])


def _executed_conv(block: int | None = 8) -> ExecutedGraph:
    """The same in NCHWc: X reordered to R, the second Conv adds R in place (its Sum input)."""
    nodes = [
        helper.make_node("ReorderInput", ["X"], ["R"], domain=NCHWC_DOMAIN, channels_last=0),
        helper.make_node("Conv", ["R", "W"], ["A"], domain=NCHWC_DOMAIN, kernel_shape=[1, 1]),
        helper.make_node(
            "Conv", ["A", "W", "", "R"], ["B"], domain=NCHWC_DOMAIN, kernel_shape=[1, 1]
        ),
        helper.make_node("ReorderOutput", ["B"], ["Y"], domain=NCHWC_DOMAIN, channels=16),
    ]
    model = _model(nodes, [_vi("X", [1, 16, 8, 8])], [_vi("Y", None)], [_w("W", 16, 16, 1, 1)])
    return ExecutedGraph(model, read_weights(model), block, "test graph")


def test_executed_graph_liveness_with_in_place_sum() -> None:
    # Every tensor is 16 x 8 x 8 floats = 4096 B. Exported: at the Add, X (the caller's), A (read
    # by nothing later, freed after the second Conv), B and Y: X, B, Y = 12288; at the second
    # Conv X, A, B = 12288. Executed: X and R at the reorder; X, R, A at the first Conv; at the
    # second Conv B takes over R's buffer (R dies there): X, R=B, A = 12288, not 16384;
    # at ReorderOutput X, B, Y = 12288.
    exported = estimate_memory(_exported_conv())
    executed = estimate_memory(_exported_conv(), executed_graph=_executed_conv())
    assert exported.inference.activations_peak_bytes == 3 * 4096
    assert exported.inference.activations_graph == EXPORTED_GRAPH
    inf = executed.inference
    assert inf.activations_graph == "test graph"
    assert inf.activations_peak_bytes == 3 * 4096
    assert inf.exported_activations_peak_bytes == 3 * 4096
    assert inf.activations_sum_bytes == 5 * 4096  # X, R, A, B, Y: the naive sum has no reuse
    # Same weights, so the peaks differ only by the activation terms and the session's state
    # for the nodes it holds: the executed graph's four, not the exported three.
    assert inf.weights_bytes == exported.inference.weights_bytes
    runtime = inf.runtime
    assert (
        inf.graph_state_bytes == 4 * runtime.session_node_bytes + runtime.session_initializer_bytes
    )
    assert (
        exported.inference.graph_state_bytes == inf.graph_state_bytes - runtime.session_node_bytes
    )
    data = memory_to_dict(executed)
    assert data["inference"]["activations_graph"] == "test graph"  # type: ignore[index]
    assert data["executed_graph_not_used"] is None


def test_in_place_needs_the_sum_input_to_die_there() -> None:
    executed = _executed_conv()
    model = executed.model
    # R also read after the second Conv: no in-place, B is a buffer of its own.
    model.graph.node.append(helper.make_node("Relu", ["R"], ["Z"]))
    model.graph.output.append(_vi("Z", None))
    inf = estimate_memory(
        _exported_conv(),
        executed_graph=ExecutedGraph(model, read_weights(model), 8, "test graph"),
    ).inference
    assert inf.activations_peak_bytes == 4 * 4096  # X, R, A, B at the second Conv


def test_executed_graph_with_unknown_shapes_is_not_used() -> None:
    est = estimate_memory(_exported_conv(), executed_graph=_executed_conv(block=None))
    # Without the block size the ReorderInput output (and all after it) is unknown, sized by the
    # fallback rule: 4 tensors of 4096 B, under the 1 MiB margin: still used.
    assert est.inference.activations_graph == "test graph"
    big = _executed_conv(block=None)
    graph = big.model.graph
    graph.input[0].CopyFrom(_vi("X", [64, 16, 32, 32]))  # 4 MiB a tensor
    exported = _exported_conv()
    exported.graph.input[0].CopyFrom(_vi("X", [64, 16, 32, 32]))
    est = estimate_memory(exported, executed_graph=big)
    assert est.inference.activations_graph == EXPORTED_GRAPH
    note = est.assumptions["executed_graph_not_used"]
    assert isinstance(note, str) and "without a known shape" in note
    assert est.inference.exported_activations_peak_bytes is None


def test_conv_transpose_column_buffer_is_counted_for_inference_only() -> None:
    # X [1, 4, 8, 8] (1 KiB) -> ConvTranspose W [4, 2, 2, 2] stride 2 -> Y [1, 2, 16, 16] (2 KiB);
    # the kernel's column buffer: (2 x 2 x 2) rows x 64 input pixels x 4 B = 2 KiB while it runs.
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], kernel_shape=[2, 2], strides=[2, 2])
    model = _model([node], [_vi("X", [1, 4, 8, 8])], [_vi("Y", None)], [_w("W", 4, 2, 2, 2)])
    est = estimate_memory(model, train=True)
    assert est.inference.activations_peak_bytes == 1024 + 2048 + 2048
    assert any("kernel workspace 2048 B" in n for n in est.inference.peak_nodes)
    assert est.inference.timeline == (5120,)


def test_measured_code_pages_stand_for_the_assumed_ones() -> None:
    from dataclasses import replace

    executed = _executed_conv()
    assumed = estimate_memory(_exported_conv(), executed_graph=executed).inference
    assert not assumed.code_pages_measured
    assert assumed.code_pages_bytes == assumed.runtime.session_code_bytes
    measured = estimate_memory(
        _exported_conv(), executed_graph=replace(executed, session_code_bytes=5 << 20)
    ).inference
    assert measured.code_pages_measured and measured.code_pages_bytes == 5 << 20
    shift = (5 << 20) - assumed.runtime.session_code_bytes
    assert measured.peak_bytes - assumed.peak_bytes == shift
    assert measured.session_creation_bytes - assumed.session_creation_bytes == shift
    data = memory_to_dict(estimate_memory(_exported_conv()))["inference"]
    assert data["code_pages_measured"] is False  # type: ignore[index]


@pytest.mark.slow
def test_optimized_graph_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graph_analysis.runtime.optimized import executed_graph

    relu = helper.make_node("Relu", ["X"], ["Y"])
    plain = tmp_path / "relu.onnx"
    onnx.save(_model([relu], [_vi("X", [1, 4])], [_vi("Y", None)]), str(plain))
    made, why = executed_graph(plain)  # no convolution: made too (fusions change any graph)
    assert why is None and made is not None
    assert [n.op_type for n in made.model.graph.node] == ["Relu"]
    if sys.platform == "linux":  # the child measured the code pages its session mapped
        assert made.session_code_bytes is not None
        assert 0 < made.session_code_bytes < 64 * 1024 * 1024
        inf = estimate_memory(plain, executed_graph=made).inference
        assert inf.code_pages_measured and inf.code_pages_bytes == made.session_code_bytes

    nodes = [
        helper.make_node("Conv", ["X", "W"], ["A"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["A"], ["B"]),
        helper.make_node("Conv", ["B", "W2"], ["Y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    conv = tmp_path / "conv.onnx"
    weights = [_w("W", 32, 16, 3, 3), _w("W2", 32, 32, 3, 3)]
    onnx.save(_model(nodes, [_vi("X", [1, 16, 32, 32])], [_vi("Y", None)], weights), str(conv))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # The child must find the project from any folder without the caller's PYTHONPATH (it put
    # graph_analysis/ itself on the path once the children moved into runtime/).
    monkeypatch.delenv("PYTHONPATH", raising=False)
    made, why = executed_graph(conv)
    assert why is None and made is not None
    assert "ORT_ENABLE_ALL" in made.description
    ops = {(n.domain, n.op_type) for n in made.model.graph.node}
    if made.nchwc_block_size:  # a machine with MLAS's NCHWc kernels (AVX2, AVX-512, NEON)
        assert (NCHWC_DOMAIN, "Conv") in ops and (NCHWC_DOMAIN, "ReorderInput") in ops
        est = estimate_memory(conv, executed_graph=made)
        assert est.inference.activations_graph == made.description
        # X (64 KiB) is reordered (R, 64 KiB); the first Conv (Relu fused) makes A (128 KiB)
        # from R, the second Conv B (128 KiB) from A, ReorderOutput Y (128 KiB) from B. At the
        # second Conv and at the reorder, X + two 128 KiB buffers: 320 KiB.
        assert est.inference.activations_peak_bytes == (64 + 2 * 128) * 1024
    assert os.listdir(work) == []
    assert sorted(os.listdir(tmp_path)) == ["conv.onnx", "relu.onnx", "work"]


def test_memory_static_flag_runs_nothing(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli.app import app

    path = tmp_path / "conv.onnx"
    onnx.save(_exported_conv(), str(path))
    result = CliRunner().invoke(app, ["memory", str(path), "--static", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["executed_graph_not_used"] == "static estimate asked for"
    assert data["inference"]["activations_graph"] == EXPORTED_GRAPH
    assert data["inference"]["activations_peak_bytes"] == 3 * 4096
