"""The only module that reads ONNX files: a weight-free, validated read model of a model file.

The file is memory-mapped and walked with the wire reader in ``_wire``; tensor payloads are never
copied. For each tensor we keep its name, data type, dims and where its bytes lie (a range of the
``.onnx`` file, or of an external data file). Everything is validated on the way: a tensor whose stored
payload cannot hold what its dims x data type need is refused before anything is allocated, external
data must stay inside the model's folder and be long enough.

``load_skeleton`` gives an ``onnx.ModelProto`` of the same model with large payloads replaced by stubs,
for analyses (shape inference) that need the protobuf API but not the weights.
"""

from __future__ import annotations

import math
import mmap
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph_analysis import _wire
from graph_analysis._gc import gc_paused
from graph_analysis._wire import FIXED32, FIXED64, LEN, VARINT, WireError
from graph_analysis.dtypes import DataType, bitwidth, nbytes
from graph_analysis.errors import (
    CorruptTensorError,
    ExternalDataError,
    ModelFormatError,
)

if TYPE_CHECKING:
    import onnx

__all__ = [
    "Encoding",
    "ExternalRef",
    "GraphInfo",
    "ModelFile",
    "NodeInfo",
    "PayloadRef",
    "TensorInfo",
    "TensorSource",
    "ValueInfo",
    "load_skeleton",
    "read_model",
    "require_external_data",
]

# Field numbers, from onnx.proto (onnx 1.23).
_MODEL_IR_VERSION, _MODEL_PRODUCER, _MODEL_PRODUCER_VERSION = 1, 2, 3
_MODEL_GRAPH, _MODEL_OPSET, _MODEL_METADATA, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 8, 14, 20, 25
_GRAPH_NODE, _GRAPH_NAME, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 2, 5, 15
_GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 11, 12, 13
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP, _NODE_ATTR, _NODE_DOMAIN = 1, 2, 3, 4, 5, 7
_ATTR_NAME, _ATTR_F, _ATTR_I, _ATTR_S, _ATTR_T, _ATTR_G = 1, 2, 3, 4, 5, 6
_ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS, _ATTR_TENSORS, _ATTR_GRAPHS = 7, 8, 9, 10, 11
_ATTR_SPARSE, _ATTR_SPARSES = 22, 23
_T_DIMS, _T_DTYPE, _T_SEGMENT, _T_FLOAT, _T_INT32, _T_STRING, _T_INT64 = 1, 2, 3, 4, 5, 6, 7
_T_NAME, _T_RAW, _T_DOUBLE, _T_UINT64, _T_EXTERNAL, _T_LOCATION = 8, 9, 10, 11, 13, 14
_SPARSE_VALUES, _SPARSE_INDICES, _SPARSE_DIMS = 1, 2, 3
_FUNC_NAME, _FUNC_NODE, _FUNC_DOMAIN = 1, 7, 10
_TRAIN_INIT, _TRAIN_ALGO = 1, 2
_LOCATION_EXTERNAL = 1

_TYPED_FIELDS = (_T_FLOAT, _T_INT32, _T_STRING, _T_INT64, _T_DOUBLE, _T_UINT64)
_FIXED_WIDTH = {_T_FLOAT: 4, _T_DOUBLE: 8}
_LFS_PREFIX = b"version https://git-lfs"
_STUB_LOCATION = "modelsize-stripped-payload"


class TensorSource(str, Enum):
    """Where in the file a tensor is held."""

    INITIALIZER = "initializer"
    SPARSE_INITIALIZER = "sparse_initializer"
    CONSTANT_NODE = "constant_node"
    ATTRIBUTE = "attribute"


class Encoding(str, Enum):
    """How a payload's bytes are laid out where they are stored."""

    RAW = "raw"  # little-endian element bytes (raw_data, external data)
    FIXED = "fixed"  # packed float_data/double_data: also little-endian element bytes
    VARINT = "varint"  # packed int32_data/int64_data/uint64_data: varint-encoded
    OTHER = "other"  # strings, unpacked repeated fields, attribute lists: no single byte range


@dataclass(frozen=True, slots=True)
class ExternalRef:
    """A tensor's bytes in an external data file, resolved and checked."""

    location: str
    path: Path
    offset: int
    length: int
    exists: bool


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """Where a dense payload's bytes are: ``length`` bytes at ``offset`` of ``path``."""

    path: Path
    offset: int
    length: int
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One stored tensor, without its values.

    Attributes:
        name: the name the graph's edges use: an initializer's own name; a Constant node's output
            (never the attribute tensor's own ``name`` field); ``<node>:<attribute>`` for a
            tensor in another op's attribute.
        data_type: element type.
        dims: the (dense) shape.
        num_elements: product of ``dims`` (dense, also for sparse tensors).
        source: where the tensor sits in the file.
        graph: path of the graph holding it ("" for the main graph, ``If_3.then_branch`` below).
        stored_nbytes: bytes the payload takes where it is stored (sparse: values plus indices).
        payload: where the dense payload lies, when it is one contiguous range; else None.
        external: the external data reference, for tensors stored outside the .onnx file.
        nnz: number of stored values of a sparse tensor (None when dense).
    """

    name: str
    data_type: DataType
    dims: tuple[int, ...]
    num_elements: int
    source: TensorSource
    graph: str
    stored_nbytes: int
    payload: PayloadRef | None = None
    external: ExternalRef | None = None
    nnz: int | None = None

    @property
    def nbytes(self) -> int:
        """Dense size in bytes: elements x bit width, sub-byte types packed and rounded up."""
        if self.data_type == DataType.STRING:
            return self.stored_nbytes
        return nbytes(self.data_type, self.num_elements)


@dataclass(frozen=True, slots=True)
class ValueInfo:
    """A declared graph input, output or intermediate: element type and shape, dims int or symbol."""

    name: str
    elem_type: DataType | None
    shape: tuple[int | str | None, ...] | None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node: its op, its edges, its simple attributes and its subgraphs."""

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    graph: str
    attributes: dict[str, int | float | str | tuple[int, ...] | tuple[float, ...]]
    subgraphs: tuple[GraphInfo, ...] = ()


@dataclass(frozen=True)
class GraphInfo:
    """A graph (main graph, subgraph or function body) and the tensors it holds."""

    name: str
    path: str
    nodes: tuple[NodeInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    value_info: tuple[ValueInfo, ...]

    def walk(self) -> Iterator[GraphInfo]:
        """This graph and every subgraph below it, depth first."""
        yield self
        for node in self.nodes:
            for sub in node.subgraphs:
                yield from sub.walk()


@dataclass(frozen=True)
class ModelFile:
    """The read model of one ONNX file.

    Attributes:
        path: the .onnx file.
        file_nbytes: its size on disk.
        external_files: every external data file referenced, with its size (None when missing).
        graph: the main graph (subgraphs hang below its nodes).
        functions: bodies of model-local functions, as graphs.
        warnings: problems that did not stop the reading (a missing external file, ...).
    """

    path: Path
    file_nbytes: int
    ir_version: int
    opsets: dict[str, int]
    producer_name: str
    producer_version: str
    graph: GraphInfo
    functions: tuple[GraphInfo, ...]
    metadata: dict[str, str]
    external_files: dict[Path, int | None]
    warnings: tuple[str, ...] = field(default=())

    def graphs(self) -> Iterator[GraphInfo]:
        """Every graph of the model: main graph, subgraphs at any depth, function bodies."""
        yield from self.graph.walk()
        for function in self.functions:
            yield from function.walk()

    def tensors(self) -> Iterator[TensorInfo]:
        """Every stored tensor of every graph."""
        for graph in self.graphs():
            yield from graph.tensors


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words, from its ``st_mode``."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def _open_model_bytes(path: Path) -> tuple[mmap.mmap, int]:
    """Open and map ``path``, turning file-system problems into clear input errors.

    The file is checked with ``stat`` before it is opened: a FIFO or a device is refused, never
    opened (opening a FIFO blocks until a writer appears).
    """
    try:
        info = path.stat()
    except FileNotFoundError as e:
        raise ModelFormatError(path, "no such file") from e
    except PermissionError as e:
        raise ModelFormatError(path, "permission denied") from e
    except (OSError, ValueError) as e:
        raise ModelFormatError(path, f"cannot be read ({_os_problem(e)})") from e
    if stat.S_ISDIR(info.st_mode):
        raise ModelFormatError(path, "is a directory, not an .onnx file")
    if not stat.S_ISREG(info.st_mode):
        raise ModelFormatError(path, f"is {_file_kind(info.st_mode)}, not a regular file")
    if info.st_size == 0:
        raise ModelFormatError(path, "empty file")
    try:
        with path.open("rb") as handle:
            buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except PermissionError as e:
        raise ModelFormatError(path, "permission denied") from e
    except (OSError, ValueError) as e:
        raise ModelFormatError(path, f"cannot be read ({_os_problem(e)})") from e
    return buf, len(buf)


def _close_map(buf: mmap.mmap, *, failing: bool) -> None:
    """Close a memory map; while another error propagates, a view still alive must not hide it.

    Every reader releases its views before returning or raising (``_wire.count_varints``); should a
    view survive in a traceback anyway, the map is left to the garbage collector instead of replacing
    the real error with ``BufferError``. On the success path a live view is our bug and stays loud.
    """
    try:
        buf.close()
    except BufferError:
        if not failing:
            raise


def _os_problem(error: BaseException) -> str:
    """One line for an OS-level failure: the errno text, without the (possibly huge) path."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, ValueError) and "null" in str(error):
        return "the path contains a NUL byte"
    if isinstance(error, RuntimeError):  # pathlib's "Symlink loop" before Python 3.13
        return "symbolic link loop"
    return str(error) or type(error).__name__


def _sniff_non_onnx(buf: mmap.mmap) -> str | None:
    """A one-line diagnosis for common files that are not ONNX, or None."""
    head = buf[:512]
    if head.startswith(_LFS_PREFIX):
        return "is a Git LFS pointer, not the model itself (run `git lfs pull`)"
    if head.startswith(b"PK\x03\x04"):
        return "is a zip archive (a PyTorch checkpoint or .keras file?), not an ONNX model"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "is an HDF5 file (a Keras .h5 model?), not an ONNX model"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "is a text file, not an ONNX model"
    return None


class _NotUtf8Error(Exception):
    """A ``string`` field of onnx.proto holding bytes that are not UTF-8 (``what`` names it)."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(f"{what} (at byte {offset}) is not valid UTF-8")


def _string(buf: mmap.mmap, start: int, end: int, what: str = "a name") -> str:
    """A ``string`` field of onnx.proto, which must be UTF-8.

    One decision for every reader of the file: a name that is not UTF-8 is refused here, so no later
    stage (nor the protobuf skeleton, which would hand such a name over as ``bytes``) sees two kinds
    of name. ``bytes`` fields (an attribute's ``s``) are decoded by :func:`_text` instead.
    """
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _NotUtf8Error(what, start + e.start) from None


def _text(buf: mmap.mmap, start: int, end: int) -> str:
    """A ``bytes`` field shown as text (an attribute's ``s``): any bytes are valid there."""
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _string_pair(
    buf: mmap.mmap, start: int, end: int, what: str = "a key or value"
) -> tuple[str, str]:
    """A ``StringStringEntryProto`` (metadata_props, external_data entries) as (key, value)."""
    key = value = ""
    for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
        if fno == 1 and wt == LEN:
            key = _string(buf, a, b, f"{what} key")
        elif fno == 2 and wt == LEN:
            value = _string(buf, a, b, f"{what} value")
    return key, value


#: The attributes of every node without any (records are frozen: nobody adds to it).
_NO_ATTRIBUTES: dict[str, int | float | str | tuple[int, ...] | tuple[float, ...]] = {}


class _Reader:
    """Walks one mapped file; collects warnings and external-file sizes as it goes."""

    def __init__(self, path: Path, buf: mmap.mmap) -> None:
        self.path = path
        self.buf = buf
        self.folder = path.parent.resolve()
        self.warnings: list[str] = []
        self.external_files: dict[Path, int | None] = {}

    # -- top level ------------------------------------------------------------------------------

    def model(self, size: int) -> ModelFile:
        buf = self.buf
        ir_version = 0
        producer = producer_version = ""
        graph_range: tuple[int, int] | None = None
        opsets: dict[str, int] = {}
        metadata: dict[str, str] = {}
        functions: list[GraphInfo] = []
        for fno, wt, _fs, a, b in _wire.iter_fields(buf, 0, size):
            if fno == _MODEL_IR_VERSION and wt == VARINT:
                ir_version = a
            elif fno == _MODEL_PRODUCER and wt == LEN:
                producer = _string(buf, a, b, "producer_name")
            elif fno == _MODEL_PRODUCER_VERSION and wt == LEN:
                producer_version = _string(buf, a, b, "producer_version")
            elif fno == _MODEL_GRAPH and wt == LEN:
                graph_range = (a, b)
            elif fno == _MODEL_OPSET and wt == LEN:
                domain, version = self._opset(a, b)
                opsets[domain] = version
            elif fno == _MODEL_METADATA and wt == LEN:
                key, value = _string_pair(buf, a, b, "metadata_props")
                metadata[key] = value
            elif fno == _MODEL_FUNCTIONS and wt == LEN:
                functions.append(self._function(a, b))
            elif fno in (_MODEL_GRAPH, _MODEL_OPSET, _MODEL_METADATA, _MODEL_FUNCTIONS):
                raise WireError(f"model field {fno} has wire type {wt}")
        if graph_range is None:
            raise ModelFormatError(self.path, "not an ONNX model (no graph)")
        if ir_version <= 0:
            raise ModelFormatError(self.path, "not an ONNX model (no IR version)")
        if ir_version >= 3 and not opsets:
            raise ModelFormatError(self.path, "no opset_import (truncated or not an ONNX model?)")
        graph = self._graph(*graph_range, path="")
        return ModelFile(
            path=self.path,
            file_nbytes=size,
            ir_version=ir_version,
            opsets=opsets,
            producer_name=producer,
            producer_version=producer_version,
            graph=graph,
            functions=tuple(functions),
            metadata=metadata,
            external_files=dict(self.external_files),
            warnings=tuple(self.warnings),
        )

    def _opset(self, start: int, end: int) -> tuple[str, int]:
        domain, version = "", 0
        for fno, wt, _fs, a, b in _wire.iter_fields(self.buf, start, end):
            if fno == 1 and wt == LEN:
                domain = _string(self.buf, a, b, "opset_import domain")
            elif fno == 2 and wt == VARINT:
                version = a
        return domain, version

    def _function(self, start: int, end: int) -> GraphInfo:
        name = domain = ""
        node_ranges: list[tuple[int, int]] = []
        for fno, wt, _fs, a, b in _wire.iter_fields(self.buf, start, end):
            if fno == _FUNC_NAME and wt == LEN:
                name = _string(self.buf, a, b, "function name")
            elif fno == _FUNC_DOMAIN and wt == LEN:
                domain = _string(self.buf, a, b, "function domain")
            elif fno == _FUNC_NODE and wt == LEN:
                node_ranges.append((a, b))
        path = f"function:{domain}.{name}" if domain else f"function:{name}"
        nodes, tensors = self._nodes(node_ranges, path)
        return GraphInfo(name, path, nodes, tensors, (), (), ())

    # -- graphs and nodes -----------------------------------------------------------------------

    def _graph(self, start: int, end: int, path: str) -> GraphInfo:
        buf = self.buf
        name = ""
        node_ranges: list[tuple[int, int]] = []
        tensors: list[TensorInfo] = []
        inputs: list[ValueInfo] = []
        outputs: list[ValueInfo] = []
        value_info: list[ValueInfo] = []
        for fno, a, b in _wire.len_fields(buf, start, end):
            if fno == _GRAPH_NODE:
                node_ranges.append((a, b))
            elif fno == _GRAPH_NAME:
                name = _string(buf, a, b, "graph name")
            elif fno == _GRAPH_INIT:
                tensors.append(self._tensor(a, b, TensorSource.INITIALIZER, path, None))
            elif fno == _GRAPH_SPARSE_INIT:
                tensors.append(self._sparse(a, b, TensorSource.SPARSE_INITIALIZER, path, None))
            elif fno == _GRAPH_INPUT:
                inputs.append(self._value_info(a, b))
            elif fno == _GRAPH_OUTPUT:
                outputs.append(self._value_info(a, b))
            elif fno == _GRAPH_VALUE_INFO:
                value_info.append(self._value_info(a, b))
        nodes, node_tensors = self._nodes(node_ranges, path)
        return GraphInfo(
            name,
            path,
            nodes,
            tuple(tensors) + node_tensors,
            tuple(inputs),
            tuple(outputs),
            tuple(value_info),
        )

    def _nodes(
        self, ranges: list[tuple[int, int]], path: str
    ) -> tuple[tuple[NodeInfo, ...], tuple[TensorInfo, ...]]:
        nodes: list[NodeInfo] = []
        tensors: list[TensorInfo] = []
        for index, (a, b) in enumerate(ranges):
            node, held = self._node(a, b, path, index)
            nodes.append(node)
            tensors.extend(held)
        return tuple(nodes), tuple(tensors)

    def _node(
        self, start: int, end: int, path: str, index: int
    ) -> tuple[NodeInfo, list[TensorInfo]]:
        buf = self.buf
        inputs: list[str] = []
        outputs: list[str] = []
        name = op_type = domain = ""
        attr_ranges: list[tuple[int, int]] = []
        for fno, a, b in _wire.len_fields(buf, start, end):
            # Edge names interned: a tensor's producer and consumers share one string, and op
            # types one per kind (a 10^6-node graph's record shrank by a third).
            if fno == _NODE_INPUT:
                inputs.append(sys.intern(_string(buf, a, b, "node input name")))
            elif fno == _NODE_OUTPUT:
                outputs.append(sys.intern(_string(buf, a, b, "node output name")))
            elif fno == _NODE_NAME:
                name = _string(buf, a, b, "node name")
            elif fno == _NODE_OP:
                op_type = sys.intern(_string(buf, a, b, "node op_type"))
            elif fno == _NODE_DOMAIN:
                domain = sys.intern(_string(buf, a, b, "node domain"))
            elif fno == _NODE_ATTR:
                attr_ranges.append((a, b))
        label = name or f"{op_type}_{index}"
        attributes: dict[str, int | float | str | tuple[int, ...] | tuple[float, ...]] = {}
        subgraphs: list[GraphInfo] = []
        tensors: list[TensorInfo] = []
        is_constant = op_type == "Constant" and domain in ("", "ai.onnx")
        for a, b in attr_ranges:
            self._attribute(
                a,
                b,
                path=path,
                label=label,
                constant_name=outputs[0] if is_constant and outputs else None,
                attributes=attributes,
                subgraphs=subgraphs,
                tensors=tensors,
            )
        node = NodeInfo(
            name,
            op_type,
            domain,
            tuple(inputs),
            tuple(outputs),
            path,
            attributes or _NO_ATTRIBUTES,  # one shared empty dict: most nodes have none
            tuple(subgraphs),
        )
        return node, tensors

    def _attribute(
        self,
        start: int,
        end: int,
        *,
        path: str,
        label: str,
        constant_name: str | None,
        attributes: dict[str, int | float | str | tuple[int, ...] | tuple[float, ...]],
        subgraphs: list[GraphInfo],
        tensors: list[TensorInfo],
    ) -> None:
        buf = self.buf
        fields = list(_wire.iter_fields(buf, start, end))
        name = next(
            (_string(buf, a, b) for fno, wt, _f, a, b in fields if fno == _ATTR_NAME and wt == LEN),
            "",
        )
        tensor_name = constant_name if constant_name is not None else f"{label}:{name}"
        source = TensorSource.CONSTANT_NODE if constant_name is not None else TensorSource.ATTRIBUTE
        floats: list[float] = []
        ints: list[int] = []
        num_strings = 0
        strings_nbytes = 0
        graphs_seen = 0
        for fno, wt, _fs, a, b in fields:
            if fno == _ATTR_F and wt == FIXED32:
                attributes[name] = _unpack_float(buf, a)
            elif fno == _ATTR_I and wt == VARINT:
                attributes[name] = _wire.to_int64(a)
            elif fno == _ATTR_S and wt == LEN:
                if b - a <= 256:
                    attributes[name] = _text(buf, a, b)
                strings_nbytes += b - a
            elif fno in (_ATTR_T, _ATTR_TENSORS) and wt == LEN:
                tensors.append(self._tensor(a, b, source, path, tensor_name))
            elif fno in (_ATTR_SPARSE, _ATTR_SPARSES) and wt == LEN:
                tensors.append(self._sparse(a, b, source, path, tensor_name))
            elif fno == _ATTR_G and wt == LEN:
                subgraphs.append(self._graph(a, b, path=_join(path, f"{label}.{name}")))
            elif fno == _ATTR_GRAPHS and wt == LEN:
                # One path per graph of the list, as graph_analysis.shapes names them.
                suffix = f"{label}.{name}[{graphs_seen}]"
                subgraphs.append(self._graph(a, b, path=_join(path, suffix)))
                graphs_seen += 1
            elif fno == _ATTR_FLOATS:
                floats.extend(_read_floats(buf, wt, a, b))
            elif fno == _ATTR_INTS:
                ints.extend(_read_ints(buf, wt, a, b))
            elif fno == _ATTR_STRINGS and wt == LEN:
                num_strings += 1
                strings_nbytes += b - a
        if floats:
            attributes[name] = tuple(floats)
        if ints:
            attributes[name] = tuple(ints)
        if constant_name is None:
            return
        # Constant's scalar/list forms hold values in the attribute itself.
        value: tuple[DataType, tuple[int, ...], int] | None = None
        if name == "value_float":
            value = (DataType.FLOAT, (), 4)
        elif name == "value_floats":
            value = (DataType.FLOAT, (len(floats),), 4 * len(floats))
        elif name == "value_int":
            value = (DataType.INT64, (), 8)
        elif name == "value_ints":
            value = (DataType.INT64, (len(ints),), 8 * len(ints))
        elif name == "value_string":
            value = (DataType.STRING, (), strings_nbytes)
        elif name == "value_strings":
            value = (DataType.STRING, (num_strings,), strings_nbytes)
        if value is not None:
            data_type, dims, stored = value
            tensors.append(
                TensorInfo(constant_name, data_type, dims, math.prod(dims), source, path, stored)
            )

    # -- tensors --------------------------------------------------------------------------------

    def _tensor(
        self, start: int, end: int, source: TensorSource, graph: str, edge_name: str | None
    ) -> TensorInfo:
        """Read one TensorProto; ``edge_name`` (when not None) names it instead of its own name.

        A tensor held in an attribute is known to the graph by its holder: a Constant node's output
        (the name the graph's edges use), or ``<node>:<attribute>``. Its own ``name`` field need not
        match (``onnx.inliner`` prefixes outputs, not attribute tensor names), so it is ignored.
        Initializers are named by their own ``name``: that is the edge name.
        """
        buf = self.buf
        dims: list[int] = []
        raw_value = -1
        name = ""
        raw: tuple[int, int] | None = None
        typed_counts: dict[int, int] = {}
        typed_ranges: dict[int, list[tuple[int, int, int]]] = {}
        external_entries: dict[str, str] = {}
        location = 0
        has_segment = False
        for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
            if fno == _T_DIMS:
                dims.extend(_read_ints(buf, wt, a, b))
            elif fno == _T_DTYPE and wt == VARINT:
                raw_value = a
            elif fno == _T_NAME and wt == LEN:
                name = _string(buf, a, b)
            elif fno == _T_RAW and wt == LEN:
                raw = (a, b)
            elif fno in _TYPED_FIELDS:
                typed_counts[fno] = typed_counts.get(fno, 0) + _count_typed(buf, fno, wt, a, b)
                typed_ranges.setdefault(fno, []).append((wt, a, b))
            elif fno == _T_EXTERNAL and wt == LEN:
                key, value = _string_pair(buf, a, b, "external_data")
                external_entries[key] = value
            elif fno == _T_LOCATION and wt == VARINT:
                location = a
            elif fno == _T_SEGMENT:
                has_segment = True
        if edge_name is not None:
            name = edge_name
        what = f"tensor {name!r}"
        data_type = DataType.from_value(raw_value)
        if data_type is None or data_type == DataType.UNDEFINED:
            raise CorruptTensorError(self.path, f"{what} has unknown data type {raw_value}")
        if has_segment:
            self.warnings.append(
                f"{what} is a segment of a larger tensor; only this segment is counted"
            )
        if any(d < 0 for d in dims):
            raise CorruptTensorError(self.path, f"{what} has a negative dim {tuple(dims)}")
        shape = tuple(dims)
        numel = math.prod(shape)
        need = nbytes(data_type, numel)
        payload: PayloadRef | None = None
        external: ExternalRef | None = None
        if location == _LOCATION_EXTERNAL or external_entries:
            external = self._external(name, external_entries, data_type, numel)
            stored = external.length
            if external.exists:
                payload = PayloadRef(external.path, external.offset, external.length, Encoding.RAW)
        elif raw is not None:
            stored = raw[1] - raw[0]
            if data_type == DataType.STRING:
                raise CorruptTensorError(self.path, f"{what}: STRING tensors cannot use raw_data")
            if stored != need:
                raise CorruptTensorError(
                    self.path,
                    f"{what} stores {stored} bytes but dims {list(shape)} of {data_type.name} need {need}",
                )
            payload = PayloadRef(self.path, raw[0], stored, Encoding.RAW)
        else:
            stored, payload = self._typed_payload(
                what, data_type, numel, typed_counts, typed_ranges
            )
        return TensorInfo(name, data_type, shape, numel, source, graph, stored, payload, external)

    def _typed_payload(
        self,
        what: str,
        data_type: DataType,
        numel: int,
        counts: dict[int, int],
        ranges: dict[int, list[tuple[int, int, int]]],
    ) -> tuple[int, PayloadRef | None]:
        expected_field, expected_count = _typed_expectation(data_type, numel)
        got = counts.get(expected_field, 0)
        others = {f for f in counts if f != expected_field and counts[f]}
        if others or got != expected_count:
            if not counts or sum(counts.values()) == 0:
                detail = "stores no data"
            else:
                detail = f"stores {sum(counts.values())} values"
            raise CorruptTensorError(
                self.path,
                f"{what}: {data_type.name} with {numel:,} elements needs {expected_count:,} "
                f"values but {detail}",
            )
        field_ranges = ranges.get(expected_field, [])
        stored = sum(b - a for _wt, a, b in field_ranges)
        if len(field_ranges) == 1 and field_ranges[0][0] == LEN and expected_field != _T_STRING:
            _wt, a, b = field_ranges[0]
            encoding = Encoding.FIXED if expected_field in _FIXED_WIDTH else Encoding.VARINT
            return stored, PayloadRef(self.path, a, b - a, encoding)
        return stored, None

    def _external(
        self, name: str, entries: dict[str, str], data_type: DataType, numel: int
    ) -> ExternalRef:
        what = f"tensor {_shorten(name)!r}"
        location = entries.get("location", "")
        if not location:
            raise ExternalDataError(self.path, f"{what} is external but names no location")
        try:
            offset = int(entries.get("offset", "0") or "0")
            length_text = entries.get("length")
            length = int(length_text) if length_text not in (None, "") else None
        except ValueError as e:
            raise ExternalDataError(
                self.path, f"{what}: external offset/length is not a number"
            ) from e
        if offset < 0 or (length is not None and length < 0):
            raise ExternalDataError(self.path, f"{what}: negative external offset or length")
        if data_type == DataType.STRING:
            raise CorruptTensorError(
                self.path, f"{what}: STRING tensors cannot be stored externally"
            )
        need = nbytes(data_type, numel)
        if length is not None and length != need:
            raise CorruptTensorError(
                self.path,
                f"{what}: external length {length} but dims of {data_type.name} need {need} bytes",
            )
        target = self._resolve_external(what, location)
        if target in self.external_files:
            size = self.external_files[target]
        else:
            size = self._external_size(what, location, target)
            self.external_files[target] = size
            if size is None:
                self.warnings.append(
                    f"external data file {location!r} is missing: sizes come from the declared dims"
                )
        if size is not None and offset + need > size:
            raise ExternalDataError(
                self.path,
                f"{what}: external file {location!r} has {size} bytes, "
                f"too short for {need} bytes at offset {offset}",
            )
        return ExternalRef(location, target, offset, need, size is not None)

    def _resolve_external(self, what: str, location: str) -> Path:
        """Resolve an external location, refusing anything that leaves the model's folder.

        Any OS failure while resolving (a NUL byte, a name too long, a symbolic link loop) is bad
        input, reported as an :class:`ExternalDataError` naming the tensor.
        """
        shown = _shorten(location)
        if "\x00" in location:
            raise ExternalDataError(
                self.path, f"{what}: external path {shown!r} contains a NUL byte"
            )
        pure = location.replace("\\", "/")
        if pure.startswith("/") or os.path.isabs(location) or (len(pure) > 1 and pure[1] == ":"):
            raise ExternalDataError(self.path, f"{what}: absolute external path {shown!r} refused")
        if ".." in pure.split("/"):
            raise ExternalDataError(
                self.path, f"{what}: external path {shown!r} leaves the model folder"
            )
        try:
            target = (self.folder / pure).resolve()
        except (OSError, RuntimeError, ValueError) as e:
            raise ExternalDataError(
                self.path, f"{what}: external path {shown!r} cannot be resolved ({_os_problem(e)})"
            ) from e
        if target != self.folder and self.folder not in target.parents:
            raise ExternalDataError(
                self.path, f"{what}: external path {shown!r} resolves outside the model folder"
            )
        return target

    def _external_size(self, what: str, location: str, target: Path) -> int | None:
        """The size of a resolved external data file, None when it does not exist.

        Only ``stat`` is used: a FIFO, device or directory is refused without being opened.
        """
        shown = _shorten(location)
        try:
            info = target.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as e:
            raise ExternalDataError(
                self.path, f"{what}: external data file {shown!r} cannot be read ({_os_problem(e)})"
            ) from e
        if not stat.S_ISREG(info.st_mode):
            raise ExternalDataError(
                self.path,
                f"{what}: external data file {shown!r} is {_file_kind(info.st_mode)}, "
                "not a regular file",
            )
        return info.st_size

    def _sparse(
        self, start: int, end: int, source: TensorSource, graph: str, edge_name: str | None
    ) -> TensorInfo:
        values: TensorInfo | None = None
        indices: TensorInfo | None = None
        dims: list[int] = []
        for fno, wt, _fs, a, b in _wire.iter_fields(self.buf, start, end):
            if fno == _SPARSE_VALUES and wt == LEN:
                values = self._tensor(a, b, source, graph, edge_name)
            elif fno == _SPARSE_INDICES and wt == LEN:
                indices_name = None if edge_name is None else f"{edge_name}:indices"
                indices = self._tensor(a, b, source, graph, indices_name)
            elif fno == _SPARSE_DIMS:
                dims.extend(_read_ints(self.buf, wt, a, b))
        if values is None:
            raise CorruptTensorError(self.path, f"sparse tensor {edge_name or ''!r} has no values")
        what = f"sparse tensor {values.name!r}"
        if any(d < 0 for d in dims):
            raise CorruptTensorError(self.path, f"{what} has a negative dim {tuple(dims)}")
        numel = math.prod(dims)
        nnz = values.num_elements
        if nnz > numel:
            raise CorruptTensorError(self.path, f"{what} stores {nnz} values for {numel} elements")
        if indices is not None and indices.num_elements not in (nnz, nnz * len(dims)):
            raise CorruptTensorError(
                self.path, f"{what}: {indices.num_elements} indices for {nnz} values"
            )
        stored = values.stored_nbytes + (indices.stored_nbytes if indices else 0)
        return TensorInfo(
            values.name, values.data_type, tuple(dims), numel, source, graph, stored, nnz=nnz
        )

    def _value_info(self, start: int, end: int) -> ValueInfo:
        buf = self.buf
        name = ""
        elem: DataType | None = None
        shape: tuple[int | str | None, ...] | None = None
        for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
            if fno == 1 and wt == LEN:
                name = _string(buf, a, b, "value_info name")
            elif fno == 2 and wt == LEN:
                elem, shape = self._type(a, b)
        return ValueInfo(name, elem, shape)

    def _type(
        self, start: int, end: int
    ) -> tuple[DataType | None, tuple[int | str | None, ...] | None]:
        buf = self.buf
        for fno, wt, _fs, a, b in _wire.iter_fields(buf, start, end):
            if fno in (1, 8) and wt == LEN:  # tensor_type, sparse_tensor_type
                elem: DataType | None = None
                shape: tuple[int | str | None, ...] | None = None
                for f2, w2, _f, a2, b2 in _wire.iter_fields(buf, a, b):
                    if f2 == 1 and w2 == VARINT:
                        elem = DataType.from_value(a2)
                    elif f2 == 2 and w2 == LEN:
                        shape = tuple(
                            self._dim(a3, b3)
                            for f3, w3, _f3, a3, b3 in _wire.iter_fields(buf, a2, b2)
                            if f3 == 1 and w3 == LEN
                        )
                return elem, shape
        return None, None

    def _dim(self, start: int, end: int) -> int | str | None:
        for fno, wt, _fs, a, b in _wire.iter_fields(self.buf, start, end):
            if fno == 1 and wt == VARINT:
                return _wire.to_int64(a)
            if fno == 2 and wt == LEN:
                return _string(self.buf, a, b, "dim_param")
        return None


def _shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters for a one-line message (a location can be megabytes)."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _join(parent: str, child: str) -> str:
    return f"{parent}/{child}" if parent else child


def _unpack_float(buf: mmap.mmap, pos: int) -> float:
    import struct

    value: float = struct.unpack("<f", bytes(buf[pos : pos + 4]))[0]
    return value


def _read_floats(buf: mmap.mmap, wt: int, a: int, b: int) -> list[float]:
    import struct

    if wt == FIXED32:
        return [_unpack_float(buf, a)]
    if wt == LEN:
        count = (b - a) // 4
        return list(struct.unpack(f"<{count}f", bytes(buf[a : a + 4 * count])))
    return []


def _read_ints(buf: mmap.mmap, wt: int, a: int, b: int) -> list[int]:
    if wt == VARINT:
        return [_wire.to_int64(a)]
    if wt == LEN:
        out = []
        pos = a
        while pos < b:
            value, pos = _wire.read_varint(buf, pos, b)
            out.append(_wire.to_int64(value))
        return out
    return []


def _count_typed(buf: mmap.mmap, fno: int, wt: int, a: int, b: int) -> int:
    """How many values one occurrence of a typed data field holds (packed or not)."""
    if fno == _T_STRING:
        return 1 if wt == LEN else 0
    width = _FIXED_WIDTH.get(fno)
    if width is not None:
        if wt == LEN:
            if (b - a) % width:
                raise WireError(f"packed field of {b - a} bytes is not a multiple of {width}")
            return (b - a) // width
        return 1 if wt in (FIXED32, FIXED64) else 0
    if wt == LEN:
        return _wire.count_varints(buf, a, b)
    return 1 if wt == VARINT else 0


def _typed_expectation(data_type: DataType, numel: int) -> tuple[int, int]:
    """(field number, value count) that onnx.proto prescribes for ``numel`` elements."""
    if data_type == DataType.FLOAT:
        return _T_FLOAT, numel
    if data_type == DataType.COMPLEX64:
        return _T_FLOAT, 2 * numel
    if data_type == DataType.DOUBLE:
        return _T_DOUBLE, numel
    if data_type == DataType.COMPLEX128:
        return _T_DOUBLE, 2 * numel
    if data_type == DataType.INT64:
        return _T_INT64, numel
    if data_type in (DataType.UINT32, DataType.UINT64):
        return _T_UINT64, numel
    if data_type == DataType.STRING:
        return _T_STRING, numel
    bits = bitwidth(data_type)
    if bits == 4:
        return _T_INT32, (numel + 1) // 2
    if bits == 2:
        return _T_INT32, (numel + 3) // 4
    return _T_INT32, numel


def read_model(path: str | os.PathLike[str]) -> ModelFile:
    """Read and validate an ONNX file's structure without loading any tensor payload.

    Args:
        path: the ``.onnx`` file; external data files are looked up relative to its folder.

    Returns:
        The read model: graphs, nodes, tensors (name, dtype, dims, storage), metadata.

    Raises:
        ModelFormatError: not a file, empty, not ONNX, truncated or malformed protobuf.
        CorruptTensorError: a payload that does not match its dims x data type, unknown data type.
        ExternalDataError: external data outside the model folder, too short, bad offset or length.
    """
    model_path = Path(path)
    buf, size = _open_model_bytes(model_path)
    failing = True
    try:
        sniffed = _sniff_non_onnx(buf)
        if sniffed and not buf[:1] == b"\x08":
            raise ModelFormatError(model_path, sniffed)
        try:
            with gc_paused():
                model = _Reader(model_path, buf).model(size)
        except WireError as e:
            raise ModelFormatError(
                model_path, sniffed or f"not a valid ONNX file (truncated or corrupt: {e})"
            ) from e
        except RecursionError as e:
            raise ModelFormatError(model_path, "subgraphs nested too deeply") from e
        except _NotUtf8Error as e:
            raise ModelFormatError(model_path, f"{e} (ONNX strings must be UTF-8)") from e
        failing = False
        return model
    finally:
        _close_map(buf, failing=failing)


def require_external_data(model: ModelFile) -> None:
    """Refuse a model whose external data files are missing, for operations that read the weights.

    :func:`read_model` accepts a missing external file with a warning (sizes come from the declared
    dims, which is enough to count and estimate); running or rewriting the model needs the bytes.
    Files that exist but are not regular files never get here: :func:`read_model` refuses them.

    Raises:
        ExternalDataError: the first missing external data file, by name.
    """
    folder = model.path.parent.resolve()
    missing = sorted(
        os.path.relpath(path, folder) for path, size in model.external_files.items() if size is None
    )
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ExternalDataError(
            model.path,
            f"external data file {_shorten(missing[0])!r} is missing{more}; "
            "this operation needs the weights",
        )


# -- skeleton -----------------------------------------------------------------------------------

# Which fields of which message hold messages we must descend into to find tensors.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {_MODEL_GRAPH: "graph", _MODEL_TRAINING: "training", _MODEL_FUNCTIONS: "function"},
    "training": {_TRAIN_INIT: "graph", _TRAIN_ALGO: "graph"},
    "function": {_FUNC_NODE: "node"},
    "graph": {_GRAPH_NODE: "node", _GRAPH_INIT: "tensor", _GRAPH_SPARSE_INIT: "sparse"},
    "node": {_NODE_ATTR: "attribute"},
    "attribute": {
        _ATTR_T: "tensor",
        _ATTR_TENSORS: "tensor",
        _ATTR_G: "graph",
        _ATTR_GRAPHS: "graph",
        _ATTR_SPARSE: "sparse",
        _ATTR_SPARSES: "sparse",
    },
    "sparse": {_SPARSE_VALUES: "tensor", _SPARSE_INDICES: "tensor"},
}
#: NodeProto fields read_model reads (and so has checked) or that need no check (doc_string).
_PLAIN_NODE_FIELDS = frozenset({_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP, _NODE_DOMAIN, 6})
_PAYLOAD_FIELDS = frozenset({*_TYPED_FIELDS, _T_RAW, _T_EXTERNAL, _T_LOCATION})


def _key(field_number: int, wire_type: int) -> bytes:
    return _wire.encode_varint(field_number << 3 | wire_type)


class _Stripper:
    def __init__(self, path: Path, buf: mmap.mmap, keep_max_elements: int) -> None:
        self.buf = buf
        self.keep = keep_max_elements
        self.path = path
        # Validates the external tensors it inlines, also those of parts read_model does not walk
        # (training_info graphs): location, offset, length and file kind, exactly as read_model.
        self.reader = _Reader(path, buf)
        self.descriptors = _descriptors()

    def message(self, start: int, end: int, kind: str, validated: bool = True) -> bytes | bytearray:
        """The skeleton of the message ``buf[start:end]`` of ``kind``. ``validated``: it lies in
        a part :func:`read_model` walks (all but training_info), so the names it read are UTF-8."""
        if kind == "tensor":
            return self.tensor(start, end)
        children = _CHILDREN[kind]
        descriptor = self.descriptors[kind]
        inner = validated and kind != "training"
        out = bytearray()
        for fno, wt, fs, a, b in _wire.iter_fields(self.buf, start, end):
            child = children.get(fno)
            if child == "node" and wt == LEN and inner and self._plain_node(a, b):
                out += self.buf[fs:b]  # verbatim, key and length included
            elif child is not None and wt == LEN:
                # appended in parts: a 10^6-node graph's bytes are 65 MB, and every whole copy
                # of them (a concatenated field, the final bytes) raised the peak
                payload = self.message(a, b, child, inner)
                out += _key(fno, LEN)
                out += _wire.encode_varint(len(payload))
                out += payload
                del payload
            else:
                if wt == LEN:
                    self.check_utf8(descriptor, fno, a, b)
                out += self.buf[fs:b]
        return out

    def _plain_node(self, start: int, end: int) -> bool:
        """True for a node without attributes or fields read_model does not check (copied as is:
        most nodes of a large graph; 10^6 of them took 15 s through the general walk)."""
        return all(
            fno in _PLAIN_NODE_FIELDS for fno, _a, _b in _wire.len_fields(self.buf, start, end)
        )

    def check_utf8(self, descriptor: Any, fno: int, start: int, end: int) -> None:
        """Refuse a ``string`` field that is not UTF-8 in a part copied verbatim into the skeleton.

        protobuf would hand such a field over as ``bytes``; read_model refuses the fields it reads,
        this covers the rest (function signatures, doc strings, annotations), by onnx.proto's schema.
        """
        field_descriptor = descriptor.fields_by_number.get(fno)
        if field_descriptor is None or field_descriptor.name == "doc_string":
            return  # prose nobody reads; refusing a model for its comments would help no one
        if field_descriptor.type == field_descriptor.TYPE_STRING:
            _string(self.buf, start, end, f"{descriptor.name}.{field_descriptor.name}")
        elif field_descriptor.type == field_descriptor.TYPE_MESSAGE:
            inner = field_descriptor.message_type
            for f2, w2, _fs, a2, b2 in _wire.iter_fields(self.buf, start, end):
                if w2 == LEN:
                    self.check_utf8(inner, f2, a2, b2)

    def tensor(self, start: int, end: int) -> bytes:
        dims: list[int] = []
        has_external = False
        for fno, wt, _fs, a, b in _wire.iter_fields(self.buf, start, end):
            if fno == _T_DIMS:
                dims.extend(_read_ints(self.buf, wt, a, b))
            elif fno == _T_EXTERNAL and wt == LEN:
                has_external = True
        numel = math.prod(dims)
        descriptor = self.descriptors["tensor"]
        inline_external = has_external and numel <= self.keep
        if numel <= self.keep and not inline_external:
            for fno, wt, _fs, a, b in _wire.iter_fields(self.buf, start, end):
                if wt == LEN and fno != _T_RAW:
                    self.check_utf8(descriptor, fno, a, b)
            return bytes(self.buf[start:end])
        out = bytearray()
        for fno, wt, fs, a, b in _wire.iter_fields(self.buf, start, end):
            if fno not in _PAYLOAD_FIELDS:
                if wt == LEN:
                    self.check_utf8(descriptor, fno, a, b)
                out += self.buf[fs:b]
        if inline_external:
            out += _wire.len_field(_T_RAW, self._read_external(start, end))
        else:
            entry = _wire.len_field(1, b"location") + _wire.len_field(2, _STUB_LOCATION.encode())
            out += _wire.len_field(_T_EXTERNAL, entry)
            out += _key(_T_LOCATION, VARINT) + _wire.encode_varint(_LOCATION_EXTERNAL)
        return bytes(out)

    def _read_external(self, start: int, end: int) -> bytes:
        """The payload of the small external tensor in ``buf[start:end]`` (zeros when missing)."""
        info = self.reader._tensor(start, end, TensorSource.INITIALIZER, "", "")
        ref = info.external
        if ref is None:  # data_location says external but the reader found a typed payload
            return b""
        if not ref.exists:
            return b"\x00" * ref.length
        return _read_regular_file(self.path, ref.path, ref.offset, ref.length)


def _descriptors() -> dict[str, Any]:
    """onnx.proto's message descriptors for the kinds the stripper walks."""
    import onnx

    return {
        "model": onnx.ModelProto.DESCRIPTOR,
        "training": onnx.TrainingInfoProto.DESCRIPTOR,
        "function": onnx.FunctionProto.DESCRIPTOR,
        "graph": onnx.GraphProto.DESCRIPTOR,
        "node": onnx.NodeProto.DESCRIPTOR,
        "attribute": onnx.AttributeProto.DESCRIPTOR,
        "sparse": onnx.SparseTensorProto.DESCRIPTOR,
        "tensor": onnx.TensorProto.DESCRIPTOR,
    }


def _read_regular_file(model_path: Path, path: Path, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of ``path``, which must still be a regular file.

    Opened non-blocking and checked with ``fstat`` after opening: a file swapped for a FIFO since
    it was checked is refused instead of blocking the process.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as e:
        raise ExternalDataError(
            model_path, f"external data file {path.name!r} cannot be read ({_os_problem(e)})"
        ) from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ExternalDataError(
                model_path,
                f"external data file {path.name!r} is {_file_kind(mode)}, not a regular file",
            )
        data = os.pread(fd, length, offset)
    except OSError as e:
        raise ExternalDataError(
            model_path, f"external data file {path.name!r} cannot be read ({_os_problem(e)})"
        ) from e
    finally:
        os.close(fd)
    if len(data) != length:
        raise ExternalDataError(
            model_path, f"external data file {path.name!r} became shorter while it was read"
        )
    return data


def load_skeleton(
    path: str | os.PathLike[str] | ModelFile, *, keep_max_elements: int = 1024
) -> onnx.ModelProto:
    """Load the model as an ``onnx.ModelProto`` without its large weights.

    Tensors with more than ``keep_max_elements`` elements keep name, data type and dims, but their
    payload is replaced by an external-data stub (location ``modelsize-stripped-payload``) that nothing
    should read; smaller tensors (shape constants, scalars) keep their values, external ones inlined.
    Memory and time depend on the graph's structure, not its weights. The file is validated exactly as
    by :func:`read_model`; given the :class:`ModelFile` already read, the skeleton is derived from
    that reading.

    Raises:
        Same as :func:`read_model`.
    """
    model = path if isinstance(path, ModelFile) else read_model(path)
    return parse_skeleton(skeleton_bytes(model, keep_max_elements=keep_max_elements), model.path)


def skeleton_bytes(model: ModelFile | Path, *, keep_max_elements: int = 1024) -> bytes | bytearray:
    """The serialized skeleton of :func:`load_skeleton` (parse it with :func:`parse_skeleton`).

    ``model`` is the record :func:`read_model` made of the file, or the file's path once it has
    (only the path is read: a caller may drop the record first, as it is validated by then).

    Raises:
        Same as :func:`read_model`.
    """
    path = model.path if isinstance(model, ModelFile) else model
    buf, size = _open_model_bytes(path)
    failing = True
    try:
        data = _Stripper(path, buf, keep_max_elements).message(0, size, "model")
        failing = False
    except WireError as e:  # parts read_model does not walk (training_info) may still be damaged
        raise ModelFormatError(path, f"not a valid ONNX file (corrupt: {e})") from e
    except RecursionError as e:
        raise ModelFormatError(path, "subgraphs nested too deeply") from e
    except _NotUtf8Error as e:
        raise ModelFormatError(path, f"{e} (ONNX strings must be UTF-8)") from e
    finally:
        _close_map(buf, failing=failing)
    return data


def parse_skeleton(data: bytes | bytearray, path: Path) -> onnx.ModelProto:
    """:func:`skeleton_bytes` as an ``onnx.ModelProto`` (``path`` names the file in errors)."""
    import onnx
    from google.protobuf.message import DecodeError

    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:  # read_model accepted it, so this would be our bug or a protobuf limit
        raise ModelFormatError(path, f"protobuf refused the model structure ({e})") from e
    return proto
