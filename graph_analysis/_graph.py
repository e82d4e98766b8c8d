"""A graph's nodes as integer tables (private): extracted once, from the loader's record or from a
protobuf graph, and shared by shape inference's segments, the liveness sweep and the op census.

Each of those used to walk the protobuf nodes on its own: every access to a node's fields makes
Python objects, about 4 s per walk of a 10^6-node graph. Here every edge name gets an integer id,
and a node's inputs and outputs are ranges of flat integer arrays; only the nodes that hold
subgraphs are visited as protobuf again.

Also here: the skeleton of a large graph whose nodes stay serialized until read (:class:`LazyNodes`,
:func:`lazy_skeleton`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from graph_analysis._wire import WireError, iter_fields, len_field, len_fields

if TYPE_CHECKING:
    import onnx

    from graph_analysis.loading import GraphInfo

__all__ = ["LazyModel", "LazyNodes", "NodeTable", "lazy_skeleton"]

#: The id of an empty (omitted optional) input or output.
NO_NAME = -1


class NodeTable:
    """The nodes of one graph, in order, as integer tables.

    Attributes:
        names: the edge name of each id (graph inputs, then the nodes' inputs and outputs, then
            graph outputs, in order of first appearance).
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
        self._names = self._ids = None
        blob = bytearray()
        ends = array("q", [0])
        for name in names:
            blob += name.encode("utf-8")
            ends.append(len(blob))
        self._packed = (bytes(blob), ends)

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
                has_subgraphs(node),
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
    return bool(node.attribute) and any(attr.type in kinds for attr in node.attribute)


def _repeat_index(ptr: array[int]) -> np.ndarray:
    bounds = np.frombuffer(ptr, dtype=np.int64)
    counts: np.ndarray = bounds[1:] - bounds[:-1]
    return np.repeat(np.arange(len(bounds) - 1, dtype=np.int64), counts)


def _view(values: array[int]) -> np.ndarray:
    return np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# The skeleton of a large graph, its nodes parsed when read


class LazyNodes:
    """The nodes of a graph kept as their serialized bytes, each parsed into an
    ``onnx.NodeProto`` when read (a fresh object each time).

    Parsed all at once, the nodes of a 10^6-node skeleton took 400 MB of protobuf objects; the
    bytes take about a sixth of that, and the estimates read only the nodes with subgraphs, the
    one at the peak and the labels they print.
    """

    __slots__ = ("_data", "_ends", "_path", "_starts")

    def __init__(
        self, data: bytes | bytearray, starts: array[int], ends: array[int], path: Any
    ) -> None:
        self._data, self._starts, self._ends, self._path = data, starts, ends, path

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> onnx.NodeProto: ...
    @overload
    def __getitem__(self, index: slice) -> list[onnx.NodeProto]: ...
    def __getitem__(self, index: int | slice) -> onnx.NodeProto | list[onnx.NodeProto]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        import onnx
        from google.protobuf.message import DecodeError

        from graph_analysis.errors import ModelFormatError

        try:
            node: onnx.NodeProto = onnx.NodeProto.FromString(
                self._data[self._starts[index] : self._ends[index]]
            )
        except DecodeError as e:  # read_model walked this node: our bug or a protobuf limit
            raise ModelFormatError(self._path, f"protobuf refused node {index} ({e})") from e
        return node

    def __iter__(self) -> Iterator[onnx.NodeProto]:
        return (self[i] for i in range(len(self)))

    def serialized(self, start: int, end: int) -> bytes:
        """Nodes ``[start, end)`` as ``GraphProto.node`` fields (key and length included)."""
        data, starts, ends = self._data, self._starts, self._ends
        parts: list[bytes | bytearray] = []
        for i in range(start, end):
            a, b = starts[i], ends[i]
            parts.append(len_field(1, data[a:b]))  # GraphProto.node
        return b"".join(parts)


#: ``ModelProto`` fields a :class:`LazyModel` hands out (from its header); anything else raises.
_MODEL_FIELDS = frozenset(
    {
        "ir_version",
        "opset_import",
        "functions",
        "producer_name",
        "producer_version",
        "domain",
        "model_version",
        "doc_string",
        "metadata_props",
        "training_info",
    }
)
#: ``GraphProto`` fields a :class:`LazyGraph` hands out (from its header); ``node`` is lazy.
_GRAPH_FIELDS = frozenset(
    {
        "name",
        "doc_string",
        "input",
        "output",
        "value_info",
        "initializer",
        "sparse_initializer",
        "quantization_annotation",
        "metadata_props",
    }
)


class _HeaderView:
    """Hands out the fields in ``fields`` of a header proto (the message without the main
    graph's nodes) and refuses every other attribute: anything that would need the whole message
    (serializing, copying) is refused, never answered without the nodes."""

    fields: frozenset[str] = frozenset()

    def __init__(self, header: Any) -> None:
        self._header = header

    def __getattr__(self, name: str) -> Any:
        if name in self.fields:
            return getattr(self._header, name)
        raise AttributeError(
            f"a lazy skeleton has no {name!r} here (its main graph's nodes are not parsed)"
        )


class LazyGraph(_HeaderView):
    """A ``GraphProto`` look-alike: its fields from a header proto, its ``node`` a
    :class:`LazyNodes`."""

    fields = _GRAPH_FIELDS

    def __init__(self, header: onnx.GraphProto, nodes: LazyNodes) -> None:
        super().__init__(header)
        self.node = nodes


class LazyModel(_HeaderView):
    """A ``ModelProto`` look-alike for a large graph's skeleton (:func:`lazy_skeleton`)."""

    fields = _MODEL_FIELDS

    def __init__(self, header: onnx.ModelProto, graph: LazyGraph) -> None:
        super().__init__(header)
        self.graph = graph


def lazy_skeleton(data: bytes | bytearray, path: Any) -> LazyModel:
    """The skeleton bytes ``data`` (:func:`graph_analysis.loading.skeleton_bytes`) with everything
    but the main graph's nodes parsed, those kept as bytes (:class:`LazyNodes`).

    Raises:
        ModelFormatError: protobuf refuses the structure (the loader accepted it: our bug).
    """
    from graph_analysis.errors import ModelFormatError
    from graph_analysis.loading import parse_skeleton

    model_parts: list[bytes | bytearray] = []
    graph_parts: list[bytes | bytearray] = []
    starts, ends = array("q"), array("q")
    try:
        for fno, _wt, fs, a, b in iter_fields(data, 0, len(data)):
            if fno != 7:  # ModelProto.graph
                model_parts.append(data[fs:b])
                continue
            for gno, ga, gb in len_fields(data, a, b):
                if gno == 1:  # GraphProto.node
                    starts.append(ga)
                    ends.append(gb)
                else:
                    graph_parts.append(len_field(gno, data[ga:gb]))
    except WireError as e:  # skeleton_bytes wrote it: our bug
        raise ModelFormatError(path, f"not a valid ONNX skeleton ({e})") from e
    graph_bytes = b"".join(graph_parts)
    header_bytes = b"".join(model_parts) + len_field(7, graph_bytes)  # ModelProto.graph
    header = parse_skeleton(header_bytes, path)
    del graph_parts, model_parts
    return LazyModel(header, LazyGraph(header.graph, LazyNodes(data, starts, ends, path)))
