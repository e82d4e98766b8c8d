"""Inference memory: the runtime model's formulas against hand-computed numbers, the unknown-shape
fallback, and that estimating writes nothing outside a private temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from graph_analysis.bindings import parse_bindings
from graph_analysis.memory import OrtCpuModel, estimate_memory, memory_to_dict
from graph_analysis.shapes import infer_shapes

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    model.ir_version = 8
    return model


def _vi(name: str, dims: list[object] | None, elem_type: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, dims)


def _stopping_model(path: Path) -> Path:
    """A model on which onnxruntime's symbolic shape inference stops early.

    It guesses an unknown op's output rank from its first input (2 here), and then cannot transpose
    that with a rank-3 ``perm``: its public ``infer_shapes`` then saves ``sym_shape_infer_temp.onnx``
    and a ``<uuid>.data`` file into the working directory.
    """
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Mystery", ["H"], ["M"], domain="com.example"),
        helper.make_node("Transpose", ["M"], ["Y"], perm=[1, 0, 2]),
    ]
    model = _model(nodes, [_vi("X", ["n", 64])], [_vi("Y", None)], [w])
    onnx.save(model, str(path))
    return path


def test_memory_writes_nothing_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _stopping_model(tmp_path / "stops.onnx")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, ["memory", str(model), "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert "stopped early" in result.stdout  # the engine did stop: the case that used to write
    assert os.listdir(work) == []
    assert sorted(os.listdir(tmp_path)) == ["stops.onnx", "work"]


def test_unknown_output_is_sized_from_activation_inputs_never_a_weight() -> None:
    # An unknown op reading a 64 KiB weight and a 256 B activation: its output is assumed as large
    # as the activation. Sized like the weight, two such outputs made a quantized recognizer 1.37x.
    w = numpy_helper.from_array(np.ones((256, 64), np.int8), "Wq")
    nodes = [
        helper.make_node("Relu", ["X"], ["A"]),
        helper.make_node("Mystery", ["A", "Wq"], ["M"], domain="com.example"),
        helper.make_node("Mystery", ["Wq"], ["F"], domain="com.example"),  # weights only: folded
        helper.make_node("Mystery", ["M", "F"], ["Y"], domain="com.example"),
    ]
    model = _model(nodes, [_vi("X", [1, 64])], [_vi("Y", None)], [w])
    shapes = infer_shapes(model, use_symbolic=False)
    unknown = {u.name: u for u in shapes.unknown}
    assert unknown["M"].assumed_nbytes == 256
    assert "activation input" in unknown["M"].treatment
    assert unknown["F"].assumed_nbytes == 256 * 64
    assert "weights only" in unknown["F"].treatment
    assert unknown["Y"].assumed_nbytes == 256  # F is a weight, M an activation
    inf = estimate_memory(model).inference
    # X (256) held throughout; at the last node X, M and Y live (A died after node 1): 768 bytes.
    assert inf.activations_peak_bytes == 3 * 256


def test_runtime_formula_heap_kept_and_arena_fragmentation() -> None:
    # 40 small weights (4 KiB each, under glibc's initial mmap threshold) and one 256 KiB weight
    # above it, all read by Add: nothing pre-packed. Activations: X, then A and B of 1 MiB each.
    small = [numpy_helper.from_array(np.zeros((1024,), np.float32), f"s{k}") for k in range(40)]
    big = numpy_helper.from_array(np.zeros((256, 256), np.float32), "big")
    nodes = [helper.make_node("Add", ["X", "big"], ["A0"])]
    for k in range(40):
        nodes.append(helper.make_node("Add", [f"A{k}", f"s{k}"], [f"A{k + 1}"]))
    nodes.append(helper.make_node("Relu", ["A40"], ["Y"]))
    model = _model(nodes, [_vi("X", [1024, 256])], [_vi("Y", None)], [*small, big])
    runtime = OrtCpuModel(
        session_fixed_bytes=1000,
        run_fixed_bytes=100,
        heap_kept_factor=1.0,
        heap_tensor_max_bytes=128 * 1024,
        prepack_factor=0.5,
        arena_fragmentation_factor=1.0,
        arena_simulation=False,
        session_node_bytes=0,
        session_initializer_bytes=0,
    )
    inf = estimate_memory(model, runtime=runtime).inference
    weights = 40 * 4096 + 256 * 256 * 4
    act = 1 << 20  # every activation: 1024 x 256 floats
    assert inf.weights_bytes == weights
    assert inf.prepackable_bytes == 0
    assert inf.heap_kept_bytes == 40 * 4096  # the 256 KiB tensor was mapped, then unmapped
    assert inf.activations_peak_bytes == 3 * act  # X, the Add's input and its output
    assert inf.largest_activation_bytes == act
    assert inf.arena_fragmentation_bytes == act  # min(L, A - L) = min(1, 2) MiB
    running = weights + 40 * 4096 + 3 * act + act + 100
    assert inf.inference_bytes == 1000 + running
    assert inf.session_creation_bytes == 1000 + 2 * weights
    assert inf.peak_bytes == 1000 + max(running, 2 * weights)


def test_fragmentation_is_capped_when_one_tensor_dominates() -> None:
    # X (4 B x 10) -> Expand to a 4 MiB tensor -> ReduceSum: the big tensor dominates the peak, so
    # the arena's extra is what else is live (X and the reduction), not another 4 MiB.
    shape = numpy_helper.from_array(np.array([1024, 1024], np.int64), "shape")
    nodes = [
        helper.make_node("Expand", ["X", "shape"], ["E"]),
        helper.make_node("ReduceSum", ["E"], ["Y"], keepdims=0),
    ]
    model = _model(nodes, [_vi("X", [1, 1024])], [_vi("Y", None)], [shape])
    runtime = OrtCpuModel(arena_fragmentation_factor=1.0, arena_simulation=False)
    inf = estimate_memory(model, runtime=runtime).inference
    big = 1024 * 1024 * 4
    assert inf.largest_activation_bytes == big
    assert inf.arena_fragmentation_bytes == inf.activations_peak_bytes - big
    assert 0 < inf.arena_fragmentation_bytes < big // 100


def test_each_subgraph_adds_its_session_state() -> None:
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4, 25] X, bool c) => (float[4, 25] Y) {
          Y = If(c) <
            then_branch = t () => (float[4, 25] a) { a = Relu(X) },
            else_branch = e () => (float[4, 25] b) { b = Tanh(X) }
          >
        }
        """
    )
    runtime = OrtCpuModel(subgraph_session_bytes=1000)
    with_state = estimate_memory(model, runtime=runtime).inference
    without = estimate_memory(model, runtime=OrtCpuModel(subgraph_session_bytes=0)).inference
    assert with_state.subgraph_state_bytes == 2 * 1000  # two branches
    assert with_state.peak_bytes - without.peak_bytes == 2 * 1000
    assert with_state.session_creation_bytes - without.session_creation_bytes == 2 * 1000


def test_graph_state_counts_the_nodes_and_initializers_a_session_holds() -> None:
    # Main graph: a Constant (it becomes an initializer, not a node), an Add and an If; the If's
    # two branches hold one node each (and a Constant, again not a node): 2 + 2 nodes. Tensors:
    # the initializer W and the two Constants' payloads: 3 initializers.
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4, 25] X, bool c) => (float[4, 25] Y) <float[1] W = {2.0}> {
          K = Constant <value = float[1] {1.0}> ()
          A = Add(X, K)
          Y = If(c) <
            then_branch = t () => (float[4, 25] a) { a = Mul(A, W) },
            else_branch = e () => (float[4, 25] b) {
              L = Constant <value = float[1] {3.0}> ()
              b = Sub(A, L)
            }
          >
        }
        """
    )
    runtime = OrtCpuModel(session_node_bytes=1000, session_initializer_bytes=10)
    with_state = estimate_memory(model, runtime=runtime).inference
    none = OrtCpuModel(session_node_bytes=0, session_initializer_bytes=0)
    without = estimate_memory(model, runtime=none).inference
    assert with_state.graph_state_bytes == 4 * 1000 + 3 * 10
    assert with_state.peak_bytes - without.peak_bytes == 4 * 1000 + 3 * 10
    assert with_state.session_creation_bytes - without.session_creation_bytes == 4030
    assert (
        memory_to_dict(estimate_memory(model, runtime=runtime))["inference"][  # type: ignore[index]
            "graph_state_bytes"
        ]
        == 4030
    )


def test_glibc_threshold_follows_the_largest_weight_so_far() -> None:
    # Weights read by Add (nothing pre-packed), in file order: 1 MiB, 9 MiB, 4 MiB, 9 MiB, 5 MiB.
    # glibc's threshold is 4 MiB once the file's read block is freed: the first 9 MiB copy is
    # mapped, and freeing its mapped original raises the threshold to 9 MiB, so every later
    # copy, the second 9 MiB one too, comes from the heap and leaves a hole (traced on
    # ResNet-50: its 9 MiB, 8 MiB and 4 MiB convolution weights all do).
    mib = 1 << 20
    sizes = [1, 9, 4, 9, 5]
    weights = [
        numpy_helper.from_array(np.zeros(n * mib // 4, np.float32), f"w{k}")
        for k, n in enumerate(sizes)
    ]
    nodes = [
        helper.make_node("Add", ["X" if k == 0 else f"a{k}", f"w{k}"], [f"a{k + 1}"])
        for k in range(len(sizes))
    ]
    model = _model(nodes, [_vi("X", [1])], [_vi(f"a{len(sizes)}", None)], weights)
    rises = estimate_memory(model, runtime=OrtCpuModel(arena_simulation=False)).inference
    assert rises.heap_kept_bytes == (1 + 4 + 9 + 5) * mib
    fixed = OrtCpuModel(arena_simulation=False, heap_threshold_rises=False)
    # The fixed threshold (4 MiB) kept only the weights under it.
    assert estimate_memory(model, runtime=fixed).inference.heap_kept_bytes == 1 * mib
    # A pre-packed GEMM weight over 4 MiB raises the threshold but is left to the pre-packing
    # terms (its original is freed while the session is made).
    gemm = [numpy_helper.from_array(np.zeros((1024, 1280), np.float32), "m")]  # 5 MiB
    mm = helper.make_node("MatMul", ["Y", "m"], ["Z"])
    add = helper.make_node("Add", ["Z", "w"], ["V"])
    w = numpy_helper.from_array(np.zeros(1280 * 1024 // 2, np.float32), "w")  # 2.5 MiB
    model = _model([mm, add], [_vi("Y", [1, 1024])], [_vi("V", None)], [*gemm, w])
    packed = estimate_memory(model, runtime=OrtCpuModel(arena_simulation=False)).inference
    assert packed.heap_kept_bytes == 1280 * 1024 * 2  # the 2.5 MiB Add weight only


def test_symbolic_inference_never_meets_a_stripped_constant(tmp_path: Path) -> None:
    # Older exporters store weights as Constant nodes; the skeleton strips their payloads. Given to
    # onnxruntime's symbolic inference as such, it tried to open the placeholder and failed, leaving
    # every shape onnx's inference missed unknown.
    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "Wc")
    nodes = [
        helper.make_node("Constant", [], ["C"], value=weight),
        helper.make_node("MatMul", ["X", "C"], ["H"]),
        helper.make_node("Mystery", ["H"], ["Y"], domain="com.example"),
    ]
    path = tmp_path / "constant_weights.onnx"
    onnx.save(_model(nodes, [_vi("X", ["n", 64])], [_vi("Y", None)]), str(path))
    shapes = infer_shapes(path)
    assert shapes.notes == ()
    unknown = {u.name: u for u in shapes.unknown}
    assert unknown["Y"].assumed_nbytes == 64 * 4  # H: [1, 64] floats, not the 16 KiB weight


def test_weight_only_node_before_a_subgraph_stays_a_weight_inside_it() -> None:
    # WT = Transpose(W) is computed from weights only (folded: a weight); the If branch reads it.
    # The branch must see it as a weight: its peak holds X and the branch's own output only.
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 64] X, bool c) => (float[1, 64] Y) <float[64, 64] W = {0.0}> {
          WT = Transpose(W)
          Y = If(c) <
            then_branch = t () => (float[1, 64] a) { a = MatMul(X, WT) },
            else_branch = e () => (float[1, 64] b) { b = Relu(X) }
          >
        }
        """
    )
    # The parser's one-value initializer is replaced by a real 64 x 64 weight.
    model.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(np.zeros((64, 64), np.float32), "W")
    )
    inf = estimate_memory(model, parse_bindings(["c="])).inference
    # X (256) + c (1) + Y (256) in the main graph, the branch output a (256): WT counts nowhere.
    assert inf.activations_peak_bytes == 256 + 1 + 256 + 256


def _bn(k: int, channels: int) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.ones((channels,), np.float32), f"{p}{k}")
        for p in ("s", "b", "m", "v")
    ]


def test_batchnorm_fusion_copies_are_counted_from_the_graph() -> None:
    # Conv W0 -> BatchNormalization (its only reader): fused, W0's 8 x 4 x 3 x 3 floats count.
    # Conv W1 -> BatchNormalization and Relu: its output has two readers, no fusion.
    # Conv W2 -> Relu: no BatchNormalization.
    from graph_analysis._weights import read_weights
    from graph_analysis.memory import bn_fused_conv_bytes

    def conv(name: str, x: str, w: str) -> onnx.NodeProto:
        return helper.make_node("Conv", [x, w], [name], pads=[1, 1, 1, 1])

    weights = [
        numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "W0"),
        numpy_helper.from_array(np.ones((8, 8, 3, 3), np.float32), "W1"),
        numpy_helper.from_array(np.ones((8, 8, 3, 3), np.float32), "W2"),
        *_bn(0, 8),
        *_bn(1, 8),
    ]
    nodes = [
        conv("C0", "X", "W0"),
        helper.make_node("BatchNormalization", ["C0", "s0", "b0", "m0", "v0"], ["N0"]),
        conv("C1", "N0", "W1"),
        helper.make_node("BatchNormalization", ["C1", "s1", "b1", "m1", "v1"], ["N1"]),
        helper.make_node("Relu", ["C1"], ["R1"]),
        helper.make_node("Add", ["N1", "R1"], ["S"]),
        conv("C2", "S", "W2"),
        helper.make_node("Relu", ["C2"], ["Y"]),
    ]
    model = _model(nodes, [_vi("X", [1, 4, 8, 8])], [_vi("Y", None)], weights)
    fused = 8 * 4 * 3 * 3 * 4
    assert bn_fused_conv_bytes(model, read_weights(model)) == fused
    runtime = OrtCpuModel(fusion_kept_factor=1.5, arena_simulation=False)
    inf = estimate_memory(model, runtime=runtime).inference
    assert inf.fusion_kept_bytes == int(1.5 * fused)
    none = estimate_memory(model, runtime=OrtCpuModel(arena_simulation=False)).inference
    assert none.fusion_kept_bytes == int(1.4 * fused)  # the default factor
    assert inf.inference_bytes - none.inference_bytes == int(1.5 * fused) - int(1.4 * fused)
    assert inf.heap_reused_bytes == 0  # no regions without the replay
    assert inf.session_creation_bytes == none.session_creation_bytes  # a kept copy, not a peak


def test_first_run_takes_small_arena_regions_from_the_kept_heap() -> None:
    # X [1, 1024] (the caller's) -> 40 Adds of a 4 KiB weight each -> Y. The replayed arena's
    # 1 MiB region holds two 4 KiB buffers in turn (each Add's output takes the chunk its
    # input's producer freed): 2 pages written, both within what glibc kept of the 40 weights'
    # load-time copies, so the first run does not grow for them.
    small = [numpy_helper.from_array(np.zeros((1024,), np.float32), f"s{k}") for k in range(40)]
    nodes = [helper.make_node("Add", ["X", "s0"], ["A1"])]
    for k in range(1, 40):
        out = "Y" if k == 39 else f"A{k + 1}"
        nodes.append(helper.make_node("Add", [f"A{k}", f"s{k}"], [out]))
    model = _model(nodes, [_vi("X", [1, 1024])], [_vi("Y", None)], small)
    inf = estimate_memory(model).inference
    assert inf.heap_kept_bytes == 40 * 4096
    assert inf.heap_reused_bytes == 2 * 4096
    no_heap = estimate_memory(model, runtime=OrtCpuModel(heap_kept_factor=0.0)).inference
    assert no_heap.heap_reused_bytes == 0  # nothing kept, nothing to reuse
    no_region = OrtCpuModel(heap_reuse_region_max_bytes=512 * 1024)
    mapped = estimate_memory(model, runtime=no_region).inference
    assert mapped.heap_reused_bytes == 0  # the 1 MiB region is over the limit
    assert mapped.inference_bytes - inf.inference_bytes == 2 * 4096


def test_largest_prepacked_original_over_the_limit_is_released() -> None:
    # Two MatMul weights, 64 KiB and 256 KiB: with the limit at 128 KiB the larger one's original
    # is unmapped after packing (no second copy), the smaller one's stays in the heap.
    small = numpy_helper.from_array(np.zeros((128, 128), np.float32), "Ws")
    large = numpy_helper.from_array(np.zeros((128, 512), np.float32), "Wl")
    nodes = [
        helper.make_node("MatMul", ["X", "Ws"], ["H"]),
        helper.make_node("MatMul", ["H", "Wl"], ["Y"]),
    ]
    model = _model(nodes, [_vi("X", [1, 128])], [_vi("Y", None)], [small, large])
    # Both over glibc's threshold here (heap_tensor_max_bytes), so pre-packed copies count.
    over = 32 * 1024
    keep = OrtCpuModel(
        prepack_release_min_bytes=1 << 30, heap_tensor_max_bytes=over, arena_simulation=False
    )
    release = OrtCpuModel(
        prepack_release_min_bytes=128 * 1024, heap_tensor_max_bytes=over, arena_simulation=False
    )
    kept = estimate_memory(model, runtime=keep).inference
    freed = estimate_memory(model, runtime=release).inference
    assert kept.prepackable_bytes == 64 * 1024 + 256 * 1024
    assert kept.inference_bytes - freed.inference_bytes == 256 * 1024
    assert kept.session_creation_bytes == freed.session_creation_bytes


def test_reorder_copies_of_the_largest_2d_conv_weight_stay_in_the_heap() -> None:
    # Two 2-D float convolutions (9 KiB and 18 KiB weights): the NCHWc reorder's three copies of
    # the larger one are freed together and stay in glibc's heap (benchmarks/trace_session.py).
    small = numpy_helper.from_array(np.zeros((16, 16, 3, 3), np.float32), "Ws")
    large = numpy_helper.from_array(np.zeros((32, 16, 3, 3), np.float32), "Wl")
    nodes = [
        helper.make_node("Conv", ["X", "Ws"], ["H"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["H", "Wl"], ["Y"], pads=[1, 1, 1, 1]),
    ]
    model = _model(nodes, [_vi("X", [1, 16, 8, 8])], [_vi("Y", None)], [small, large])
    plain = OrtCpuModel(reorder_copies_factor=0.0, arena_simulation=False)
    copies = OrtCpuModel(reorder_copies_factor=3.0, arena_simulation=False)
    without = estimate_memory(model, runtime=plain).inference
    with_copies = estimate_memory(model, runtime=copies).inference
    assert with_copies.heap_kept_bytes - without.heap_kept_bytes == 3 * 32 * 16 * 9 * 4
    assert with_copies.inference_bytes - without.inference_bytes == 3 * 32 * 16 * 9 * 4
    # Over heap_tensor_max_bytes a weight's copies are mapped, not kept: no term.
    mapped = OrtCpuModel(heap_tensor_max_bytes=4096, arena_simulation=False)
    assert estimate_memory(model, runtime=mapped).inference.heap_kept_bytes == 0
