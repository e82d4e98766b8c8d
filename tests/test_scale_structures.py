"""The compact structures the memory estimate uses on large graphs: the size table and integer-id
liveness, the per-graph shape table, the hashed last-reader index of segmented inference, and the
decoded-type cache of the value_info reader (each against what it replaced)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from graph_analysis import shapes
from graph_analysis._graph import NodeTable
from graph_analysis._liveness import PEAK_TENSORS, NodeLabels, TensorSizes, analyze_liveness
from graph_analysis.dtypes import DataType
from graph_analysis.shapes import TensorShape

F32 = TensorProto.FLOAT


def _no_weights(_path: str) -> frozenset[str]:
    return frozenset()


def test_size_table_looks_up_enclosing_graphs() -> None:
    sizes = TensorSizes()
    sizes.set("", "x", 64)
    sizes.set("/If_0.then_branch", "y", 8)
    sizes.set("", "x", 128)  # replaced, same id
    assert sizes("", "x") == 128
    assert sizes("/If_0.then_branch", "x") == 128  # an outer name seen from a subgraph
    assert sizes("/If_0.then_branch", "y") == 8
    assert sizes("", "y") == 0  # an inner name is not visible outside


def test_size_table_backed_by_a_node_table() -> None:
    """The main graph's edges by the table's ids, other names by name, unset edges as 0."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        "g",
        [helper.make_tensor_value_info("x", F32, [4])],
        [helper.make_tensor_value_info("b", F32, [4])],
    )
    table = NodeTable.of_proto(graph)
    sizes = TensorSizes({"": table})
    sizes.set("", "x", 16)
    sizes.set("", "a", 32)
    sizes.set("", "w", 8)  # not an edge of the graph
    assert table.ids == {"x": 0, "a": 1, "b": 2}  # the table itself is never changed
    assert [sizes("", n) for n in ("x", "a", "b", "w")] == [16, 32, 0, 8]
    assert list(sizes.of_table("", table)) == [16, 32, 0]
    assert list(sizes.of_table("", NodeTable.of_proto(graph))) == [16, 32, 0]  # by name


def test_liveness_sizes_a_tensor_the_table_lacks_through_its_scope() -> None:
    """An output with no entry in its own graph is sized as the table says from that graph (its
    enclosing scopes, else 0), and still counted live."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="r0"),
            helper.make_node("Relu", ["a"], ["b"], name="r1"),
            helper.make_node("Relu", ["b"], ["c"], name="r2"),
        ],
        "g",
        [helper.make_tensor_value_info("x", F32, [4])],
        [helper.make_tensor_value_info("c", F32, [4])],
    )
    sizes = TensorSizes()
    for name, nbytes in [("x", 16), ("a", 16), ("c", 16)]:  # "b" missing
        sizes.set("", name, nbytes)
    live = analyze_liveness(graph, sizes, stored=_no_weights)
    # x lives the whole run; at r1: x, a, b (0 B); at r2: x, b, c
    assert live.step_bytes == (32, 32, 32)
    assert live.sum_bytes == 48
    sizes.set("", "b", 100)
    live = analyze_liveness(graph, sizes, stored=_no_weights)
    assert live.step_bytes == (32, 132, 132)
    assert live.peak_step == 1
    assert [t.name for t in live.peak_tensors] == ["b", "a", "x"]
    assert live.peak_nodes == ("r1 (Relu)",)


def test_liveness_keeps_the_largest_tensors_at_the_peak_and_labels_nodes_lazily() -> None:
    width = PEAK_TENSORS + 5
    nodes = [helper.make_node("Relu", ["x"], [f"t{i}"]) for i in range(width)]
    nodes.append(helper.make_node("Sum", [f"t{i}" for i in range(width)], ["y"], name="sum"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F32, [1])],
        [helper.make_tensor_value_info("y", F32, [1])],
    )
    sizes = TensorSizes()
    sizes.set("", "x", 4)
    sizes.set("", "y", 4)
    for i in range(width):
        sizes.set("", f"t{i}", 100 + i)
    live = analyze_liveness(graph, sizes, stored=_no_weights)
    assert live.peak_step == width  # the Sum: every t_i and y live
    assert live.peak_bytes == 4 + sum(100 + i for i in range(width)) + 4
    assert [t.nbytes for t in live.peak_tensors] == [100 + i for i in reversed(range(5, width))]
    assert len(live.peak_tensors) == PEAK_TENSORS
    labels = live.step_labels
    assert isinstance(labels, NodeLabels)
    assert len(labels) == width + 1
    assert labels[0] == "Relu_0" and labels[-1] == "sum"
    assert labels == (*(f"Relu_{i}" for i in range(width)), "sum")
    assert labels[1:3] == ("Relu_1", "Relu_2")
    with pytest.raises(IndexError):
        labels[width + 1]


def test_shape_table_keeps_a_known_shape_over_an_unknown_one() -> None:
    found = shapes._Found()
    known = TensorShape("t", "", DataType.FLOAT, (2, 3))
    partial = TensorShape("t", "", DataType.FLOAT, ("n", 3))
    found.offer(partial)
    found.offer(known)
    found.offer(partial)
    assert found[("", "t")] is known
    assert ("", "t") in found and ("/sub", "t") not in found
    assert not found.__contains__("t")
    found[("/sub", "t")] = partial
    assert dict(found.items()) == {("", "t"): known, ("/sub", "t"): partial}
    assert len(found) == 2 and list(found.shapes()) == [known, partial]
    assert found.get(("/other", "t")) is None


def test_node_table_reads_count_subgraph_reads_and_segments_read_from_outside() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["out"])],
        "body",
        [],
        [helper.make_tensor_value_info("out", TensorProto.INT64, [1])],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("If", ["c"], ["o"], then_branch=body, else_branch=body),
        helper.make_node("Add", ["b", "", "w"], ["d"]),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    table = NodeTable.of_proto(graph)
    assert table.with_subgraphs == [3]
    assert table.op_types() == {"Shape", "Relu", "If", "Add"}
    reads = shapes._Reads(table, graph.node)
    assert reads.last_read("x") == 1
    assert reads.last_read("s") == 3  # read inside the If's branches
    assert reads.last_read("b") == 4
    assert reads.last_read("d") == -1  # made, never read
    assert reads.last_read("nowhere") == -1
    assert reads.producer("b") == 2 and reads.producer("x") == -1
    assert reads.read_from_outside(0, 5) == ["x", "c", "w"]
    assert reads.read_from_outside(2, 5) == ["a", "c", "w", "s"]  # s: from the If's branches
    assert reads.read_from_outside(1, 2) == ["x"]  # nothing stays marked between calls


def test_value_info_reader_decodes_each_type_once_and_keeps_names_apart() -> None:
    shapes._PLAIN_TYPES.clear()
    infos = [
        helper.make_tensor_value_info(name, F32, [2, 300])
        for name in ("first", "second", "a much longer third name")
    ]
    infos.append(helper.make_tensor_value_info("int", TensorProto.INT64, [2, 300]))
    for vi in infos:
        data = vi.SerializeToString()
        got = shapes._plain_value_info(data, 0, len(data))
        expected = shapes._shape_of(onnx.ValueInfoProto.FromString(data), "")
        assert got == (expected.name, expected.data_type, expected.dims)
    assert len(shapes._PLAIN_TYPES) == 2  # one FLOAT [2, 300], one INT64 [2, 300]
    a = shapes._plain_value_info(infos[0].SerializeToString(), 0, infos[0].ByteSize())
    b = shapes._plain_value_info(infos[1].SerializeToString(), 0, infos[1].ByteSize())
    assert a is not None and b is not None and a[2] is b[2]  # one dims tuple per distinct shape
