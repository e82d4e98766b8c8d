"""The stored tensors as the estimates see them: one reading (``loading``), one classification
(``params``), handed over as frozen records.

Nothing downstream re-finds weights on a protobuf: the shapes of stored tensors, liveness, the memory
estimate, the training split and quantization's makeup and float-weight list take a
:class:`ModelWeights`; the comparison's census is the report's. The data flows one way:
read -> classify -> (shapes, liveness) -> estimates -> render.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

from graph_analysis._graph import NodeTable, lazy_skeleton
from graph_analysis.analysis import analyze, build_report
from graph_analysis.dtypes import DataType, is_floating
from graph_analysis.loading import (
    ModelFile,
    TensorSource,
    parse_skeleton,
    read_model,
    skeleton_bytes,
)
from graph_analysis.params import classify_model
from graph_analysis.report import ModelReport, Role

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ModelWeights",
    "StoredWeight",
    "WeightCensus",
    "file_bytes",
    "graph_scope",
    "read_weights",
    "weight_census",
]

#: Where onnxruntime holds a tensor as an initializer: graph initializers and Constant nodes. A tensor
#: inside another op's attribute (ConstantOfShape's value) stays part of that node.
_HELD_AS_INITIALIZER = frozenset(
    {TensorSource.INITIALIZER, TensorSource.SPARSE_INITIALIZER, TensorSource.CONSTANT_NODE}
)


def graph_scope(path: str) -> str:
    """The graph path of the read model (``If_3.then_branch``) in the form shapes and liveness
    use (``/If_3.then_branch``; the main graph is ``""`` in both)."""
    return f"/{path}" if path else ""


def enclosing_scopes(graph: str) -> Iterator[str]:
    """``graph`` (a path in the :func:`graph_scope` form) and each graph enclosing it, innermost
    first, the main graph (``""``) last: where a name used in ``graph`` may be defined, since
    subgraphs see their outer scopes' names."""
    yield graph
    while graph:
        graph = graph.rsplit("/", 1)[0]
        yield graph


@dataclass(frozen=True)
class StoredWeight:
    """One stored tensor of the main graph or a subgraph, as the estimates receive it.

    Attributes:
        graph: the graph path in the shapes/liveness form (:func:`graph_scope`).
        name: the name the graph's edges use.
        data_type: element type.
        dims: dense shape.
        num_elements: dense element count (sparse tensors are densified by onnxruntime at load).
        nbytes: dense bytes, elements x bit width (sub-byte types packed).
        role: its role under the one classification rule (docs/counting.md).
        external: stored in an external data file.
        readers: ``(op_type, input_index)`` of every node reading it, outer-scope reads resolved.
        nested_readers: op types of the readers that sit in a nested subgraph (reading it from
            an outer scope).
    """

    graph: str
    name: str
    data_type: DataType
    dims: tuple[int, ...]
    num_elements: int
    nbytes: int
    role: Role
    external: bool
    readers: tuple[tuple[str, int], ...]
    nested_readers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelWeights:
    """Every tensor onnxruntime holds as an initializer, and the training split of the parameters.

    Built by :func:`read_weights` from the one reading. A model-local function's tensors are listed
    once, under the graph ``/function:<domain>.<name>`` (as the report counts them), although
    onnxruntime inlines one copy per call.

    Attributes:
        tensors: the stored tensors of the main graph, every subgraph and every function body, in
            reading order.
        trainable_parameters: elements of floating ``parameter`` tensors (each tied copy once),
            except those the framework's record marks frozen.
        largest_trainable: elements of the largest of those.
        frozen_bytes: dense bytes of every other used tensor (running statistics, constants,
            integer weights), copies once.
    """

    tensors: tuple[StoredWeight, ...]
    trainable_parameters: int
    largest_trainable: int
    frozen_bytes: int

    @cached_property
    def _names(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {}
        for t in self.tensors:
            found.setdefault(t.graph, set()).add(t.name)
        return {graph: frozenset(names) for graph, names in found.items()}

    def names_in(self, graph: str) -> frozenset[str]:
        """Names of the tensors stored in ``graph`` itself (not its outer scopes)."""
        return self._names.get(graph, frozenset())

    def visible_in(self, graph: str) -> frozenset[str]:
        """Names of stored tensors visible in ``graph``: its own and its outer scopes'."""
        return frozenset().union(*(self.names_in(scope) for scope in enclosing_scopes(graph)))

    def scalars_in(self, graph: str) -> frozenset[str]:
        """Stored tensors of at most one element visible in ``graph`` (never trained)."""
        return frozenset(t.name for t in self._visible_records(graph) if t.num_elements <= 1)

    def _visible_records(self, graph: str) -> Iterator[StoredWeight]:
        scopes = set(enclosing_scopes(graph))
        return (t for t in self.tensors if t.graph in scopes)


def _split(report: ModelReport) -> tuple[int, int, int]:
    """Trainable elements, largest trainable tensor, frozen bytes, from the classification.

    Copies of one parameter (tied weights recorded by the exporter, external aliases) count once;
    unused tensors get no gradient and runtimes drop them. When the file carries the framework's
    record (``modelsize convert``), a parameter it marks frozen (``requires_grad=False``, a Keras
    layer with ``trainable=False``) is a frozen buffer: the record decides.
    """
    trainable = largest = frozen = 0
    for record in report.tensors:
        if record.duplicate_of is not None or record.role is Role.UNUSED:
            continue
        data_type = DataType.__members__.get(record.data_type)
        if (
            record.role is Role.PARAMETER
            and data_type is not None
            and is_floating(data_type)
            and record.trainable is not False
        ):
            trainable += record.num_elements
            largest = max(largest, record.num_elements)
        else:
            frozen += record.nbytes
    return trainable, largest, frozen


def model_weights(model: ModelFile) -> tuple[ModelWeights, ModelReport]:
    """The weights of an already-read model, and its report (both from one classification)."""
    classified = classify_model(model)
    report = build_report(model, classified=classified)
    tensors = tuple(
        StoredWeight(
            graph=graph_scope(c.tensor.graph),
            name=c.tensor.name,
            data_type=c.tensor.data_type,
            dims=c.tensor.dims,
            num_elements=c.tensor.num_elements,
            nbytes=c.tensor.nbytes,
            role=c.role,
            external=c.tensor.external is not None,
            readers=tuple((u.node.op_type, u.index) for u in c.uses if u.node is not None),
            nested_readers=tuple(
                u.node.op_type
                for u in c.uses
                if u.node is not None and u.node.graph != c.tensor.graph
            ),
        )
        for c in classified
        if c.tensor.source in _HELD_AS_INITIALIZER
    )
    trainable, largest, frozen = _split(report)
    return ModelWeights(tensors, trainable, largest, frozen), report


def read_weights(model: str | os.PathLike[str] | onnx.ModelProto | ModelFile) -> ModelWeights:
    """The weights of a model file, of its :class:`ModelFile` already read, or of an in-memory
    model (written once to a temporary file: the loader reads files only).

    Raises:
        ModelFormatError, CorruptTensorError, ExternalDataError: as :func:`read_model`.
    """
    if isinstance(model, ModelFile):
        return model_weights(model)[0]
    if isinstance(model, (str, os.PathLike)):
        return model_weights(read_model(model))[0]
    import onnx

    # The loader reads files only (memory-mapped, validated): an in-memory model is written out once.
    with tempfile.TemporaryDirectory(prefix="modelsize-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        return model_weights(read_model(path))[0]


class Reading(NamedTuple):
    """One reading of a model file, in the forms the estimates consume.

    Attributes:
        stored: its weights.
        skeleton: its weight-free skeleton (for shape inference and the graph walks).
        table: the main graph's nodes as integer tables, in the skeleton's node order.
    """

    stored: ModelWeights
    skeleton: onnx.ModelProto
    table: NodeTable


def weights_and_skeleton(path: str | os.PathLike[str]) -> Reading:
    """One reading of a model file: its weights, its weight-free skeleton for shape inference, and
    its main graph's node table (made from the loader's record).

    The loader's record is dropped before the skeleton is parsed: on a 10^6-node graph the record
    takes about 500 MB, and they never need to coexist. Above :data:`LAZY_SKELETON_NODES` nodes
    the skeleton's main-graph nodes stay serialized until read.

    Raises:
        ModelFormatError, CorruptTensorError, ExternalDataError: as :func:`read_model`.
    """
    return reading_and_report(path)[0]


def reading_and_report(path: str | os.PathLike[str]) -> tuple[Reading, ModelReport]:
    """:func:`weights_and_skeleton`'s reading and the model's report (:func:`analyze`'s, with its
    defaults), from one read and one classification: for the commands that show both counts and
    estimates (``check``, ``fit``, ``scan``, ``profile``).

    Raises:
        ModelFormatError, CorruptTensorError, ExternalDataError: as :func:`read_model`.
    """
    model = read_model(path)
    stored, report = model_weights(model)
    table = NodeTable.of_record(model.graph)
    where = model.path
    del model  # the record, before the skeleton is built (they never need to coexist)
    data = skeleton_bytes(where)
    if len(table) > LAZY_SKELETON_NODES:
        # Duck-typed: a ModelProto whose main graph's nodes are parsed when read, and which
        # refuses what would need them all at once (graph_analysis._graph.LazyModel).
        lazy = cast("onnx.ModelProto", lazy_skeleton(data, where))
        return Reading(stored, lazy, table), report
    return Reading(stored, parse_skeleton(data, where), table), report


#: Main graphs with more nodes than this keep their skeleton's nodes as bytes, parsed when read
#: (:func:`graph_analysis._graph.lazy_skeleton`): 400 MB of protobuf objects at 10^6 nodes.
#: Such graphs are inferred in segments (``shapes.INFERENCE_SEGMENT_NODES``, the same size).
LAZY_SKELETON_NODES = 50_000


@dataclass(frozen=True)
class WeightCensus:
    """Counted from the graph by :func:`graph_analysis.analyze`.

    Attributes:
        parameters: ``report.parameters.total`` (learned parameters and running statistics).
        weight_bytes_by_dtype: stored bytes of the parameters by ONNX data type name.
        on_disk_bytes: the model file plus every external data file it references.
    """

    parameters: int
    weight_bytes_by_dtype: Mapping[str, int]
    on_disk_bytes: int


def file_bytes(path: Path) -> int:
    """Bytes of the model file plus each distinct external data file it references (as on disk).

    Raises:
        ModelFormatError, CorruptTensorError, ExternalDataError: as :func:`read_model`.
    """
    model = read_model(path)
    return model.file_nbytes + sum(size or 0 for size in model.external_files.values())


def weight_census(path: Path) -> WeightCensus:
    """Parameters and stored weight bytes of a model, counted without loading its weights.

    Raises:
        ModelFormatError, CorruptTensorError, ExternalDataError: as :func:`analyze`.
    """
    report = analyze(path)
    by_dtype = {row.data_type: row.nbytes for row in report.parameters.by_dtype}
    return WeightCensus(report.parameters.total, by_dtype, report.size.on_disk_bytes)
