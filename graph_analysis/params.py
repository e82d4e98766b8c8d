"""Classification and counting of stored tensors: roles, parameter totals, breakdowns, what-if sizes.

The rule (also in docs/counting.md):

* A tensor is classified by how the nodes that read it use it (resolved with ONNX's lexical scoping, so
  a subgraph reading an outer-scope weight is a reader of that weight).
* ``running_stat``: BatchNormalization's mean/var inputs.
* ``quant_meta``: scale and zero-point inputs of the quantization operators.
* ``parameter``: read as data (not as a shape, index, axes or scale) and either floating-point with
  more than one element, a one-element float in a weight slot (Gemm/Conv/MatMul weight or bias, a
  normalization's scale or bias), or an integer weight of a quantized operator (DequantizeLinear's input,
  MatMulInteger/ConvInteger/QLinear*/MatMulNBits weights), or a 2/4/8/16-bit integer tensor with more
  than one element read as data.
* ``constant``: everything else that is read: shape/index/axes tensors, scalars, masks, strings.
* ``unused``: no node reads it and it is not a graph output.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from graph_analysis.dtypes import DataType, bitwidth, is_floating, is_integer, nbytes
from graph_analysis.loading import GraphInfo, ModelFile, NodeInfo, TensorInfo, TensorSource
from graph_analysis.report import DtypeRow, GroupRow, Precision, PrecisionSize, Role

__all__ = [
    "DEFAULT_INT4_BLOCK_SIZE",
    "ClassifiedTensor",
    "Use",
    "classify",
    "classify_model",
    "collect_uses",
    "dtype_rows",
    "group_rows",
    "layer_path",
    "output_channel_axis",
    "precision_sizes",
    "strip_common_prefix",
    "unpacked_elements",
]

DEFAULT_INT4_BLOCK_SIZE = 32
_SCALE_BYTES = 4  # what-if scales are FLOAT

_QUANT_META_INPUTS: dict[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearAdd": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QGemm": frozenset({1, 2, 4, 5, 7, 8}),
    "MatMulInteger": frozenset({2, 3}),
    "ConvInteger": frozenset({2, 3}),
    "MatMulNBits": frozenset({2, 3}),
    "DynamicQuantizeMatMul": frozenset({2, 3}),
    "MatMulIntegerToFloat": frozenset({2, 3, 4, 5}),
    "GatherBlockQuantized": frozenset({2, 3}),
    "QAttention": frozenset({3, 4, 6, 7}),
    # com.microsoft DynamicQuantizeLSTM: W_scale, W_zero_point, R_scale, R_zero_point.
    "DynamicQuantizeLSTM": frozenset({8, 9, 10, 11}),
}
_QUANT_WEIGHT_INPUTS: dict[str, frozenset[int]] = {
    "DequantizeLinear": frozenset({0}),
    "MatMulInteger": frozenset({0, 1}),
    "ConvInteger": frozenset({0, 1}),
    "QLinearConv": frozenset({3, 8}),
    "QLinearMatMul": frozenset({0, 3}),
    "QGemm": frozenset({0, 3, 6}),
    "MatMulNBits": frozenset({1}),
    "DynamicQuantizeMatMul": frozenset({1}),
    "MatMulIntegerToFloat": frozenset({0, 1}),
    "GatherBlockQuantized": frozenset({0}),
    "QAttention": frozenset({1, 2}),
    "DynamicQuantizeLSTM": frozenset({1, 2}),
}
_RUNNING_STAT_INPUTS: dict[str, frozenset[int]] = {"BatchNormalization": frozenset({3, 4})}
_REDUCE_OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
]
# Inputs that carry shapes, indices, axes, sizes or scales of a resize: values, not learned weights.
_SHAPE_INPUTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Gather": frozenset({1}),
    "GatherElements": frozenset({1}),
    "GatherND": frozenset({1}),
    "ScatterND": frozenset({1}),
    "ScatterElements": frozenset({1}),
    "Scatter": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Pad": frozenset({1, 3}),
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "ConstantOfShape": frozenset({0}),
    "TopK": frozenset({1}),
    "Range": frozenset({0, 1, 2}),
    "OneHot": frozenset({1, 2}),
    "Split": frozenset({1}),
    "CumSum": frozenset({1}),
    "NonMaxSuppression": frozenset({2, 3, 4}),
    "Trilu": frozenset({1}),
    "Shape": frozenset({0}),
    "Size": frozenset({0}),
    "CenterCropPad": frozenset({1}),
    "Col2Im": frozenset({1, 2}),
    "DFT": frozenset({1, 2}),
    "SplitToSequence": frozenset({1}),
    "SequenceAt": frozenset({1}),
    "Compress": frozenset({1}),
    "ReverseSequence": frozenset({1}),
    "MaxUnpool": frozenset({2}),
    "Loop": frozenset({0, 1}),
    "If": frozenset({0}),
    "Clip": frozenset({1, 2}),
    **{op: frozenset({1}) for op in _REDUCE_OPS},
}
# Inputs that hold learned weights of the op. A one-element float read here is a parameter (a Linear
# layer with one output has a bias of shape [1]); elsewhere a one-element float is a constant such as an
# epsilon or a 0.5 in GELU.
_WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1, 2}),
    "ConvTranspose": frozenset({1, 2}),
    "Gemm": frozenset({1, 2}),
    "MatMul": frozenset({1}),
    "BatchNormalization": frozenset({1, 2}),
    "LayerNormalization": frozenset({1, 2}),
    "InstanceNormalization": frozenset({1, 2}),
    "GroupNormalization": frozenset({1, 2}),
    "RMSNormalization": frozenset({1}),
    "SimplifiedLayerNormalization": frozenset({1}),
    "SkipLayerNormalization": frozenset({2, 3, 4}),
    "PRelu": frozenset({1}),
    "LSTM": frozenset({1, 2, 3}),
    "GRU": frozenset({1, 2, 3}),
    "RNN": frozenset({1, 2, 3}),
    "DynamicQuantizeLSTM": frozenset({3, 7}),
}
_QUANTIZED_INT_TYPES = frozenset(
    {
        DataType.INT8,
        DataType.UINT8,
        DataType.INT4,
        DataType.UINT4,
        DataType.INT2,
        DataType.UINT2,
        DataType.INT16,
        DataType.UINT16,
    }
)


@dataclass(frozen=True)
class Use:
    """A node reading a tensor as its ``index``-th input (``index`` -1: returned as a graph output)."""

    node: NodeInfo | None
    index: int

    @property
    def op_type(self) -> str:
        """The reading node's op type, or ``<output>``."""
        return self.node.op_type if self.node is not None else "<output>"


TensorKey = tuple[str, str, int]  # (graph path, name, position among the graph's tensors)


def tensor_key(tensor: TensorInfo, position: int) -> TensorKey:
    """A key that tells apart tensors of the same name in different graphs."""
    return (tensor.graph, tensor.name, position)


def collect_uses(model: ModelFile) -> dict[TensorKey, list[Use]]:
    """Resolve every node input to the stored tensor it names, with ONNX lexical scoping.

    A name is looked up in the graph that uses it first, then in the enclosing graphs; node outputs
    and graph inputs shadow outer tensors. Returns the uses of every stored tensor (empty list: unused).
    """
    uses: dict[TensorKey, list[Use]] = {}

    def walk(graph: GraphInfo, scopes: list[dict[str, TensorKey | None]]) -> None:
        local: dict[str, TensorKey | None] = {}
        for position, tensor in enumerate(graph.tensors):
            key = tensor_key(tensor, position)
            uses[key] = []
            if tensor.source != TensorSource.ATTRIBUTE:
                local[tensor.name] = key
        for value in graph.inputs:
            local.setdefault(value.name, None)
        for node in graph.nodes:
            for name in node.outputs:
                if name and not (node.op_type == "Constant" and name in local):
                    local[name] = None
        chain = [local, *scopes]

        def resolve(name: str) -> TensorKey | None:
            for scope in chain:
                if name in scope:
                    return scope[name]
            return None

        for node in graph.nodes:
            for index, name in enumerate(node.inputs):
                found = resolve(name) if name else None
                if found is not None:
                    uses[found].append(Use(node, index))
            for sub in node.subgraphs:
                walk(sub, chain)
        for value in graph.outputs:
            found = resolve(value.name)
            if found is not None:
                uses[found].append(Use(None, -1))

    walk(model.graph, [])
    for function in model.functions:
        walk(function, [])
    return uses


@dataclass(frozen=True)
class ClassifiedTensor:
    """One stored tensor with every reader of it and the role those readers give it."""

    tensor: TensorInfo
    uses: tuple[Use, ...]
    role: Role


def classify_model(model: ModelFile) -> tuple[ClassifiedTensor, ...]:
    """Every stored tensor of every graph, in reading order, with its uses and its role.

    The one classification of a model: the report, the memory estimate and quantization read it.
    """
    uses = collect_uses(model)
    out: list[ClassifiedTensor] = []
    for graph in model.graphs():
        for position, tensor in enumerate(graph.tensors):
            tensor_uses = tuple(uses.get(tensor_key(tensor, position), ()))
            out.append(ClassifiedTensor(tensor, tensor_uses, classify(tensor, tensor_uses)))
    return tuple(out)


def _role_of_use(use: Use) -> str:
    if use.node is None:
        return "data"
    op, index = use.node.op_type, use.index
    if index in _RUNNING_STAT_INPUTS.get(op, ()):
        return "running_stat"
    if index in _QUANT_META_INPUTS.get(op, ()):
        return "quant_meta"
    if index in _QUANT_WEIGHT_INPUTS.get(op, ()):
        return "quant_weight"
    if index in _SHAPE_INPUTS.get(op, ()):
        return "shape"
    return "data"


def _in_weight_slot(use: Use) -> bool:
    return use.node is not None and use.index in _WEIGHT_SLOTS.get(use.node.op_type, ())


def classify(tensor: TensorInfo, uses: Sequence[Use]) -> Role:
    """The role of one tensor given how it is read (see the module docstring for the rule)."""
    if tensor.source == TensorSource.ATTRIBUTE:
        # A tensor inside another op's attribute (ConstantOfShape's value, ...): nobody reads it as
        # an input, so only its type can tell.
        uses = [Use(None, -1)]
    if not uses:
        return Role.UNUSED
    kinds = {_role_of_use(u) for u in uses}
    dtype = tensor.data_type
    if (
        "quant_weight" in kinds
        and (is_integer(dtype) or is_floating(dtype))
        and tensor.num_elements > 1
    ):
        return Role.PARAMETER
    is_weight_type = is_floating(dtype) or dtype in _QUANTIZED_INT_TYPES
    if "data" in kinds and tensor.num_elements > 1 and is_weight_type:
        return Role.PARAMETER
    if tensor.num_elements == 1 and is_floating(dtype) and any(_in_weight_slot(u) for u in uses):
        return Role.PARAMETER
    if "running_stat" in kinds:
        return Role.RUNNING_STAT
    if "quant_meta" in kinds:
        return Role.QUANT_META
    return Role.CONSTANT


_SPLIT = re.compile(r"[/.]")
_AUTO_NAME = re.compile(r"^(onnx::|_?val_\d|const_|Constant_\d|_v_\d|ortshared_)")


def _components(name: str) -> list[str]:
    parts = [p for p in _SPLIT.split(name.split(":", maxsplit=1)[0]) if p]
    merged: list[str] = []
    for part in parts:
        if part.isdigit() and merged:
            merged[-1] = f"{merged[-1]}.{part}"
        else:
            merged.append(part)
    return merged


def layer_path(tensor: TensorInfo, uses: Sequence[Use]) -> tuple[str, ...]:
    """The layer a tensor belongs to, from its own scoped name or else its first reader's node name.

    ``encoder.layer.0.attention.query.weight`` -> (encoder, layer.0, attention, query);
    a weight named ``onnx::MatMul_12`` read by node ``/model/fc1/MatMul`` -> (model, fc1).
    """
    if not _AUTO_NAME.match(tensor.name):
        parts = _components(tensor.name)
        if len(parts) > 1:
            return tuple(parts[:-1])
    for use in uses:
        if use.node is not None and use.node.name:
            parts = _components(use.node.name)
            if len(parts) > 1:
                return tuple(parts[:-1])
    if tensor.graph:
        return (tensor.graph,)
    return ()


_PACKED_BY_BITS = {2: DataType.UINT2, 4: DataType.UINT4, 8: DataType.UINT8}


def unpacked_elements(tensor: TensorInfo, uses: Sequence[Use]) -> tuple[DataType, int] | None:
    """Logical (type, element count) of a low-bit weight packed into UINT8 bytes, else None.

    MatMulNBits stores an N x K weight of ``bits``-bit values in a UINT8 tensor [N, blocks, blob]:
    it holds N x K parameters, not N x blocks x blob. GatherBlockQuantized packs 8/bits values per byte.
    """
    if tensor.data_type != DataType.UINT8:
        return None
    for use in uses:
        node = use.node
        if node is None:
            continue
        bits = node.attributes.get("bits", 4)
        if not isinstance(bits, int) or bits not in _PACKED_BY_BITS:
            continue
        if node.op_type == "MatMulNBits" and use.index == 1:
            n, k = node.attributes.get("N"), node.attributes.get("K")
            if isinstance(n, int) and isinstance(k, int) and n > 0 and k > 0:
                return _PACKED_BY_BITS[bits], n * k
        if node.op_type == "GatherBlockQuantized" and use.index == 0:
            return _PACKED_BY_BITS[bits], tensor.num_elements * (8 // bits)
    return None


def strip_common_prefix(items: Sequence[LayerItem]) -> list[LayerItem]:
    """Drop leading path parts shared by every item (``StatefulPartitionedCall``, ``model``).

    A prefix common to all layers says nothing about where parameters sit, and would make the
    depth-1 view a single row. At least one part of each path is kept.
    """
    paths = [item[0] for item in items if item[0]]
    if len(paths) < 2 or len(paths) != len(items):
        return list(items)
    shortest = min(len(p) for p in paths)
    common = 0
    while common < shortest - 1 and all(p[common] == paths[0][common] for p in paths):
        common += 1
    if common == 0:
        return list(items)
    return [(path[common:], count, size, frozen) for path, count, size, frozen in items]


def dtype_rows(items: Iterable[tuple[DataType, int, int]]) -> tuple[DtypeRow, ...]:
    """Group (data type, elements, bytes) triples into rows, largest bytes first."""
    acc: dict[DataType, list[int]] = defaultdict(lambda: [0, 0, 0])
    for data_type, elements, size in items:
        row = acc[data_type]
        row[0] += 1
        row[1] += elements
        row[2] += size
    rows = [DtypeRow(dt.name, t, e, b) for dt, (t, e, b) in acc.items()]
    return tuple(sorted(rows, key=lambda r: (-r.nbytes, r.data_type)))


LayerItem = tuple[tuple[str, ...], int, int, int]  # (path, parameters, bytes, frozen parameters)


def group_rows(
    items: Iterable[LayerItem], *, trainability_known: bool = False
) -> tuple[GroupRow, ...]:
    """Build a tree of rows from (path, parameters, bytes, frozen): every prefix of every path is a row.

    Rows are in depth-first order, children sorted by parameters; a row's figures include everything
    below it, so the depth-1 rows sum to the total. An empty path is the row ``(unscoped)``. Frozen
    counts are reported only when ``trainability_known``.
    """
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for path, count, size, frozen in items:
        key_path = path or ("(unscoped)",)
        for depth in range(1, len(key_path) + 1):
            row = totals[key_path[:depth]]
            row[0] += count
            row[1] += size
            row[2] += 1
            row[3] += frozen
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
    for key in totals:
        children[key[:-1]].append(key)
    out: list[GroupRow] = []

    def emit(parent: tuple[str, ...]) -> None:
        for key in sorted(children.get(parent, []), key=lambda k: (-totals[k][0], k)):
            count, size, tensors, frozen = totals[key]
            frozen_or_none = frozen if trainability_known else None
            out.append(GroupRow(".".join(key), len(key), count, size, tensors, frozen_or_none))
            emit(key)

    emit(())
    return tuple(out)


def output_channel_axis(tensor: TensorInfo, uses: Sequence[Use]) -> int:
    """The axis a per-channel quantizer would give one scale per index of, from the first reader.

    Conv: 0 (M of MxCxkHxkW); ConvTranspose: 1; MatMul weight (input 1): the last axis (N of KxN);
    Gemm B: 0 with transB=1, else 1; anything else: 0.
    """
    rank = len(tensor.dims)
    for use in uses:
        node = use.node
        if node is None:
            continue
        if node.op_type == "ConvTranspose" and use.index == 1 and rank >= 2:
            return 1
        if node.op_type == "MatMul" and use.index == 1 and rank >= 2:
            return rank - 1
        if node.op_type == "Gemm" and use.index == 1 and rank == 2:
            return 0 if node.attributes.get("transB", 0) else 1
        if node.op_type == "Gemm" and use.index == 0 and rank == 2:
            return 1 if node.attributes.get("transA", 0) else 0
        break
    return 0


def precision_sizes(
    tensors: Iterable[tuple[TensorInfo, Sequence[Use]]],
    *,
    int4_block_size: int = DEFAULT_INT4_BLOCK_SIZE,
    scale_bytes: int = _SCALE_BYTES,
) -> tuple[PrecisionSize, ...]:
    """What-if sizes of the given parameters at each precision in :class:`Precision`.

    FLOAT/FLOAT16/BFLOAT16: elements x width. INT8: one byte per element plus one ``scale_bytes``
    scale per output channel (tensors of rank >= 2, axis from :func:`output_channel_axis`) or per
    tensor (rank <= 1); symmetric, no zero points. INT4: two elements per byte (rounded up per tensor)
    plus one scale per block of ``int4_block_size`` elements along the reduction axes, per output
    channel (rank <= 1: blocks over the whole tensor).
    """
    elements = 0
    int4_bytes = 0
    int8_scales = 0
    int4_blocks = 0
    for tensor, uses in tensors:
        numel = tensor.num_elements
        elements += numel
        int4_bytes += nbytes(DataType.INT4, numel)
        if len(tensor.dims) >= 2 and numel:
            channels = tensor.dims[output_channel_axis(tensor, uses)]
            int8_scales += channels
            per_channel = numel // channels if channels else 0
            int4_blocks += channels * math.ceil(per_channel / int4_block_size)
        else:
            int8_scales += 1
            int4_blocks += math.ceil(numel / int4_block_size)
    int8_overhead = int8_scales * scale_bytes
    int4_overhead = int4_blocks * scale_bytes
    fp = "every parameter stored at this precision, no overhead"
    return (
        PrecisionSize(Precision.FLOAT, elements * 4, 0, fp),
        PrecisionSize(Precision.FLOAT16, elements * 2, 0, fp),
        PrecisionSize(Precision.BFLOAT16, elements * 2, 0, fp),
        PrecisionSize(
            Precision.INT8,
            elements + int8_overhead,
            int8_overhead,
            f"symmetric int8, one {scale_bytes}-byte FLOAT scale per output channel "
            "(per tensor for rank <= 1), no zero points",
        ),
        PrecisionSize(
            Precision.INT4,
            int4_bytes + int4_overhead,
            int4_overhead,
            f"symmetric int4 packed two per byte, one {scale_bytes}-byte FLOAT scale per block of "
            f"{int4_block_size} elements along the reduction axes",
        ),
    )


def uniform_width(data_type: DataType) -> int:
    """Bytes per element for types that are byte-aligned (0 for sub-byte and STRING)."""
    bits = bitwidth(data_type)
    return bits // 8 if bits % 8 == 0 else 0
