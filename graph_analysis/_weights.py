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
        parameters: elements of float tensors and of low-bit integer weights (INT8/UINT8/INT4/UINT4)
            stored as initializers or Constant nodes, scales and zero points excluded.
        weight_bytes_by_dtype: stored bytes of those tensors by ONNX data type name.
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


def _meta_names(graph: onnx.GraphProto) -> set[str]:
    used_as_meta: set[str] = set()
    used_otherwise: set[str] = set()
    for node in graph.node:
        meta = _QUANT_META_INPUTS.get(node.op_type, frozenset())
        for index, name in enumerate(node.input):
            (used_as_meta if index in meta else used_otherwise).add(name)
    return used_as_meta - used_otherwise


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
        meta = _meta_names(graph)
        for tensor in _tensors(graph):
            data_type = DataType.from_value(tensor.data_type)
            if data_type is None or tensor.name in meta:
                continue
            if not (is_floating(data_type) or data_type in _WEIGHT_TYPES):
                continue
            count = math.prod(tensor.dims)
            if count <= 1:  # scalars are constants, not weights
                continue
            parameters += count
            by_dtype[data_type.name] = by_dtype.get(data_type.name, 0) + nbytes(data_type, count)
    return WeightCensus(parameters, by_dtype, file_bytes(path, model))
