"""Dim binding and shape inference: every tensor's concrete shape for a given set of input bindings.

Works on the weight-free skeleton of a model (``graph_analysis.loading.load_skeleton``: names, dims
and data types kept, payloads of large tensors replaced by placeholders), so inferring shapes never
loads weights. The steps, in order:

1. **Bind** the graph inputs' symbolic or unknown dims from
   :class:`~graph_analysis.bindings.Bindings` (``--input-shape``, ``--dim``, ``--batch``). A dim
   counts as unknown when it has a ``dim_param`` (``batch``, ``p2o.DynamicDimension.0``, ``?``,
   ...), a ``dim_value`` <= 0 (``-1``, ``0``: some exporters write these for "dynamic") or
   neither. Dims nobody bound take ``default_dim`` (reported).
2. **Infer** with ``onnx.shape_inference`` (with data propagation, so Shape->Gather->Reshape chains
   resolve), including If/Loop/Scan subgraphs.
3. Where that leaves tensors without a concrete shape, run onnxruntime's symbolic shape inference
   (``onnxruntime.tools.symbolic_shape_infer``), which knows more ops (contrib ops, data-dependent
   ranks) and merges what it finds; placeholders become typed graph inputs for it, and its
   failures become :attr:`InferredShapes.notes`.
4. Whatever is still unknown is reported in :attr:`InferredShapes.unknown` with how it was treated:
   its size is assumed equal to the largest known activation input of the node producing it
   (exact for elementwise ops and activations, an approximation otherwise; never a weight's size).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import tempfile
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from graph_analysis import _wire
from graph_analysis._gc import gc_paused
from graph_analysis._graph import LazyNodes, NodeTable, has_subgraphs
from graph_analysis._weights import (
    ModelWeights,
    enclosing_scopes,
    read_weights,
    weights_and_skeleton,
)
from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType, nbytes
from graph_analysis.errors import ShapeBindingError
from graph_analysis.loading import load_skeleton

__all__ = [
    "ANONYMOUS_DIM_PARAMS",
    "MAIN_GRAPH",
    "NCHWC_DOMAIN",
    "InferredShapes",
    "TensorShape",
    "UnknownTensor",
    "bind_inputs",
    "infer_shapes",
    "iter_graphs",
    "load_model_skeleton",
]

#: The graph path of the main graph; subgraphs are ``<parent>/<node>.<attribute>``.
MAIN_GRAPH = ""


@dataclass(frozen=True, slots=True)
class TensorShape:
    """One tensor's data type and shape after binding and inference.

    Attributes:
        name: the tensor name.
        graph: the graph path (:data:`MAIN_GRAPH` or ``<parent>/<node>.<attribute>``).
        data_type: ONNX element type, None when inference could not tell.
        dims: one entry per axis: an int when concrete, a str (symbol) when not; None when even the
            rank is unknown.
    """

    name: str
    graph: str
    data_type: DataType | None
    dims: tuple[int | str, ...] | None

    @property
    def is_known(self) -> bool:
        """True when the data type and every dim are concrete."""
        return (
            self.data_type is not None
            and self.dims is not None
            and all(isinstance(d, int) and d >= 0 for d in self.dims)
        )

    @property
    def num_elements(self) -> int | None:
        """Element count, None unless every dim is concrete."""
        if self.dims is None:
            return None
        count = 1
        for d in self.dims:
            if not isinstance(d, int) or d < 0:
                return None
            count *= d
        return count

    @property
    def nbytes(self) -> int | None:
        """Bytes the tensor's elements take (dims x data type), None unless fully known."""
        count = self.num_elements
        if count is None or self.data_type is None:
            return None
        return nbytes(self.data_type, count)


@dataclass(frozen=True)
class UnknownTensor:
    """A tensor whose shape inference could not make concrete, and what was assumed instead.

    Attributes:
        name: the tensor name.
        graph: its graph path.
        producer: op type of the node producing it (``""`` for a graph input).
        partial: what inference did find (None when nothing).
        assumed_nbytes: the size used in memory figures.
        treatment: a sentence saying how ``assumed_nbytes`` was chosen.
    """

    name: str
    graph: str
    producer: str
    partial: TensorShape | None
    assumed_nbytes: int
    treatment: str


@dataclass(frozen=True)
class InferredShapes:
    """The result of :func:`infer_shapes`.

    Attributes:
        inputs: the graph inputs with the shapes they were bound to.
        dim_values: every symbolic dim name bound on the inputs and the value it got.
        defaulted: descriptions of dims nobody bound that took the default value.
        tensors: every tensor of every graph (inputs, initializers, node outputs) with its shape.
        unknown: the tensors that stayed without a concrete shape and how they were treated.
        engines: the inference engines that contributed (``onnx``, ``onnxruntime-symbolic``).
        notes: what went wrong on the way (an engine that failed), one line each.
    """

    inputs: tuple[TensorShape, ...]
    dim_values: Mapping[str, int]
    defaulted: tuple[str, ...]
    tensors: tuple[TensorShape, ...]
    unknown: tuple[UnknownTensor, ...]
    engines: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def lookup(self) -> dict[tuple[str, str], TensorShape]:
        """A ``(graph, name) -> TensorShape`` dict."""
        return {(t.graph, t.name): t for t in self.tensors}


# ---------------------------------------------------------------------------------------------
# Loading the skeleton


def load_model_skeleton(path: str | Path) -> onnx.ModelProto:
    """The model without its large tensor payloads (names, dims and data types kept).

    A thin alias of :func:`graph_analysis.loading.load_skeleton`, the one reader of ONNX files.

    Raises:
        ModelFormatError, ExternalDataError, CorruptTensorError: as ``loading.read_model``.
    """
    return load_skeleton(path)


def _attr_graphs(attr: onnx.AttributeProto) -> Iterator[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        yield attr.g
    elif attr.type == onnx.AttributeProto.GRAPHS:
        yield from attr.graphs


def iter_graphs(
    graph: onnx.GraphProto, path: str = MAIN_GRAPH, with_subgraphs: Iterable[int] | None = None
) -> Iterator[tuple[str, onnx.GraphProto]]:
    """Yield ``(graph_path, graph)`` for the graph and every nested subgraph, parents first.

    ``with_subgraphs``: the indices of ``graph``'s nodes that hold subgraphs, when known (its
    node table's): only those nodes are visited.
    """
    yield path, graph
    indices = range(len(graph.node)) if with_subgraphs is None else with_subgraphs
    for index in indices:
        node = graph.node[index]
        for attr in node.attribute:
            for k, sub in enumerate(_attr_graphs(attr)):
                suffix = f"[{k}]" if attr.type == onnx.AttributeProto.GRAPHS else ""
                yield from iter_graphs(sub, f"{path}/{node_label(node, index)}.{attr.name}{suffix}")


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A node's name, or ``<op_type>_<index>`` for unnamed nodes."""
    return node.name or f"{node.op_type}_{index}"


# ---------------------------------------------------------------------------------------------
# Binding


#: ``dim_param`` spellings exporters write for "unknown" (PaddlePaddle's ``?``, an empty string,
#: ``-1``...): each occurrence is a dim of its own, never tied to another one of the same spelling.
ANONYMOUS_DIM_PARAMS = frozenset({"", "?", "-1", "None", "none", "null", "unknown"})


def _symbol(dim: onnx.TensorShapeProto.Dimension) -> str | None:
    """The symbol that ties this dim to others of the same name (``batch``, ``unk__12``), or None
    for a fixed dim or an anonymous placeholder."""
    if dim.HasField("dim_param") and dim.dim_param.strip() not in ANONYMOUS_DIM_PARAMS:
        return dim.dim_param
    return None


def _is_unknown_dim(dim: onnx.TensorShapeProto.Dimension) -> bool:
    return not dim.HasField("dim_value") or dim.dim_value <= 0


def _dim_label(dim: onnx.TensorShapeProto.Dimension) -> str:
    if dim.HasField("dim_param"):
        return dim.dim_param or "''"
    if dim.HasField("dim_value"):
        return str(dim.dim_value)
    return "?"


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    # Before IR v4 initializers were also listed as inputs; those are not fed by the user.
    initializers = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def bind_inputs(
    model: onnx.ModelProto,
    bindings: Bindings,
    *,
    default_dim: int | None = 1,
    path: str | Path | None = None,
) -> tuple[onnx.ModelProto, dict[str, int], tuple[str, ...]]:
    """Return a copy of ``model`` whose graph inputs have concrete dims.

    Precedence per dim: an explicit ``--input-shape`` for that input, then ``--dim NAME=V`` for the
    dim's name (``dim_param``, or the literal ``-1``/``0``/``?``), then ``--batch`` for a leading
    unknown dim, then ``default_dim``. A symbol (``batch``, ``unk__12``) takes one value wherever
    it occurs; an anonymous placeholder (:data:`ANONYMOUS_DIM_PARAMS`: ``?``, empty, ``-1``...) is a
    dim of its own at each occurrence (``--dim ?=N`` still sets every one of them).

    Args:
        model: the (skeleton) model; not modified.
        bindings: what the user bound.
        default_dim: value for dims nobody bound; None makes an unbound dim an error.
        path: the model's path, for error messages.

    Returns:
        ``(bound_model, dim_values, defaulted)``: the copy, each symbolic dim name and the value it
        got, and a description of every dim that took the default.

    Raises:
        ShapeBindingError: a shape for an input the model does not have, a rank that does not match,
            a value contradicting a fixed dim, a ``--dim`` name no input uses, an unbound dim when
            ``default_dim`` is None.
    """
    bound = copy.deepcopy(model)
    dim_values, defaulted = _bind(
        bound.graph, _real_inputs(model.graph), bindings, default_dim, path
    )
    return bound, dim_values, defaulted


def _bind(
    graph: onnx.GraphProto,
    pristine: list[onnx.ValueInfoProto],
    bindings: Bindings,
    default_dim: int | None,
    path: str | Path | None,
) -> tuple[dict[str, int], tuple[str, ...]]:
    """Bind ``graph``'s real inputs in place (:func:`bind_inputs`); ``pristine`` are the same inputs
    as the model declares them (for the messages), never modified."""
    inputs = _real_inputs(graph)
    names = [i.name for i in inputs]
    explicit: dict[str, tuple[int, ...]] = {}
    for spec in bindings.shapes:
        if spec.name is None:
            if len(inputs) != 1:
                raise ShapeBindingError(
                    path, f"a bare --input-shape needs a single-input model; inputs are {names}"
                )
            explicit[inputs[0].name] = spec.dims
        elif spec.name not in names:
            raise ShapeBindingError(
                path, f"--input-shape {spec.name}: no such input (inputs: {names})"
            )
        else:
            explicit[spec.name] = spec.dims

    used_dim_names: set[str] = set()
    batch_used = False
    dim_values: dict[str, int] = {}
    defaulted: list[str] = []
    for value_info in inputs:
        tensor_type = value_info.type.tensor_type
        if not value_info.type.HasField("tensor_type"):
            continue  # sequences/maps/optionals: nothing to bind
        if not tensor_type.HasField("shape"):
            if value_info.name in explicit:
                tensor_type.shape.SetInParent()
                for _ in explicit[value_info.name]:
                    tensor_type.shape.dim.add()
            else:
                raise ShapeBindingError(
                    path,
                    f"input {value_info.name!r} has no known rank; give --input-shape "
                    f"{value_info.name}=d0,d1,...",
                )
        dims = tensor_type.shape.dim
        given = explicit.get(value_info.name)
        if given is not None and len(given) != len(dims):
            model_dims = ",".join(_dim_label(d) for d in dims)
            raise ShapeBindingError(
                path,
                f"--input-shape {value_info.name}: rank {len(given)} given, the model's input has "
                f"rank {len(dims)} ({model_dims})",
            )
        for axis, dim in enumerate(dims):
            label = _dim_label(dim)
            name_key = dim.dim_param if dim.HasField("dim_param") else label
            symbol = _symbol(dim)
            if given is not None:
                value = given[axis]
                if not _is_unknown_dim(dim) and dim.dim_value != value:
                    raise ShapeBindingError(
                        path,
                        f"--input-shape {value_info.name}: dim {axis} is fixed at {dim.dim_value} "
                        f"in the model, {value} given",
                    )
            elif not _is_unknown_dim(dim):
                continue
            elif name_key in bindings.dims:
                value = bindings.dims[name_key]
                used_dim_names.add(name_key)
            elif axis == 0 and bindings.batch is not None:
                value = bindings.batch
                batch_used = True
            elif symbol is not None and symbol in dim_values:
                value = dim_values[symbol]  # the same symbol bound on an earlier input
            elif default_dim is None:
                raise ShapeBindingError(
                    path,
                    f"input {value_info.name!r} dim {axis} ({label}) is not bound; use --dim "
                    f"{label}=N, --batch N or --input-shape",
                )
            else:
                value = default_dim
                defaulted.append(f"{value_info.name}[{axis}] ({label}) = {default_dim}")
            if symbol is not None:
                previous = dim_values.setdefault(symbol, value)
                if previous != value:
                    raise ShapeBindingError(
                        path,
                        f"dim {symbol!r} is bound to both {previous} and {value}",
                    )
            elif dim.HasField("dim_param") and name_key in bindings.dims:
                dim_values.setdefault(name_key, value)  # `--dim ?=N`: reported, never a tie
            dim.Clear()
            dim.dim_value = value
    if bindings.batch is not None and not batch_used:
        fixed = {
            i.type.tensor_type.shape.dim[0].dim_value
            for i in pristine
            if i.name not in explicit and len(i.type.tensor_type.shape.dim) > 0
        }
        if fixed - {bindings.batch}:
            raise ShapeBindingError(
                path,
                f"--batch {bindings.batch}: no input has an unknown leading dim "
                f"(fixed at {sorted(fixed)}); re-export with a dynamic batch dim",
            )
    for name in bindings.dims:
        if name not in used_dim_names and name not in dim_values:
            available = sorted(
                {
                    _dim_label(d) if not d.HasField("dim_param") else d.dim_param
                    for i in pristine
                    for d in i.type.tensor_type.shape.dim
                    if _is_unknown_dim(d)
                }
            )
            raise ShapeBindingError(
                path,
                f"--dim {name}: no input has a dim named {name!r} (symbolic dims: {available})",
            )
    return dim_values, tuple(defaulted)


# ---------------------------------------------------------------------------------------------
# Inference


class _Found(MutableMapping[tuple[str, str], TensorShape]):
    """``(graph, name) -> TensorShape``, kept as one dict of names per graph: no key tuple per
    tensor (64 MB of them at 10^6 tensors), the graph's name strings shared with the shapes."""

    def __init__(self) -> None:
        self._graphs: dict[str, dict[str, TensorShape]] = {}

    def __getitem__(self, key: tuple[str, str]) -> TensorShape:
        return self._graphs[key[0]][key[1]]

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        names = self._graphs.get(key[0])
        return default if names is None else names.get(key[1], default)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        names = self._graphs.get(key[0])
        return names is not None and key[1] in names

    def __setitem__(self, key: tuple[str, str], shape: TensorShape) -> None:
        self._graphs.setdefault(key[0], {})[key[1]] = shape

    def __delitem__(self, key: tuple[str, str]) -> None:
        del self._graphs[key[0]][key[1]]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((graph, name) for graph, names in self._graphs.items() for name in names)

    def __len__(self) -> int:
        return sum(len(names) for names in self._graphs.values())

    def names_in(self, graph: str) -> Mapping[str, TensorShape]:
        """The shapes of ``graph``'s tensors, by name."""
        return self._graphs.get(graph, {})

    def shapes(self) -> Iterator[TensorShape]:
        """Every shape, graph by graph."""
        return (shape for names in self._graphs.values() for shape in names.values())

    def offer(self, shape: TensorShape) -> None:
        """Keep ``shape`` unless a shape of the same tensor is known and this one is not."""
        names = self._graphs.get(shape.graph)
        if names is None:
            names = self._graphs[shape.graph] = {}
        known = names.get(shape.name)
        if known is None or (shape.is_known and not known.is_known):
            names[shape.name] = shape


def _shape_of(value_info: onnx.ValueInfoProto, graph: str) -> TensorShape:
    data_type: DataType | None = None
    dims: tuple[int | str, ...] | None = None
    if value_info.type.HasField("tensor_type"):
        tensor_type = value_info.type.tensor_type
        data_type = DataType.from_value(tensor_type.elem_type) if tensor_type.elem_type else None
        if tensor_type.HasField("shape"):
            dims = tuple(
                d.dim_value
                if d.HasField("dim_value") and d.dim_value >= 0
                else (d.dim_param or "?")
                for d in tensor_type.shape.dim
            )
    return TensorShape(value_info.name, graph, data_type, dims)


def _collect_proto(model: onnx.ModelProto) -> _Found:
    """:func:`_collect` for a ``ModelProto`` whose nodes may differ from the skeleton's
    (onnxruntime's symbolic engine sorts them and drops stubbed Constants)."""
    found = _Found()
    for path, graph in iter_graphs(model.graph):
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            found.offer(_shape_of(vi, path))
    return found


def _collect(
    data: bytes,
    model: onnx.ModelProto,
    first_index: int = 0,
    with_subgraphs: Collection[int] | None = None,
    nodes: Any = None,
) -> _Found:
    """Shapes the inference engines declared (inputs, value_info, outputs) in every graph.

    Read from the serialized model ``data`` (the engine's output, the same nodes as the skeleton
    ``model``) field by field, without parsing it into a ``ModelProto``: on a 10^6-node graph that
    object alone took over a gigabyte. Subgraphs are found through the skeleton's nodes
    (``nodes``, when not ``model.graph.node``): ``with_subgraphs`` are the indices of the main
    graph's nodes that hold some, when known.
    """
    found = _Found()
    nodes = model.graph.node if nodes is None else nodes
    for fno, a, b in _wire.len_fields(data, 0, len(data)):
        if fno == 7:  # ModelProto.graph
            _collect_graph(data, a, b, nodes, MAIN_GRAPH, found, first_index, with_subgraphs)
    return found


def _collect_graph(
    buf: bytes,
    start: int,
    end: int,
    nodes: Any,
    path: str,
    found: _Found,
    first_index: int = 0,
    with_subgraphs: Collection[int] | None = None,
) -> None:
    """Collect one graph of ``buf``; its nodes are ``nodes`` (the skeleton graph's), the first
    one numbered ``first_index`` in its labels (a segment of a larger graph starts past 0); those
    with subgraphs are ``with_subgraphs`` when known."""
    if with_subgraphs is None:
        with_subgraphs = {index for index, node in enumerate(nodes) if has_subgraphs(node)}
    node_index = -1
    for fno, a, b in _wire.len_fields(buf, start, end):
        if fno == 1:  # GraphProto.node
            node_index += 1
            if node_index in with_subgraphs:
                node = nodes[node_index]
                _collect_subgraphs(buf, a, b, node, first_index + node_index, path, found)
        elif fno in (11, 12, 13):  # input, output, value_info
            found.offer(_wire_shape(buf, a, b, path))


_GRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _collect_subgraphs(
    buf: bytes,
    start: int,
    end: int,
    node: onnx.NodeProto,
    index: int,
    path: str,
    found: _Found,
) -> None:
    by_name = {attr.name: attr for attr in node.attribute if attr.type in _GRAPH_ATTRS}
    for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
        if fno != 5 or wt != _wire.LEN:  # NodeProto.attribute
            continue
        fields = list(_wire.iter_fields(buf, a, b))
        name = next(
            (buf[x:y].decode("utf-8", "replace") for f, _w, _s, x, y in fields if f == 1), ""
        )
        attr = by_name.get(name)
        if attr is None:
            continue
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        field = 6 if attr.type == onnx.AttributeProto.GRAPH else 11  # g, graphs
        ranges = [(x, y) for f, w, _s, x, y in fields if f == field and w == _wire.LEN]
        # onnx re-serializes what it read: one range per graph, in order
        for k, ((x, y), sub) in enumerate(zip(ranges, graphs, strict=False)):
            suffix = f"[{k}]" if attr.type == onnx.AttributeProto.GRAPHS else ""
            sub_path = f"{path}/{node_label(node, index)}.{attr.name}{suffix}"
            _collect_graph(buf, x, y, sub.node, sub_path, found)


def _wire_shape(buf: bytes, start: int, end: int, graph: str) -> TensorShape:
    """A ``ValueInfoProto`` in ``buf[start:end]`` as a :class:`TensorShape` (as onnx would read it:
    a negative or absent ``dim_value`` without a ``dim_param`` is ``?``)."""
    fast = _plain_value_info(buf, start, end)
    if fast is not None:
        return TensorShape(fast[0], graph, fast[1], fast[2])  # dims shared by _plain_type
    name = ""
    data_type: DataType | None = None
    dims: tuple[int | str, ...] | None = None
    for fno, a, b in _wire.len_fields(buf, start, end):
        if fno == 1:
            name = buf[a:b].decode("utf-8", "replace")
        elif fno == 2:  # TypeProto
            for f2, a2, b2 in _wire.len_fields(buf, a, b):
                if f2 == 1:  # tensor_type only
                    data_type, dims = _wire_tensor_type(buf, a2, b2)
    return TensorShape(name, graph, data_type, None if dims is None else _shared_dims(dims))


@functools.lru_cache(maxsize=4096)
def _shared_dims(dims: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """One tuple object per distinct shape: a large graph repeats a few shapes many times (56 MB
    of identical tuples on a 10^6-node chain)."""
    return dims


def _plain_value_info(
    buf: bytes, start: int, end: int
) -> tuple[str, DataType | None, tuple[int | str, ...]] | None:
    """The layout onnx writes for nearly every tensor, decoded inline: a name and a tensor type
    with an element type and a shape of ``dim_value`` dims, every key, length and element type
    one byte. None for anything else (the general walk then reads it): 10^6 tensors in seconds."""
    p = start
    if end - p < 6 or buf[p] != 0x0A or buf[p + 1] >= 0x80:  # name
        return None
    name_start, p = p + 2, p + 2 + buf[p + 1]
    name_end = p
    if p + 6 > end or buf[p] != 0x12 or p + 2 + buf[p + 1] != end:  # type, to the end
        return None
    type_bytes = buf[p:end]
    decoded = _PLAIN_TYPES.get(type_bytes)
    if decoded is None:
        decoded = _plain_type(buf, p, end)
        if decoded is None:
            return None
        if len(_PLAIN_TYPES) >= _PLAIN_TYPES_MAX:
            _PLAIN_TYPES.clear()
        _PLAIN_TYPES[type_bytes] = decoded
    return buf[name_start:name_end].decode("utf-8", "replace"), decoded[0], decoded[1]


#: Type fields :func:`_plain_type` decoded, by their bytes: a large graph repeats a few types
#: (the 10^6-node chain has one), and decoding each dim in Python was most of the collection.
_PLAIN_TYPES: dict[bytes, tuple[DataType | None, tuple[int | str, ...]]] = {}
_PLAIN_TYPES_MAX = 4096


def _plain_type(
    buf: bytes, p: int, end: int
) -> tuple[DataType | None, tuple[int | str, ...]] | None:
    """The type field of :func:`_plain_value_info` at ``buf[p:end]`` (checked to span it)."""
    if buf[p + 2] != 0x0A or p + 4 + buf[p + 3] != end:  # tensor_type, to the end
        return None
    if buf[p + 4] != 0x08 or buf[p + 5] >= 0x80:  # elem_type
        return None
    data_type = _DATA_TYPES.get(buf[p + 5]) if buf[p + 5] else None
    p += 6
    if p == end:
        return None  # no shape: the general walk says so
    if p + 2 > end or buf[p] != 0x12 or p + 2 + buf[p + 1] != end:  # shape, to the end
        return None
    p += 2
    dims: list[int | str] = []
    while p < end:
        if p + 3 > end or buf[p] != 0x0A or buf[p + 2] != 0x08:  # dim { dim_value }
            return None
        stop = p + 2 + buf[p + 1]
        if buf[p + 1] >= 0x80 or stop > end or buf[stop - 1] >= 0x80:
            return None
        if not 1 <= stop - (p + 3) <= 10:
            return None
        value = shift = 0
        for q in range(p + 3, stop):
            byte = buf[q]
            if byte < 0x80 and q != stop - 1:
                return None  # not exactly one varint
            value |= (byte & 0x7F) << shift
            shift += 7
        dims.append(value if value < 1 << 63 else "?")
        p = stop
    return data_type, _shared_dims(tuple(dims))


def _wire_tensor_type(
    buf: bytes, start: int, end: int
) -> tuple[DataType | None, tuple[int | str, ...] | None]:
    data_type: DataType | None = None
    dims: tuple[int | str, ...] | None = None
    for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
        if fno == 1 and wt == _wire.VARINT:
            data_type = _DATA_TYPES.get(a) if a else None
        elif fno == 2 and wt == _wire.LEN:
            dims = _wire_dims(buf, a, b)
    return data_type, dims


_DATA_TYPES = {t.value: t for t in DataType}


def _wire_dims(buf: bytes, start: int, end: int) -> tuple[int | str, ...]:
    # The general walk: the common layout never gets here (:func:`_plain_value_info`).
    return tuple(
        _wire_dim(buf, a, b)
        for fno, a, b in _wire.len_fields(buf, start, end)
        if fno == 1  # TensorShapeProto.dim
    )


def _wire_dim(buf: bytes, start: int, end: int) -> int | str:
    value: int | None = None
    param = ""
    for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
        if fno == 1 and wt == _wire.VARINT:  # dim_value and dim_param are a oneof: last wins
            value, param = _wire.to_int64(a), ""
        elif fno == 2 and wt == _wire.LEN:
            value, param = None, buf[a:b].decode("utf-8", "replace")
    return value if value is not None and value >= 0 else (param or "?")


def _add_stored_shapes(found: _Found, stored: ModelWeights) -> None:
    """Stored tensors (initializers, Constant outputs) as the one reading has them: exact, in
    place of what inference said."""
    for t in stored.tensors:
        found[(t.graph, t.name)] = TensorShape(t.name, t.graph, t.data_type, t.dims)


def _any_unknown(model: onnx.ModelProto, found: _Found, table: NodeTable) -> bool:
    """True when some node output has no concrete shape in ``found`` (stops at the first).

    The main graph's outputs come from its node ``table``; subgraphs are walked as protobuf.
    """
    known: dict[tuple[int | str, ...], bool] = {}  # dims tuples are shared: test each once

    def concrete(shape: TensorShape | None) -> bool:
        if shape is None or shape.data_type is None or shape.dims is None:
            return False
        dims_known = known.get(shape.dims)
        if dims_known is None:
            dims_known = known[shape.dims] = shape.is_known
        return dims_known

    main = found.names_in(MAIN_GRAPH)
    names = table.names
    if not all(concrete(main.get(names[t])) for t in table.out_ids if t >= 0):
        return True
    subgraphs = iter_graphs(model.graph, with_subgraphs=table.with_subgraphs)
    next(subgraphs)  # the main graph, done above
    for path, graph in subgraphs:
        shapes_here = found.names_in(path)
        for node in graph.node:
            if not all(concrete(shapes_here.get(out)) for out in node.output if out):
                return True
    return False


def _run_onnx_inference(data: bytes, notes: list[str]) -> bytes:
    """onnx's shape inference on the serialized model: the serialized result (``data`` itself
    when onnx rejects the model). Bytes in, bytes out: no ``ModelProto`` of the result is built."""
    try:
        result: bytes = onnx.onnx_cpp2py_export.shape_inference.infer_shapes(
            data,
            False,
            False,
            True,  # check_type, strict_mode, data_prop
        )
        return result
    except Exception as e:
        # A model onnx's inference rejects (a real inconsistency, or an op it mis-handles): keep the
        # bound model; the other engine and the fallback still give figures.
        notes.append(f"onnx shape inference failed: {_first_line(e)}")
        return data


#: Main graphs with more nodes than this are inferred by onnx in consecutive segments of about
#: this many nodes. onnx's C++ inference holds about 1 KB per node while it runs (measured: 274 MB
#: for a 3 x 10^5-node chain), a gigabyte at 10^6 nodes; a segment of 5 x 10^4 about 55 MB (the
#: 10^6-node chain's peak during inference: 1,091 MB with segments of 10^5, 994 MB with these).
INFERENCE_SEGMENT_NODES = 50_000

_INT_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})


def _infer_onnx(
    model: onnx.ModelProto,
    data: bytes | None,
    bound: list[onnx.ValueInfoProto],
    notes: list[str],
    table: NodeTable,
) -> tuple[_Found, bytes | None]:
    """onnx's shapes of every tensor: ``(found, inferred bytes)``, the bytes None when segmented.

    ``data`` is the bound model serialized, None for a graph to infer in segments. A main graph
    of more than :data:`INFERENCE_SEGMENT_NODES` nodes is inferred segment by segment (in node
    order: a valid ONNX graph is topologically sorted), each segment a model of its own whose
    inputs are the tensors it reads from earlier segments, typed as inferred there. onnx's data
    propagation (a shape computed by Shape -> Gather -> Concat and read by a Reshape) does not
    cross a segment boundary, so a boundary is moved back, within the second half of a segment,
    to where no integer tensor of rank 0 or 1 produced before it is read after it.
    """
    if data is not None:
        inferred = _run_onnx_inference(data, notes)
        return _collect(inferred, model, with_subgraphs=set(table.with_subgraphs)), inferred
    return _segmented_shapes(model, bound, notes, INFERENCE_SEGMENT_NODES, table), None


def _segmented_shapes(
    model: onnx.ModelProto,
    bound: list[onnx.ValueInfoProto],
    notes: list[str],
    segment_nodes: int,
    table: NodeTable,
) -> _Found:
    graph = model.graph
    nodes = graph.node
    stored = {t.name: t for t in graph.initializer}
    sparse = {t.values.name: t for t in graph.sparse_initializer}
    found = _Found()
    for vi in bound:
        found.offer(_shape_of(vi, MAIN_GRAPH))
    start, lost = 0, 0
    reads = _Reads(table, nodes)
    lazy = isinstance(nodes, LazyNodes)
    while start < len(nodes):
        end = min(len(nodes), start + segment_nodes)
        segment = onnx.ModelProto(ir_version=model.ir_version)
        segment.opset_import.extend(model.opset_import)
        segment.functions.extend(model.functions)
        sub = segment.graph
        if not lazy:
            sub.node.extend(nodes[start:end])
        for name in reads.read_from_outside(start, end):
            earlier = found.get((MAIN_GRAPH, name))
            if name in stored:
                sub.initializer.append(stored[name])
                if model.ir_version < 4:  # before IR 4 onnx reads an initializer's type as an input
                    tensor = stored[name]
                    sub.input.append(
                        onnx.helper.make_tensor_value_info(name, tensor.data_type, tensor.dims)
                    )
            elif name in sparse:
                sub.sparse_initializer.append(sparse[name])
                if model.ir_version < 4:
                    values = sparse[name]
                    sub.input.append(
                        onnx.helper.make_tensor_value_info(
                            name, values.values.data_type, values.dims
                        )
                    )
            elif earlier is not None and earlier.data_type is not None:
                dims = None if earlier.dims is None else list(earlier.dims)
                sub.input.append(
                    onnx.helper.make_tensor_value_info(name, earlier.data_type.value, dims)
                )
        if lazy:  # the nodes' bytes spliced into the segment's graph, never parsed
            graph_bytes = nodes.serialized(start, end) + sub.SerializeToString()
            segment.ClearField("graph")
            data = segment.SerializeToString() + _wire.len_field(7, graph_bytes)
            del graph_bytes
        else:
            data = segment.SerializeToString()
        inferred = _run_onnx_inference(data, notes)
        del data
        inside = {i - start for i in table.with_subgraphs if start <= i < end}
        seg_found = _collect(inferred, segment, start, inside, _Offset(nodes, start))
        del inferred, segment
        cut, clean = _segment_cut(
            len(nodes), start, end, seg_found, start + segment_nodes // 2, reads
        )
        lost += not clean
        dropped = {o for node in nodes[cut:end] for o in node.output if o}
        dropped_paths = tuple(
            f"{MAIN_GRAPH}/{node_label(node, cut + i)}." for i, node in enumerate(nodes[cut:end])
        )
        for shape in seg_found.shapes():
            if (shape.graph == MAIN_GRAPH and shape.name in dropped) or (
                dropped_paths and shape.graph.startswith(dropped_paths)
            ):
                continue
            found.offer(shape)
        start = cut
    # What the model declares (its value_info and outputs) counts as in a whole-graph inference:
    # taken where inference found nothing concrete.
    for vi in [*graph.value_info, *graph.output]:
        found.offer(_shape_of(vi, MAIN_GRAPH))
    if lost:
        notes.append(
            f"onnx shape inference ran in segments of {segment_nodes} nodes; {lost} boundaries "
            "cut through a computed shape value (shapes after them may be unknown)"
        )
    return found


class _Offset:
    """The nodes of a graph from index ``start`` on, indexed from 0 (a segment's)."""

    def __init__(self, nodes: Any, start: int) -> None:
        self.nodes, self.start = nodes, start

    def __getitem__(self, index: int) -> onnx.NodeProto:
        node: onnx.NodeProto = self.nodes[self.start + index]
        return node


class _Reads:
    """Who reads and makes each edge of the main graph, from its node table (integer arrays: no
    walk over the protobuf nodes but those with subgraphs, whose outer references count as
    reads at their node)."""

    def __init__(self, table: NodeTable, nodes: Any) -> None:
        self.table, self.nodes = table, nodes
        self.ins, self.outs = table.in_array(), table.out_array()
        self.readers, self.producers = table.readers(), table.producers()
        self.in_ptr = np.frombuffer(table.in_ptr, dtype=np.int64)
        self.out_ptr = np.frombuffer(table.out_ptr, dtype=np.int64)
        self._made = np.full(len(table.names), np.iinfo(np.int64).max, dtype=np.int64)
        self._last: np.ndarray | None = None
        self._producer: np.ndarray | None = None
        self._outer_of: dict[int, list[str]] = {}

    def _outer(self, index: int) -> list[str]:
        """The outer names node ``index``'s subgraphs read (walked once per node)."""
        from graph_analysis._liveness import outer_references, subgraphs_of

        if index not in self._outer_of:
            names: set[str] = set()
            for _suffix, body in subgraphs_of(self.nodes[index]):
                names |= outer_references(body)
            self._outer_of[index] = sorted(names)
        return self._outer_of[index]

    def read_from_outside(self, start: int, end: int) -> list[str]:
        """Names nodes ``[start, end)`` read (directly or from their subgraphs) that no earlier
        node of the range makes: the direct reads in order of first read, then the subgraphs'."""
        oa, ob = int(self.out_ptr[start]), int(self.out_ptr[end])
        outs, makers = self.outs[oa:ob], self.producers[oa:ob]
        keep = outs >= 0
        outs, makers = outs[keep], makers[keep]
        np.minimum.at(self._made, outs, makers)
        ia, ib = int(self.in_ptr[start]), int(self.in_ptr[end])
        ins, readers = self.ins[ia:ib], self.readers[ia:ib]
        keep = ins >= 0
        ins, readers = ins[keep], readers[keep]
        outside = ins[self._made[ins] >= readers]
        unique, first = np.unique(outside, return_index=True)
        names = self.table.names
        found = [names[t] for t in unique[np.argsort(first, kind="stable")].tolist()]
        seen = set(found)
        for index in self.table.with_subgraphs:
            if start <= index < end:
                for name in self._outer(index):
                    t = self.table.ids.get(name)
                    made_before = t is not None and self._made[t] < index
                    if not made_before and name not in seen:
                        seen.add(name)
                        found.append(name)
        self._made[outs] = np.iinfo(np.int64).max
        return found

    def last_read(self, name: str) -> int:
        """The last node index reading ``name``, -1 when none does."""
        if self._last is None:
            last = np.full(len(self.table.names), -1, dtype=np.int64)
            keep = self.ins >= 0
            np.maximum.at(last, self.ins[keep], self.readers[keep])
            for index in self.table.with_subgraphs:
                for outer in self._outer(index):
                    t = self.table.ids.get(outer)
                    if t is not None:
                        last[t] = max(int(last[t]), index)
            self._last = last
        t = self.table.ids.get(name)
        return -1 if t is None else int(self._last[t])

    def producer(self, name: str) -> int:
        """The index of the (last) node making ``name``, -1 when none does."""
        if self._producer is None:
            producer = np.full(len(self.table.names), -1, dtype=np.int64)
            keep = self.outs >= 0
            producer[self.outs[keep]] = self.producers[keep]
            self._producer = producer
        t = self.table.ids.get(name)
        return -1 if t is None else int(self._producer[t])


def _segment_cut(
    num_nodes: int,
    start: int,
    end: int,
    seg_found: _Found,
    earliest: int,
    reads: _Reads,
) -> tuple[int, bool]:
    """Where the segment ``[start, end)`` ends: ``(cut, clean)``.

    ``end`` unless an integer tensor of rank 0 or 1 (a shape value onnx propagates) produced
    before ``end`` is read at or after it; then the last cut in ``[earliest, end]`` that no such
    tensor crosses. ``clean`` is False when there is none (the segment ends at ``end`` anyway).
    Producers and last readers come from the node table (scanning the rest of the graph for each
    segment made the whole inference quadratic in graphs with shape values).
    """
    if end >= num_nodes:
        return end, True
    producer: dict[str, int] = {}
    for shape in seg_found.shapes():
        if (
            shape.graph == MAIN_GRAPH
            and shape.data_type is not None
            and shape.data_type.value in _INT_TYPES
            and shape.dims is not None
            and len(shape.dims) <= 1
        ):
            index = reads.producer(shape.name)
            if start <= index < end:
                producer[shape.name] = index
    if not producer:
        return end, True
    # A cut c is clean when every candidate produced before c is last read before c.
    reach = [-1] * (end - start + 1)  # reach[i]: latest read of a candidate produced before start+i
    for name, index in producer.items():
        offset = index - start + 1
        reach[offset] = max(reach[offset], reads.last_read(name))
    for i in range(1, len(reach)):
        reach[i] = max(reach[i], reach[i - 1])
    for cut in range(end, max(earliest, start + 1) - 1, -1):
        if reach[cut - start] < cut:
            return cut, True
    return end, False


#: Wall-clock bound on onnxruntime's symbolic shape inference (a pure-Python engine that can spin
#: on malformed graphs); past it the onnx result stands and a note says so.
SYMBOLIC_TIME_LIMIT_S = 300.0
_SYMBOLIC_MODULE: list[Any] = []


def _symbolic_module() -> Any:
    """onnxruntime's ``symbolic_shape_infer`` loaded from its file, or None when not installed.

    Loaded by path, not as ``onnxruntime.tools.symbolic_shape_infer``: the package's
    ``__init__`` imports torch whenever torch is installed, and the core must not.
    """
    if _SYMBOLIC_MODULE:
        return _SYMBOLIC_MODULE[0]
    import importlib.util

    found = importlib.util.find_spec("onnxruntime")
    locations = list(found.submodule_search_locations or []) if found else []
    path = next(
        (Path(p) / "tools" / "symbolic_shape_infer.py" for p in locations
         if (Path(p) / "tools" / "symbolic_shape_infer.py").is_file()),
        None,
    )  # fmt: skip
    module = None
    if path is not None:
        spec = importlib.util.spec_from_file_location("_modelsize_symbolic_shape_infer", path)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except ImportError:  # sympy missing
                module = None
    _SYMBOLIC_MODULE.append(module)
    return module


class _TimeLimitError(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``_TimeLimitError`` in the block after ``seconds`` (main thread only; else no limit)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise _TimeLimitError(f"gave up after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: The domain of onnxruntime's NCHWc layout ops: what its ``NchwcTransformer`` writes into the graph
#: it runs at ``ORT_ENABLE_ALL`` (docs/memory.md, "Layout transforms").
NCHWC_DOMAIN = "com.microsoft.nchwc"
_MS_DOMAIN = "com.microsoft"


def _runtime_op_rules(engine: Any, module: Any, nchwc_block_size: int | None) -> dict[str, Any]:
    """Shape rules for the ops onnxruntime's own optimized graphs hold and its engine lacks.

    From the kernels in onnxruntime's ``contrib_ops/cpu/nchwc_ops.cc``:

    - ``Conv``, ``MaxPool``, ``AveragePool`` (NCHWc): the standard rules; the weights carry the
      padded channel counts (``[roundup(M, block), roundup(C, block) / group, kH, kW]``).
    - ``ReorderInput``: ``[N, C, H, W]`` (``[N, H, W, C]`` with ``channels_last``) to
      ``[N, roundup(C, block), H, W]``; the block is MLAS's (8 with AVX2, 16 with AVX-512), known
      only to the machine that made the graph, so the rule needs ``nchwc_block_size``.
    - ``ReorderOutput``: ``[N, Cp, H, W]`` to ``[N, channels, H, W]`` (``[N, H, W, channels]``
      with ``channels_last``).
    - ``Upsample`` (NCHWc): ``[N, Cp, H * scales[2], W * scales[3]]``, integer ``scales``.
    - ``GlobalAveragePool``/``GlobalMaxPool`` (NCHWc): ``[N, Cp, 1, 1]``.
    - ``FusedConv`` (``com.microsoft``, Conv + activation): as ``Conv``.
    - ``FusedGemm`` (``com.microsoft``, Gemm + activation): as ``Gemm``.
    - ``FusedMatMul`` (``com.microsoft``, MatMul with transposes and a scale): as ``MatMul`` of
      the transposed inputs (``transBatchA``/``transBatchB`` left unknown).

    Each rule applies to its own domain only; other nodes of the same op type keep the engine's
    handling (or onnx's, run before the dispatch).
    """
    previous: dict[str, Any] = dict(engine.dispatcher_)

    def set_output(node: onnx.NodeProto, shape: list[Any]) -> None:
        engine._update_computed_dims(shape)
        elem_type = engine.known_vi_[node.input[0]].type.tensor_type.elem_type
        engine.known_vi_[node.output[0]].CopyFrom(
            onnx.helper.make_tensor_value_info(
                node.output[0], elem_type, module.get_shape_from_sympy_shape(shape)
            )
        )

    def attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
        return module.get_attribute(node, name, default)

    def reorder_input(node: onnx.NodeProto) -> None:
        x = engine._get_sympy_shape(node, 0)
        if len(x) != 4 or nchwc_block_size is None:
            return
        last = bool(attribute(node, "channels_last", 0))
        channels = x[3] if last else x[1]
        if module.is_literal(channels):
            block = nchwc_block_size
            channels = (int(channels) + block - 1) // block * block
        set_output(node, [x[0], channels, *(x[1:3] if last else x[2:4])])

    def reorder_output(node: onnx.NodeProto) -> None:
        x = engine._get_sympy_shape(node, 0)
        channels = attribute(node, "channels", None)
        if len(x) != 4 or channels is None:
            return
        if attribute(node, "channels_last", 0):
            set_output(node, [x[0], x[2], x[3], int(channels)])
        else:
            set_output(node, [x[0], int(channels), x[2], x[3]])

    def upsample(node: onnx.NodeProto) -> None:
        x = engine._get_sympy_shape(node, 0)
        scales = list(attribute(node, "scales", []))
        if len(x) != 4 or len(scales) != 4:
            return
        set_output(node, [d * int(s) for d, s in zip(x, scales, strict=True)])

    def global_pool(node: onnx.NodeProto) -> None:
        x = engine._get_sympy_shape(node, 0)
        set_output(node, [*x[:2], *([1] * (len(x) - 2))])

    def gemm(node: onnx.NodeProto) -> None:
        a = engine._get_sympy_shape(node, 0)
        b = engine._get_sympy_shape(node, 1)
        if len(a) != 2 or len(b) != 2:
            return
        rows = a[1] if attribute(node, "transA", 0) else a[0]
        cols = b[0] if attribute(node, "transB", 0) else b[1]
        set_output(node, [rows, cols])

    def standard(rule: Any) -> Any:
        def apply(node: onnx.NodeProto) -> None:
            # The standard rule reads onnx's output shape when the spatial dims are literals;
            # onnx knows nothing of these domains, so it starts from an empty shape.
            elem_type = engine.known_vi_[node.input[0]].type.tensor_type.elem_type
            engine.known_vi_[node.output[0]].CopyFrom(
                onnx.helper.make_tensor_value_info(node.output[0], elem_type, [])
            )
            rule(node)

        return apply

    def matmul(node: onnx.NodeProto) -> None:
        a = engine._get_sympy_shape(node, 0)
        b = engine._get_sympy_shape(node, 1)
        batched = attribute(node, "transBatchA", 0) or attribute(node, "transBatchB", 0)
        if len(a) < 2 or len(b) < 2 or batched:
            return
        if attribute(node, "transA", 0):
            a = [*a[:-2], a[-1], a[-2]]
        if attribute(node, "transB", 0):
            b = [*b[:-2], b[-1], b[-2]]
        set_output(node, [*engine._broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1]])

    rules: dict[str, tuple[str, Any]] = {
        "Conv": (NCHWC_DOMAIN, standard(engine._infer_Conv)),
        "MaxPool": (NCHWC_DOMAIN, standard(engine._infer_Pool)),
        "AveragePool": (NCHWC_DOMAIN, standard(engine._infer_Pool)),
        "ReorderInput": (NCHWC_DOMAIN, reorder_input),
        "ReorderOutput": (NCHWC_DOMAIN, reorder_output),
        "Upsample": (NCHWC_DOMAIN, upsample),
        "GlobalAveragePool": (NCHWC_DOMAIN, global_pool),
        "GlobalMaxPool": (NCHWC_DOMAIN, global_pool),
        "FusedConv": (_MS_DOMAIN, standard(engine._infer_Conv)),
        "FusedGemm": (_MS_DOMAIN, gemm),
        "FusedMatMul": (_MS_DOMAIN, matmul),
    }

    def dispatch(op_type: str, domain: str, rule: Any) -> Any:
        fallback = previous.get(op_type)

        def handler(node: onnx.NodeProto) -> None:
            if node.domain == domain:
                rule(node)
            elif fallback is not None:
                fallback(node)

        return handler

    return {op: dispatch(op, domain, rule) for op, (domain, rule) in rules.items()}


def _run_symbolic_inference(
    model: onnx.ModelProto, notes: list[str], nchwc_block_size: int | None = None
) -> onnx.ModelProto | None:
    symbolic_shape_infer = _symbolic_module()
    if symbolic_shape_infer is None:
        notes.append("onnxruntime's symbolic shape inference is not available")
        return None
    untyped = [i.name for i in model.graph.input if not i.type.tensor_type.elem_type]
    if untyped:
        # onnxruntime's engine never returns on such graphs (found by the fuzzer).
        notes.append(
            f"onnxruntime symbolic shape inference skipped: input {untyped[0]!r} has no element type"
        )
        return None
    model = _without_external_stubs(model)
    logger = logging.getLogger(symbolic_shape_infer.__name__)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # the library never prints; failures become notes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _time_limit(SYMBOLIC_TIME_LIMIT_S):
                result, complete = _symbolic_infer(
                    symbolic_shape_infer.SymbolicShapeInference,
                    model,
                    module=symbolic_shape_infer,
                    nchwc_block_size=nchwc_block_size,
                )
        if not complete:
            notes.append(
                "onnxruntime symbolic shape inference stopped early; its partial result is used"
            )
        return result
    except Exception as e:
        # It raises on ops it does not know and on some valid graphs; the onnx result stands.
        notes.append(f"onnxruntime symbolic shape inference failed: {_first_line(e)}")
        return None
    finally:
        logger.setLevel(level)


def _symbolic_infer(
    engine_class: Any,
    model: onnx.ModelProto,
    *,
    module: Any = None,
    nchwc_block_size: int | None = None,
) -> tuple[onnx.ModelProto, bool]:
    """Run onnxruntime's symbolic inference without its file side effects: ``(model, complete)``.

    ``SymbolicShapeInference.infer_shapes`` saves the model as ``sym_shape_infer_temp.onnx`` plus a
    ``<uuid>.data`` file into the *working directory* when inference stops early, then raises (and the
    shapes it found are lost). Its driver loop is three calls; run here, nothing is written and a
    partial result is kept. Should a future onnxruntime rename those internals, the public function
    runs inside a private temporary folder instead, removed afterwards whatever happens.
    With ``module`` (the engine's module), the engine also knows the ops of onnxruntime's optimized
    graphs (:func:`_runtime_op_rules`).
    """
    engine = engine_class(
        2**31 - 1, True, True, 0
    )  # int_max, auto_merge, guess_output_rank, verbose
    if module is not None and isinstance(getattr(engine, "dispatcher_", None), dict):
        engine.dispatcher_.update(_runtime_op_rules(engine, module, nchwc_block_size))
    if all(hasattr(engine, a) for a in ("_preprocess", "_infer_impl", "_update_output_from_vi")):
        complete = False
        engine._preprocess(model)
        while engine.run_:
            complete = engine._infer_impl()
        engine._update_output_from_vi()
        out: onnx.ModelProto = engine.out_mp_
        return out, bool(complete)
    with tempfile.TemporaryDirectory(prefix="modelsize-shapes-") as folder:
        previous = os.getcwd()
        os.chdir(folder)
        try:
            result: onnx.ModelProto | None = engine_class.infer_shapes(
                model, int_max=2**31 - 1, auto_merge=True, guess_output_rank=True, verbose=0
            )
        finally:
            os.chdir(previous)
    if result is None:
        raise ValueError("the model's opset is below 7")
    return result, True


def _without_external_stubs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every stripped tensor is a typed main-graph input, not a payload placeholder.

    onnxruntime's symbolic inference reads the values of initializers and Constant nodes it meets
    (and re-runs onnx's inference on one-node models, which opens the skeleton's placeholder
    location); a graph input with the same type and dims tells it the shape without a payload it
    cannot have. Stripped Constant nodes (older exporters store every weight that way) and
    subgraph initializers become main-graph inputs too (a subgraph sees outer-scope names); a
    subgraph initializer whose name the main graph already uses only loses its placeholder.
    """
    clean = copy.deepcopy(model)
    graph = clean.graph
    listed = {i.name for i in graph.input}
    taken = listed | {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    added: list[onnx.ValueInfoProto] = []

    def as_input(tensor: onnx.TensorProto, name: str) -> None:
        if name not in listed:
            listed.add(name)
            added.append(
                onnx.helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))
            )

    for path, sub in iter_graphs(graph):
        kept = []
        for tensor in sub.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                kept.append(tensor)
            elif path == MAIN_GRAPH or tensor.name not in taken:
                as_input(tensor, tensor.name)
            else:
                tensor.ClearField("external_data")
                tensor.data_location = onnx.TensorProto.DEFAULT
                kept.append(tensor)
        del sub.initializer[:]
        sub.initializer.extend(kept)
        # Deleted in place, last first: the other nodes (and the subgraphs the walk visits next)
        # stay the same objects.
        for index in reversed(range(len(sub.node))):
            stub = _stubbed_constant(sub.node[index])
            name = sub.node[index].output[0] if stub is not None else ""
            if stub is not None and (path == MAIN_GRAPH or name not in taken):
                as_input(stub, name)
                del sub.node[index]
            elif stub is not None:
                stub.ClearField("external_data")
                stub.data_location = onnx.TensorProto.DEFAULT
    graph.input.extend(added)
    return clean


def _stubbed_constant(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node whose payload the skeleton replaced by a stub, else None."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or not node.output:
        return None
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR and (
            attr.t.data_location == onnx.TensorProto.EXTERNAL
        ):
            tensor: onnx.TensorProto = attr.t
            return tensor
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def infer_shapes(
    model: onnx.ModelProto | str | Path,
    bindings: Bindings | None = None,
    *,
    default_dim: int | None = 1,
    use_symbolic: bool = True,
    path: str | Path | None = None,
    stored: ModelWeights | None = None,
    nchwc_block_size: int | None = None,
    table: NodeTable | None = None,
) -> InferredShapes:
    """Bind the inputs and infer the shape of every tensor in every graph.

    Args:
        model: a path (loaded as a weight-free skeleton) or an already loaded model (not modified).
        bindings: the user's input bindings (empty: every unknown dim takes ``default_dim``).
        default_dim: value for dims nobody bound; None makes an unbound dim an error.
        use_symbolic: also run onnxruntime's symbolic shape inference where onnx's leaves gaps.
        path: the model's path for error messages (taken from ``model`` when it is a path).
        stored: the model's stored tensors from the one reading
            (:func:`graph_analysis._weights.read_weights`), read here when not given: their
            shapes are taken from it, never from the protobuf.
        nchwc_block_size: MLAS's NCHWc block size on the machine that wrote ``model``, for the
            ``ReorderInput`` ops of a graph onnxruntime optimized (None: they stay unknown).
        table: the main graph's node table from the one reading (made from ``model`` when not
            given).

    Returns:
        The inputs as bound, every tensor's shape and the unknown ones with their treatment.

    Raises:
        ShapeBindingError: a binding that does not fit the graph.
        ModelFormatError: ``model`` is a path to something that is not an ONNX model.
    """
    if isinstance(model, (str, Path)):
        path = model
        weights, model, read_table = weights_and_skeleton(model)
        stored = stored or weights
        table = table or read_table
    table = table if table is not None else NodeTable.of_proto(model.graph)
    bindings = bindings or Bindings()
    # A graph inferred in segments never needs the whole serialized model (60 MB at 10^6 nodes);
    # a lazy skeleton (its nodes kept as bytes) is always inferred in segments.
    whole = len(model.graph.node) <= INFERENCE_SEGMENT_NODES and not isinstance(
        model.graph.node, LazyNodes
    )
    dim_values, defaulted, data, bound = _bound_bytes(model, bindings, default_dim, path, whole)
    notes: list[str] = []
    with gc_paused():
        found, inferred = _infer_onnx(model, data, bound, notes, table)
    del data
    if stored is None:
        stored = read_weights(model)
    _add_stored_shapes(found, stored)
    engines = ["onnx"]
    missing = _any_unknown(model, found, table)
    if use_symbolic and inferred is None and missing:
        notes.append(
            f"onnxruntime symbolic shape inference skipped: {len(model.graph.node)} nodes "
            f"(above {INFERENCE_SEGMENT_NODES}, inferred by onnx in segments)"
        )
    elif use_symbolic and inferred is not None and missing:
        symbolic = _run_symbolic_inference(onnx.load_from_string(inferred), notes, nchwc_block_size)
        if symbolic is not None:
            extra = _collect_proto(symbolic)
            del symbolic
            gained = False
            for key, shape in extra.items():
                if shape.is_known and (key not in found or not found[key].is_known):
                    found[key] = shape
                    gained = True
            if gained:
                engines.append("onnxruntime-symbolic")
    del inferred
    unknown = _treat_unknown(model, found) if missing else []
    inputs = tuple(found[(MAIN_GRAPH, i.name)] for i in _real_inputs(model.graph))
    return InferredShapes(
        inputs=inputs,
        dim_values=dim_values,
        defaulted=defaulted,
        tensors=tuple(found.shapes()),
        unknown=tuple(unknown),
        engines=tuple(engines),
        notes=tuple(notes),
    )


def _bound_bytes(
    model: onnx.ModelProto,
    bindings: Bindings,
    default_dim: int | None,
    path: str | Path | None,
    serialize: bool = True,
) -> tuple[dict[str, int], tuple[str, ...], bytes | None, list[onnx.ValueInfoProto]]:
    """:func:`bind_inputs` without the copy: ``model`` serialized with its inputs bound (None
    unless ``serialize``), and copies of the bound inputs.

    The inputs are bound in place, the model serialized, and the inputs put back as they were
    (also when binding fails): a deep copy of a 10^6-node skeleton cost hundreds of megabytes.
    """
    graph = model.graph
    pristine = [copy.deepcopy(vi) for vi in graph.input]
    try:
        dim_values, defaulted = _bind(
            graph, [copy.deepcopy(vi) for vi in _real_inputs(graph)], bindings, default_dim, path
        )
        bound = [copy.deepcopy(vi) for vi in _real_inputs(graph)]
        return dim_values, defaulted, model.SerializeToString() if serialize else None, bound
    finally:
        del graph.input[:]
        graph.input.extend(pristine)


def _treat_unknown(
    model: onnx.ModelProto, found: Mapping[tuple[str, str], TensorShape]
) -> list[UnknownTensor]:
    """Give every node output without a concrete shape an assumed size, in execution order.

    The size is that of the node's largest known *activation* input: never a weight's, since an
    output sized like a weight matrix is wrong for nearly every op that reads one (a MatMulInteger
    output sized like its 8 MiB int8 weight made a quantized recognizer's estimate 1.37x). A node
    computed from weights only is itself a weight (onnxruntime folds it): sized as its largest input.
    """
    unknown: list[UnknownTensor] = []
    assumed: dict[tuple[str, str], int] = {}
    weights: set[tuple[str, str]] = set()
    for path, graph in iter_graphs(model.graph):
        weights.update((path, t.name) for t in graph.initializer)
        weights.update((path, t.values.name) for t in graph.sparse_initializer)
        weights.update(
            (path, n.output[0])
            for n in graph.node
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output
        )

    def scope_of(graph_path: str, name: str) -> str | None:
        # Outer-scope names are visible in subgraphs: look up the chain of parents.
        return next(
            (
                scope
                for scope in enclosing_scopes(graph_path)
                if (scope, name) in assumed or (scope, name) in found or (scope, name) in weights
            ),
            None,
        )

    def size_of(key: tuple[str, str]) -> int | None:
        if key in assumed:
            return assumed[key]
        shape = found.get(key)
        return shape.nbytes if shape is not None else None

    for path, graph in iter_graphs(model.graph):
        for node in graph.node:
            ins = []
            for name in node.input:
                scope = scope_of(path, name) if name else None
                if scope is not None:
                    ins.append((scope, name))
            activations = [k for k in ins if k not in weights]
            from_weights = (
                bool(ins) and not activations and len(ins) == len([i for i in node.input if i])
            )
            if from_weights and node.op_type != "Constant":
                weights.update((path, o) for o in node.output if o)
            for out in node.output:
                if not out:
                    continue
                key = (path, out)
                shape = found.get(key)
                if shape is not None and shape.is_known:
                    continue
                sizes = [
                    s
                    for s in (size_of(k) for k in (ins if from_weights else activations))
                    if s is not None
                ]
                value = max(sizes, default=0)
                if not sizes:
                    treatment = "no activation input size known either: counted as 0 bytes"
                elif from_weights:
                    treatment = "computed from weights only (a folded weight): as its largest input"
                else:
                    treatment = "assumed as large as the node's largest known activation input"
                assumed[key] = value
                unknown.append(UnknownTensor(out, path, node.op_type, shape, value, treatment))
    return unknown
