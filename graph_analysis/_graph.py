"""A graph's nodes as integer tables (private): extracted once, from the loader's record or from a
protobuf graph, and shared by shape inference's segments, the liveness sweep and the op census.

Each of those used to walk the protobuf nodes on its own: every access to a node's fields makes
Python objects, about 4 s per walk of a 10^6-node graph. Here every edge name gets an integer id
(interned names, shared with the record), and a node's inputs and outputs are ranges of flat
integer arrays; only the nodes that hold subgraphs are visited as protobuf again.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

    from graph_analysis.loading import GraphInfo

__all__ = ["NodeTable"]

#: The id of an empty (omitted optional) input or output.
NO_NAME = -1


class NodeTable:
    """The nodes of one graph, in order, as integer tables.

    Attributes:
        names: the edge name of each id (inputs and outputs of nodes, and graph inputs, outputs and
            initializers, in order of first appearance).
        ids: the id of each name.
        op_keys: ``(domain, op_type)`` of each op index.
        op: the op index of each node.
        in_ptr, in_ids: node ``i``'s inputs are ``in_ids[in_ptr[i]:in_ptr[i + 1]]`` (``-1`` for
            an empty name); likewise ``out_ptr``, ``out_ids``.
        with_subgraphs: the indices of the nodes with graph attributes, ascending.
    """

    __slots__ = (
        "_ids",
        "_names",
        "_op_of",
        "_packed",
        "in_ids",
        "in_ptr",
        "op",
        "op_keys",
        "out_ids",
        "out_ptr",
        "with_subgraphs",
    )

    def __init__(self) -> None:
        self._names: list[str] | None = []
        self._ids: dict[str, int] | None = {}
        self._packed: tuple[bytes, array[int]] | None = None
        self.op_keys: list[tuple[str, str]] = []
        self._op_of: dict[tuple[str, str], int] = {}
        self.op = array("i")
        self.in_ptr = array("q", [0])
        self.in_ids = array("q")
        self.out_ptr = array("q", [0])
        self.out_ids = array("q")
        self.with_subgraphs: list[int] = []

    @classmethod
    def of_record(cls, graph: GraphInfo) -> NodeTable:
        """The table of a graph of the loader's record.

        Its names are kept packed in one ``bytes`` until first read: the record's own name
        strings are scattered over the record's memory, and holding them would keep that memory
        from being returned when the record is dropped (measured: 360 MB more at 10^6 nodes).
        """
        table = cls()
        table._add_names(vi.name for vi in graph.inputs)
        for node in graph.nodes:
            table._add_node(
                node.domain, node.op_type, node.inputs, node.outputs, bool(node.subgraphs)
            )
        table._add_names(vi.name for vi in graph.outputs)
        table._pack()
        return table

    def _pack(self) -> None:
        names = self._names or []
        ends = array("q", [0])
        parts = []
        for name in names:
            data = name.encode("utf-8")
            parts.append(data)
            ends.append(ends[-1] + len(data))
        self._packed = (b"".join(parts), ends)
        self._names = self._ids = None

    def _unpack(self) -> None:
        if self._packed is not None:
            blob, ends = self._packed
            self._names = [
                blob[ends[i] : ends[i + 1]].decode("utf-8") for i in range(len(ends) - 1)
            ]
            self._ids = {name: t for t, name in enumerate(self._names)}
            self._packed = None

    @property
    def names(self) -> list[str]:
        """The edge name of each id."""
        if self._names is None:
            self._unpack()
        assert self._names is not None
        return self._names

    @property
    def ids(self) -> dict[str, int]:
        """The id of each edge name."""
        if self._ids is None:
            self._unpack()
        assert self._ids is not None
        return self._ids

    @classmethod
    def of_proto(cls, graph: onnx.GraphProto) -> NodeTable:
        """The table of a protobuf graph."""
        table = cls()
        table._add_names(vi.name for vi in graph.input)
        for node in graph.node:
            table._add_node(
                node.domain,
                node.op_type,
                node.input,
                node.output,
                bool(node.attribute) and has_subgraphs(node),
            )
        table._add_names(vi.name for vi in graph.output)
        return table

    def _id(self, name: str) -> int:
        if not name:
            return NO_NAME
        ids, names = self.ids, self.names
        t = ids.get(name)
        if t is None:
            t = ids[name] = len(names)
            names.append(name)
        return t

    def _add_names(self, names: Iterable[str]) -> None:
        for name in names:
            self._id(name)

    def _add_node(
        self,
        domain: str,
        op_type: str,
        inputs: Iterable[str],
        outputs: Iterable[str],
        subgraphs: bool,
    ) -> None:
        key = (domain, op_type)
        op = self._op_of.get(key)
        if op is None:
            op = self._op_of[key] = len(self.op_keys)
            self.op_keys.append(key)
        if subgraphs:
            self.with_subgraphs.append(len(self.op))
        self.op.append(op)
        self.in_ids.extend(self._id(name) for name in inputs)
        self.in_ptr.append(len(self.in_ids))
        self.out_ids.extend(self._id(name) for name in outputs)
        self.out_ptr.append(len(self.out_ids))

    def __len__(self) -> int:
        return len(self.op)

    def op_types(self) -> frozenset[str]:
        """The op types of the nodes (any domain)."""
        return frozenset(op_type for _domain, op_type in self.op_keys)

    def readers(self) -> np.ndarray:
        """The node index of each entry of ``in_ids`` (an int64 array)."""
        return _repeat_index(self.in_ptr)

    def producers(self) -> np.ndarray:
        """The node index of each entry of ``out_ids`` (an int64 array)."""
        return _repeat_index(self.out_ptr)

    def in_array(self) -> np.ndarray:
        """``in_ids`` as an int64 array (a view)."""
        return _view(self.in_ids)

    def out_array(self) -> np.ndarray:
        """``out_ids`` as an int64 array (a view)."""
        return _view(self.out_ids)


def has_subgraphs(node: onnx.NodeProto) -> bool:
    """True when ``node`` has a graph attribute (``GRAPH`` or ``GRAPHS``)."""
    import onnx

    kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(attr.type in kinds for attr in node.attribute)


def _repeat_index(ptr: array[int]) -> np.ndarray:
    bounds = np.frombuffer(ptr, dtype=np.int64)
    counts: np.ndarray = bounds[1:] - bounds[:-1]
    return np.repeat(np.arange(len(bounds) - 1, dtype=np.int64), counts)


def _view(values: array[int]) -> np.ndarray:
    return np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(0, dtype=np.int64)
