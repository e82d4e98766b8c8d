"""Stand-in weight census for quantized and float graphs, until ``graph_analysis.analyze`` lands.

Reads the graph without external payloads (``onnx.load(load_external_data=False)``) and never
materializes a weight: sizes are element count x bit width from :mod:`graph_analysis.dtypes`.
Replaced by the lead's ``analyze(path)`` when it is importable (see :func:`weight_census`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx

from graph_analysis.dtypes import DataType, is_floating, nbytes
from graph_analysis.errors import ModelFormatError

__all__ = ["WeightCensus", "file_bytes", "iter_graphs", "load_header", "weight_census"]

# Inputs (by index) that hold quantization metadata rather than weights: scales and zero points.
_QUANT_META_INPUTS: Mapping[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "MatMulInteger": frozenset({2, 3}),
    "ConvInteger": frozenset({2, 3}),
    "MatMulNBits": frozenset({2, 3, 4}),
    "GatherBlockQuantized": frozenset({2, 3}),
    "DynamicQuantizeMatMul": frozenset({2, 3, 4}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
}
_WEIGHT_TYPES = frozenset({DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4})


@dataclass(frozen=True)
class WeightCensus:
    """Counted from the graph: parameters, stored weight bytes by dtype, bytes on disk.

    Attributes:
        parameters: elements of float tensors, of low-bit integer weights (INT8/UINT8/INT4/UINT4),
            of INT32 QDQ biases and of MatMulNBits' packed weights (N x K), stored as initializers
            or Constant nodes; scales, zero points, shapes and scalars excluded.
        weight_bytes_by_dtype: stored bytes of those tensors by ONNX data type name
            (``UINT4 (packed)`` for MatMulNBits weights).
        on_disk_bytes: the model file plus every external data file it references.
    """

    parameters: int
    weight_bytes_by_dtype: Mapping[str, int]
    on_disk_bytes: int


def load_header(path: Path) -> onnx.ModelProto:
    """The model without its external payloads.

    Raises:
        ModelFormatError: not a readable ONNX file.
    """
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelFormatError(path, f"not a readable ONNX model ({type(e).__name__}: {e})") from e


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every nested subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_graphs(sub)


def file_bytes(path: Path, model: onnx.ModelProto | None = None) -> int:
    """Bytes of the model file plus each distinct external data file it references."""
    model = model if model is not None else load_header(path)
    total = path.stat().st_size
    seen: set[Path] = set()
    for graph in iter_graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location is None:
                continue
            data_path = (path.parent / location).resolve()
            if data_path not in seen and data_path.exists():
                seen.add(data_path)
                total += data_path.stat().st_size
    return total


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    t = onnx.TensorProto()
                    t.CopyFrom(attr.t)
                    if not t.name:
                        t.name = node.output[0]
                    yield t


def _uses(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    """Every (node, input index) reading each name of ``graph``, nested subgraphs included."""
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for inner in iter_graphs(graph):
        for node in inner.node:
            for index, name in enumerate(node.input):
                if name:
                    uses.setdefault(name, []).append((node, index))
    return uses


def _stored_elements(
    tensor: onnx.TensorProto, uses: list[tuple[onnx.NodeProto, int]]
) -> tuple[int, str] | None:
    """Parameters a tensor holds and the type they are stored in, or None when it is not a weight
    (quantization metadata, shapes, scalars)."""
    data_type = DataType.from_value(tensor.data_type)
    count = math.prod(tensor.dims)
    if data_type is None or count <= 1:  # scalars are constants, not weights
        return None
    if uses and all(index in _QUANT_META_INPUTS.get(node.op_type, ()) for node, index in uses):
        return None
    for node, index in uses:
        if node.op_type == "MatMulNBits" and index == 1:
            # B is packed: (N, blocks, blob) UINT8 holding N x K values of ``bits`` bits.
            attrs = {a.name: a.i for a in node.attribute}
            if "N" in attrs and "K" in attrs:
                return int(attrs["N"] * attrs["K"]), f"UINT{attrs.get('bits', 4)} (packed)"
    if is_floating(data_type) or data_type in _WEIGHT_TYPES:
        return count, data_type.name
    if data_type is DataType.INT32 and any(n.op_type == "DequantizeLinear" and i == 0 for n, i in uses):
        return count, data_type.name  # a QDQ bias stored as INT32
    return None


def weight_census(path: Path) -> WeightCensus:
    """Parameters and stored weight bytes of a model, counted without loading its weights.

    Uses ``graph_analysis.analyze`` when the package provides it.

    Raises:
        ModelFormatError: not a readable ONNX file.
    """
    try:
        from graph_analysis import analyze  # type: ignore[attr-defined]
    except ImportError:
        analyze = None
    if analyze is not None:
        report = analyze(path)
        by_dtype: dict[str, int] = {}
        for record in report.tensors:
            if record.role == "parameter" or getattr(record.role, "value", None) == "parameter":
                key = getattr(record.data_type, "name", str(record.data_type))
                by_dtype[key] = by_dtype.get(key, 0) + int(record.nbytes)
        return WeightCensus(int(report.parameters.total), by_dtype, int(report.size.on_disk_bytes))
    model = load_header(path)
    parameters = 0
    by_dtype = {}
    for graph in iter_graphs(model.graph):
        uses = _uses(graph)
        for tensor in _tensors(graph):
            found = _stored_elements(tensor, uses.get(tensor.name, []))
            if found is None:
                continue
            count, label = found
            parameters += count
            stored = nbytes(DataType(tensor.data_type), math.prod(tensor.dims))
            by_dtype[label] = by_dtype.get(label, 0) + stored
    return WeightCensus(parameters, by_dtype, file_bytes(path, model))
