"""Graph surgery around onnxruntime's quantizer: what it needs before, what it misses after.

Before: Constant-node weights become initializers (the quantizer only quantizes initializers).
After: weights it could not reach (read by a nested subgraph from an outer scope, ops it has no
quantized form for) are stored as INT8 with a DequantizeLinear in front; unused initializers go.
Also the census of float tensors left and of quantized ops, and the recommendation of a method.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from graph_analysis._weights import ModelWeights
from graph_analysis.dtypes import DataType, is_floating
from graph_analysis.report import Role

__all__ = [
    "FLOAT32_TYPES",
    "QUANTIZED_OPS",
    "FloatTensor",
    "GraphMakeup",
    "bypass_weight_identities",
    "dequantize_linear_fallback",
    "float_tensors",
    "graph_makeup",
    "iter_graphs",
    "lift_constants",
    "prune_unused_initializers",
    "quantized_op_counts",
    "shared_gathers",
]

QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QLinearAdd",
        "QLinearMul",
        "QGemm",
        "QAttention",
        "MatMulNBits",
        "GatherBlockQuantized",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "MatMulIntegerToFloat",
    }
)
_LOW_BIT = frozenset({DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4})
_WIDE_FLOATS = frozenset({DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16})
FLOAT32_TYPES = frozenset({DataType.FLOAT, DataType.DOUBLE})
_CONV = frozenset({"Conv", "ConvTranspose"})
_MATMUL = frozenset({"MatMul", "Gemm"})
_RECURRENT = frozenset({"LSTM", "GRU", "RNN"})
_WEIGHT_ROLES = frozenset({Role.PARAMETER, Role.RUNNING_STAT})


@dataclass(frozen=True)
class FloatTensor:
    """A weight left in a floating type in the variant, and why.

    Attributes:
        name: the initializer's name.
        graph: the graph holding it (``main``, or a subgraph's path such as ``/If_0.then_branch``).
        data_type: its ONNX data type name.
        dims: its shape.
        num_elements: elements.
        nbytes: stored bytes.
        consumers: op types that read it (in its graph or nested subgraphs).
        reason: why it was not quantized.
    """

    name: str
    graph: str
    data_type: str
    dims: tuple[int, ...]
    num_elements: int
    nbytes: int
    consumers: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class GraphMakeup:
    """Counted weight bytes of a float graph by the kind of op that reads them.

    Attributes:
        conv_bytes: read by Conv/ConvTranspose.
        matmul_bytes: read by MatMul/Gemm.
        recurrent_bytes: read by LSTM/GRU/RNN.
        other_bytes: read by anything else (embedding Gathers, norms, biases).
        total_bytes: all float weight bytes.
        low_bit_bytes: bytes already stored in INT8/UINT8/INT4/UINT4.
        fp16_bytes: bytes already stored in FLOAT16/BFLOAT16.
        quantized_ops: op-type counts of quantized ops already present.
    """

    conv_bytes: int
    matmul_bytes: int
    recurrent_bytes: int
    other_bytes: int
    total_bytes: int
    low_bit_bytes: int
    fp16_bytes: int
    quantized_ops: Mapping[str, int]


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every nested subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for sub in _subgraphs(node):
            yield from iter_graphs(sub)


def _bottom_up(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """Every nested subgraph before the graph holding it.

    Rewriting a graph's node list (``del graph.node[:]``, ``extend``) copies its nodes: a subgraph
    reached through the old nodes is detached, and edits made to it afterwards are lost. Editing
    children first and parents last keeps every edit.
    """
    found: list[onnx.GraphProto] = []
    for node in graph.node:
        for sub in _subgraphs(node):
            found.extend(_bottom_up(sub))
    found.append(graph)
    return found


def lift_constants(model: onnx.ModelProto, *, min_elements: int = 2) -> int:
    """Move floating Constant-node tensors of ``min_elements``+ elements into initializers.

    Works in every graph, subgraphs included (a subgraph's Constant becomes that subgraph's
    initializer). Returns the number of Constant nodes lifted.
    """
    lifted = 0
    for graph in _bottom_up(model.graph):
        keep = []
        for node in graph.node:
            tensor = _constant_tensor(node)
            if tensor is not None and math.prod(tensor.dims) >= min_elements:
                t = onnx.TensorProto()
                t.CopyFrom(tensor)
                t.name = node.output[0]
                graph.initializer.append(t)
                lifted += 1
            else:
                keep.append(node)
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
    return lifted


def bypass_weight_identities(model: onnx.ModelProto) -> int:
    """Let readers of ``Identity(initializer)`` read the initializer itself; drop those Identities.

    Exporters route weights through Identity nodes (TorchScript for shared parameters, tf2onnx for
    ReadVariableOp); the quantizer only quantizes an input that *is* an initializer ("Expected ...
    to be an initializer"), so such weights would stay float. Readers in nested subgraphs are
    rewired too, unless a subgraph defines the same name itself. An Identity whose output is a
    graph output is kept. Returns the number of Identity nodes removed.
    """
    removed = 0
    for graph in _bottom_up(model.graph):
        initializers = {t.name for t in graph.initializer}
        outputs = {o.name for o in graph.output}
        alias: dict[str, str] = {}
        for node in graph.node:
            if (
                node.op_type == "Identity"
                and node.domain in ("", "ai.onnx")
                and len(node.input) == 1
                and (node.input[0] in initializers or node.input[0] in alias)
                and node.output[0] not in outputs
            ):
                alias[node.output[0]] = alias.get(node.input[0], node.input[0])
        if not alias:
            continue
        keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
        removed += len(graph.node) - len(keep)
        del graph.node[:]
        graph.node.extend(keep)
        _rename_reads(graph, alias)
    return removed


def _rename_reads(graph: onnx.GraphProto, alias: Mapping[str, str]) -> None:
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in alias:
                node.input[index] = alias[name]
        for sub in _subgraphs(node):
            defined = {o for n in sub.node for o in n.output} | {i.name for i in sub.input}
            defined |= {t.name for t in sub.initializer}
            visible = {k: v for k, v in alias.items() if k not in defined}
            if visible:
                _rename_reads(sub, visible)


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            data_type = DataType.from_value(attr.t.data_type)
            if data_type is not None and is_floating(data_type):
                tensor: onnx.TensorProto = attr.t
                return tensor
    return None


def _consumers(graph: onnx.GraphProto) -> dict[str, list[str]]:
    """Op types reading each name in ``graph``, counting reads from nested subgraphs (outer scope)."""
    found: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                found.setdefault(name, []).append(node.op_type)
        for sub in _subgraphs(node):
            for inner in iter_graphs(sub):
                produced = {o for n in inner.node for o in n.output} | {i.name for i in inner.input}
                produced |= {t.name for t in inner.initializer}
                for n in inner.node:
                    for name in n.input:
                        if name and name not in produced:
                            found.setdefault(name, []).append(f"{n.op_type} (in subgraph)")
    return found


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def shared_gathers(model: onnx.ModelProto) -> list[str]:
    """Names of Gather nodes whose table other ops also read (a tied embedding / LM head).

    Quantizing such a Gather to GatherBlockQuantized gives it a private 4-bit copy while the float
    table stays for the other readers: the file grows. Unnamed nodes get a name here, since
    onnxruntime's quantizers exclude nodes by name.
    """
    names = []
    for graph in iter_graphs(model.graph):
        initializers = {t.name for t in graph.initializer}
        readers = _consumers(graph)
        for index, node in enumerate(graph.node):
            if not node.name:
                node.name = f"{node.op_type}_{graph.name}_{index}"
            if node.op_type != "Gather" or node.input[0] not in initializers:
                continue
            if any(op != "Gather" for op in readers.get(node.input[0], [])):
                names.append(node.name)
    return names


def quantized_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Counts of quantized op types (QuantizeLinear, MatMulInteger, MatMulNBits, ...) in all graphs."""
    counts: Counter[str] = Counter()
    for graph in iter_graphs(model.graph):
        counts.update(n.op_type for n in graph.node if n.op_type in QUANTIZED_OPS)
    return dict(counts)


def graph_makeup(weights: ModelWeights, quantized_ops: Mapping[str, int]) -> GraphMakeup:
    """Weight bytes by the kind of op reading them, and what is already stored in low-bit types.

    Reads the one classification (``graph_analysis._weights``): the parameters and running
    statistics wherever they are stored (initializers, Constant nodes, subgraphs), each by the ops
    that read it; constants, quantization metadata and unused tensors are not weights.
    """
    conv = matmul = recurrent = other = low_bit = fp16 = 0
    for tensor in weights.tensors:
        if tensor.role not in _WEIGHT_ROLES:
            continue
        if tensor.data_type in _LOW_BIT:
            low_bit += tensor.nbytes
            continue
        if tensor.data_type in (DataType.FLOAT16, DataType.BFLOAT16):
            fp16 += tensor.nbytes
        if not is_floating(tensor.data_type):
            continue
        ops = {op for op, _index in tensor.readers}
        if ops & _CONV:
            conv += tensor.nbytes
        elif ops & _MATMUL:
            matmul += tensor.nbytes
        elif ops & _RECURRENT:
            recurrent += tensor.nbytes
        else:
            other += tensor.nbytes
    total = conv + matmul + recurrent + other
    return GraphMakeup(conv, matmul, recurrent, other, total, low_bit, fp16, dict(quantized_ops))


def float_tensors(
    weights: ModelWeights,
    *,
    min_elements: int,
    data_types: frozenset[DataType] = _WIDE_FLOATS,
    reasons: Mapping[str, str] | None = None,
    default_reason: str = "its consumers have no quantized form in this method",
) -> tuple[FloatTensor, ...]:
    """Floating stored tensors of ``min_elements``+ elements in a model's reading, largest first.

    Quantization metadata (tensors read only by quantized ops: scales, zero points) is not listed.
    ``reasons`` maps a name to a known reason; others get ``default_reason``, or "read inside a
    subgraph from an outer scope" when that is how they are read.
    """
    reasons = reasons or {}
    left = []
    for tensor in weights.tensors:
        if tensor.data_type not in data_types or tensor.num_elements < min_elements:
            continue
        nested = list(tensor.nested_readers)
        direct = [op for op, _index in tensor.readers]
        for op in nested:
            direct.remove(op)
        ops = tuple(sorted({*direct, *(f"{op} (in subgraph)" for op in nested)}))
        if ops and all(op.replace(" (in subgraph)", "") in QUANTIZED_OPS for op in ops):
            continue
        reason = reasons.get(tensor.name)
        if reason is None:
            if nested:
                reason = "read inside a subgraph from an outer scope: the quantizer cannot reach it"
            else:
                reason = default_reason
        left.append(
            FloatTensor(
                tensor.name,
                tensor.graph or "main",
                tensor.data_type.name,
                tensor.dims,
                tensor.num_elements,
                tensor.nbytes,
                ops,
                reason,
            )
        )
    return tuple(sorted(left, key=lambda t: -t.nbytes))


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def dequantize_linear_fallback(
    model: onnx.ModelProto, names: set[str], *, axes: Mapping[str, int] | None = None
) -> list[str]:
    """Store the named FLOAT initializers as symmetric INT8 behind a DequantizeLinear.

    The DequantizeLinear node is put first in the graph that holds the initializer and outputs the
    original name, so every reader (subgraphs included) sees the same float tensor as before.
    Scales are per slice along ``axes[name]`` (default 0; MatMul weights want their last axis,
    the output features) for tensors of rank 2+ from opset 13 on, else one scale per tensor. At run time
    onnxruntime dequantizes each such weight to float for every run (it does not constant-fold
    DequantizeLinear), so it costs its float size as transient activation memory instead of
    resident weight memory.

    Returns:
        The names converted (a name absent, not FLOAT, or in a model below opset 10 is skipped).
    """
    opset = _opset(model)
    if opset < 10:
        return []
    axes = axes or {}
    done = []
    for graph in iter_graphs(model.graph):
        new_nodes = []
        keep = []
        for tensor in graph.initializer:
            if tensor.name not in names or tensor.data_type != onnx.TensorProto.FLOAT:
                keep.append(tensor)
                continue
            weights = numpy_helper.to_array(tensor).astype(np.float32)
            axis_scale = opset >= 13 and weights.ndim >= 2 and weights.size > 0
            axis = axes.get(tensor.name, 0) % max(weights.ndim, 1)
            if axis_scale:
                moved = np.moveaxis(weights, axis, 0)
                peak = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
            else:
                peak = np.array(np.abs(weights).max() if weights.size else 0.0)
            scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            if axis_scale:
                shape = [1] * weights.ndim
                shape[axis] = -1
                shaped = scale.reshape(shape)
            else:
                shaped = scale
            quantized = np.clip(np.rint(weights / shaped), -127, 127).astype(np.int8)
            base = tensor.name
            keep.append(numpy_helper.from_array(quantized, f"{base}_int8"))
            keep.append(numpy_helper.from_array(scale, f"{base}_int8_scale"))
            keep.append(
                numpy_helper.from_array(
                    np.zeros_like(scale, dtype=np.int8), f"{base}_int8_zero_point"
                )
            )
            node = onnx.helper.make_node(
                "DequantizeLinear",
                [f"{base}_int8", f"{base}_int8_scale", f"{base}_int8_zero_point"],
                [base],
                name=f"{base}_fallback_DequantizeLinear",
            )
            if axis_scale:
                node.attribute.append(onnx.helper.make_attribute("axis", axis))
            new_nodes.append(node)
            done.append(base)
        if new_nodes:
            del graph.initializer[:]
            graph.initializer.extend(keep)
            # An IR<4 model may also list the initializer as a graph input; it is now a node output.
            converted = {n.output[0] for n in new_nodes}
            inputs = [i for i in graph.input if i.name not in converted]
            del graph.input[:]
            graph.input.extend(inputs)
            nodes = new_nodes + list(graph.node)
            del graph.node[:]
            graph.node.extend(nodes)
    return done


def prune_unused_initializers(model: onnx.ModelProto) -> int:
    """Drop initializers nothing reads (in their graph, nested subgraphs or graph outputs)."""
    removed = 0
    for graph in iter_graphs(model.graph):
        read = set(_consumers(graph)) | {o.name for o in graph.output}
        keep = [t for t in graph.initializer if t.name in read]
        removed += len(graph.initializer) - len(keep)
        if len(keep) != len(graph.initializer):
            dropped = {t.name for t in graph.initializer} - {t.name for t in keep}
            del graph.initializer[:]
            graph.initializer.extend(keep)
            # An IR<4 model lists initializers as graph inputs too: drop those entries with them.
            inputs = [i for i in graph.input if i.name not in dropped]
            del graph.input[:]
            graph.input.extend(inputs)
    return removed
