"""onnxruntime's arena replayed over the liveness order: hand-computed placements."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graph_analysis._arena import simulate_arena
from graph_analysis.memory import OrtCpuModel, estimate_memory

MiB = 1 << 20
KiB = 1 << 10


def test_regions_double_and_reuse_by_best_fit() -> None:
    # A (1 MiB) fills the first 1 MiB region; B needs a second region (2 MiB, split: 1 MiB
    # free after it); A is released; Y takes A's old chunk (the lowest address of two equal
    # fits). Resident: both 1 MiB pieces written.
    result = simulate_arena([(MiB, 0, 1), (MiB, 1, 2), (MiB, 2, 3)])
    assert result.regions == 2
    assert result.reserved_bytes == 3 * MiB
    assert result.resident_bytes == 2 * MiB
    assert result.peak_in_use_bytes == 2 * MiB


def test_sizes_that_do_not_fit_the_holes_grow_the_arena() -> None:
    # A 1 MiB (region 0, 1 MiB); B 1.5 MiB: region 1 of 2 MiB, not split (2 < 2 x 1.5), 1.5 MiB
    # written; A released; C 1.25 MiB does not fit A's 1 MiB hole: region 2 of 4 MiB. Written:
    # 1 + 1.5 + 1.25 MiB, against a liveness peak of 2.75 MiB (B and C).
    result = simulate_arena([(MiB, 0, 1), (3 * MiB // 2, 1, 2), (5 * MiB // 4, 2, 3)])
    assert result.regions == 3
    assert result.reserved_bytes == 7 * MiB
    assert result.resident_bytes == 3 * MiB + 3 * MiB // 4
    assert result.peak_in_use_bytes == 2 * MiB + 5 * MiB // 4  # B's whole chunk beside C


def test_freed_neighbours_coalesce() -> None:
    # a and b split the first region in two halves and die at step 0: merged back, c (1 MiB)
    # fits without a second region.
    result = simulate_arena([(512 * KiB, 0, 0), (512 * KiB, 0, 0), (MiB, 1, 2)])
    assert result.regions == 1
    assert result.resident_bytes == MiB


def test_requests_round_to_256_bytes_and_pages_count_once() -> None:
    # 10 buffers of 100 B, each dying at once: every one reuses the same 256 B chunk's page.
    result = simulate_arena([(100, k, k) for k in range(10)])
    assert result.regions == 1
    assert result.resident_bytes == 4096
    assert result.peak_in_use_bytes == 256


def test_scratch_is_held_only_while_its_step_runs() -> None:
    # Step 0: A (512 KiB) then a 512 KiB workspace: both fit the 1 MiB region; at step 1 B reuses
    # the workspace's half.
    result = simulate_arena([(512 * KiB, 0, 2), (512 * KiB, 1, 2)], [512 * KiB, 0])
    assert result.regions == 1
    assert result.resident_bytes == MiB


def test_estimate_counts_the_arena_beyond_the_liveness_peak() -> None:
    # X (1 MiB, held by the caller) -> Relu A (1 MiB) -> Pad to 1.5 MiB -> Pad to 1.25 MiB: the
    # arena of the second test above. Liveness peak: X + B + C = 3.75 MiB; the arena writes
    # 3.75 MiB beside the caller's X: 1 MiB beyond the peak.
    def pads(name: str, rows: int) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array([0, 0, rows, 0], np.int64), name)

    nodes = [
        helper.make_node("Relu", ["X"], ["A"]),
        helper.make_node("Pad", ["A", "p1"], ["B"]),
        helper.make_node("Pad", ["B", "p2"], ["C"]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [256, 1024])
    c = helper.make_tensor_value_info("C", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [c], [pads("p1", 128), pads("p2", -64)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inf = estimate_memory(model).inference
    assert inf.activations_peak_bytes == MiB + 3 * MiB // 2 + 5 * MiB // 4
    assert inf.arena_fragmentation_bytes == MiB
    off = estimate_memory(model, runtime=OrtCpuModel(arena_simulation=False)).inference
    # The factor term instead: 0.5 x min(L, A - L) = 0.5 x 1.5 MiB.
    assert off.arena_fragmentation_bytes == 3 * MiB // 4
    # The replay's 1 and 2 MiB regions may take what glibc's heap kept of the 64 bytes of pads
    # (at most those 64 bytes); the factor term knows no regions.
    assert inf.heap_reused_bytes == 64 and off.heap_reused_bytes == 0
    assert inf.peak_bytes - off.peak_bytes == MiB // 4 - 64


def test_regions_report_their_size_and_written_pages() -> None:
    # 1 MiB + 1 byte: a 2 MiB region (the first, doubled to fit), 257 pages written; then a
    # 3 MiB buffer that fits nowhere: a new region of 4 MiB, 768 pages written.
    result = simulate_arena([(MiB + 1, 0, 0), (3 * MiB, 1, 1)])
    assert result.region_bytes == (2 * MiB, 4 * MiB)
    assert result.region_resident_bytes == (257 * 4096, 768 * 4096)
    assert result.resident_bytes == sum(result.region_resident_bytes)


def test_planner_reuse_holds_a_buffer_for_a_later_tensor_of_the_same_shape() -> None:
    from graph_analysis._arena import planned_buffers

    mib = 1 << 20
    # A (steps 0-1) dies; B (2-3, another shape) cannot take it; C (5-6, A's shape) does, so
    # A's buffer is held from 0 to 6. Inputs (first step -1) and unknown shapes are never reused.
    spans = [(4 * mib, -1, 9), (mib, 0, 1), (mib, 2, 3), (mib, 5, 6), (mib, 7, 8)]
    keys = ["in", "a", "b", "a", None]
    assert planned_buffers(spans, keys) == [
        (4 * mib, -1, 9),
        (mib, 0, 6),
        (mib, 2, 3),
        (mib, 7, 8),
    ]
    # The most recently freed of two candidates is taken (the front of the free list).
    spans = [(mib, 0, 1), (mib, 0, 3), (mib, 5, 6)]
    assert planned_buffers(spans, ["a", "a", "a"]) == [(mib, 0, 1), (mib, 0, 6)]


def test_planner_keys_are_the_shapes_onnxruntime_recorded() -> None:
    from graph_analysis.memory import planner_keys

    nodes = [
        helper.make_node("Relu", ["X"], ["A"]),
        helper.make_node("Relu", ["A"], ["B"]),
        helper.make_node("Relu", ["B"], ["C"]),
        helper.make_node("Relu", ["C"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        value_info=[
            helper.make_tensor_value_info("A", TensorProto.FLOAT, ["n", 8]),
            helper.make_tensor_value_info("C", TensorProto.FLOAT, [None, 8]),  # unnamed: unknown
        ],
    )
    spans = [(32, -1, 4), (32, 0, 1), (32, 1, 2), (32, 2, 3), (32, 3, 4)]
    assert planner_keys(graph, spans, ["X", "A", "B", "C", "Y"]) == [
        None,  # a graph input: the caller's
        (32, (TensorProto.FLOAT, ("n", 8))),
        None,  # no value_info: onnxruntime planned without a shape
        None,  # a dimension without a value or a name
        None,
    ]
