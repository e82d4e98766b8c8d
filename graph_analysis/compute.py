"""Compute counted from the graph: multiply-accumulates (MACs), FLOPs and bytes moved, per node.

Every node's figures come from one rule per op type (the table ``RULES`` below, documented in
docs/compute.md), applied to the shapes that :func:`graph_analysis.shapes.infer_shapes` bound and
inferred. Conventions:

- one MAC is one multiply and one add; the FLOPs of a MAC-bearing op are ``2 x MACs`` plus its
  elementwise extras (a bias add is one FLOP per output element);
- integer MACs (``MatMulInteger``, ``ConvInteger``, ``QLinear*``, ``MatMulNBits``...) are reported on
  their own, never mixed into the floating-point MACs or FLOPs;
- elementwise ops cost ``FLOPS_PER_ELEMENT`` per output element (a named assumption); data-movement ops
  (Reshape, Transpose, Gather, Concat...) cost 0 FLOPs but still move bytes;
- ``If``: the heavier branch counts (said so); ``Loop``: the body times the trip count when it is a
  constant, else one iteration (said so); ``Scan``: the body times the scanned axis's length;
- an op with no rule is listed in ``unknown_ops`` and counted as 0, never silently; a node whose shapes
  stayed unknown is listed in ``unresolved`` and counted as 0.

Weights are identified by the one reading of the model (``loading`` -> ``params``, through the
report and :func:`graph_analysis._weights.read_weights`), never found again here; layer paths are
the same tree as ``inspect``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph_analysis._graph import NodeTable
from graph_analysis._weights import (
    ModelWeights,
    Reading,
    enclosing_scopes,
    graph_scope,
    read_weights,
    reading_and_report,
)
from graph_analysis.bindings import Bindings
from graph_analysis.params import _REDUCE_OPS, _components
from graph_analysis.report import ModelReport, Role
from graph_analysis.shapes import MAIN_GRAPH, TensorShape, infer_shapes, node_label

if TYPE_CHECKING:
    import onnx

__all__ = [
    "FLOPS_PER_ELEMENT",
    "TRAINING_FLOPS_FACTOR",
    "ComputeReport",
    "LayerCompute",
    "NodeCompute",
    "OpCompute",
    "compute_to_dict",
    "count_compute",
    "count_compute_model",
]

#: FLOPs per output element of elementwise and normalization ops (a stated convention, not a
#: measurement): arithmetic and activation functions count 1 each; normalizations count their
#: arithmetic at inference (BatchNormalization folds to one multiply-add: 2; LayerNormalization-like:
#: mean, subtract, square, mean, rsqrt, scale, shift: 8); Softmax: max, subtract, exp, sum, divide: 5.
FLOPS_PER_ELEMENT: Mapping[str, int] = {
    "BatchNormalization": 2,
    "LayerNormalization": 8,
    "SimplifiedLayerNormalization": 6,
    "SkipLayerNormalization": 9,
    "SkipSimplifiedLayerNormalization": 7,
    "RMSNormalization": 6,
    "GroupNormalization": 8,
    "InstanceNormalization": 8,
    "LpNormalization": 3,
    "Softmax": 5,
    "LogSoftmax": 5,
    "Hardmax": 1,
}

#: Forward + backward FLOPs of a training step, in multiples of the forward FLOPs: backward computes
#: the gradient with respect to each MAC-bearing op's input and to its weight, each about one forward.
TRAINING_FLOPS_FACTOR = 3

_ELEMENTWISE = frozenset(
    [
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Reciprocal",
        "Neg",
        "Abs",
        "Exp",
        "Log",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Selu",
        "Celu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Softplus",
        "Softsign",
        "Erf",
        "Gelu",
        "FastGelu",
        "BiasGelu",
        "QuickGelu",
        "Mish",
        "Swish",
        "Sin",
        "Cos",
        "Tan",
        "Asin",
        "Acos",
        "Atan",
        "Sinh",
        "Cosh",
        "Asinh",
        "Acosh",
        "Atanh",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Clip",
        "Max",
        "Min",
        "Mean",
        "Sum",
        "Mod",
        "ThresholdedRelu",
        "Shrink",
        "IsNaN",
        "IsInf",
        "Equal",
        "Less",
        "LessOrEqual",
        "Greater",
        "GreaterOrEqual",
        "And",
        "Or",
        "Xor",
        "Not",
        "BitShift",
        "Where",
        "BiasAdd",
        "Dropout",
    ]
)
_REDUCE = frozenset(
    [
        *_REDUCE_OPS,
        "ArgMax",
        "ArgMin",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "GlobalLpPool",
        "CumSum",
        "TopK",
    ]
)
#: Ops that move or reinterpret data and do no arithmetic: 0 FLOPs, bytes still counted.
_DATA_MOVEMENT = frozenset(
    [
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Expand",
        "Tile",
        "Pad",
        "Identity",
        "Cast",
        "CastLike",
        "Shape",
        "Size",
        "Constant",
        "ConstantOfShape",
        "Range",
        "NonZero",
        "OneHot",
        "DepthToSpace",
        "SpaceToDepth",
        "Compress",
        "Trilu",
        "EyeLike",
        "ReverseSequence",
        "Unique",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "SequenceConstruct",
        "SequenceAt",
        "SequenceInsert",
        "SequenceEmpty",
        "SplitToSequence",
        "ConcatFromSequence",
        "SequenceLength",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "NonMaxSuppression",
        "Det",
        "Bernoulli",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "StringNormalizer",
    ]
)


@dataclass(frozen=True)
class NodeCompute:
    """One node's counted compute.

    Attributes:
        name: the node's name (``<op_type>_<index>`` when unnamed).
        op_type: the operator.
        domain: its domain (``""`` for the default ONNX domain).
        graph: the graph path holding it (``""`` for the main graph).
        layer: its layer path, the same tree as ``inspect``'s.
        macs: floating-point multiply-accumulates.
        flops: floating-point operations (``2 x macs`` plus elementwise extras).
        integer_macs: integer multiply-accumulates (quantized ops).
        weight_bytes: bytes of parameters it reads.
        activation_bytes: bytes of activations it reads and writes.
        multiplier: how many times the node runs per inference (Loop trip count, Scan length).
        resolved: False when its shapes stayed unknown (then it counts 0).
        note: how a special case was counted ("heavier branch", "one iteration: trip count unknown").
    """

    name: str
    op_type: str
    domain: str
    graph: str
    layer: tuple[str, ...]
    macs: int
    flops: int
    integer_macs: int
    weight_bytes: int
    activation_bytes: int
    multiplier: int = 1
    resolved: bool = True
    note: str = ""

    @property
    def bytes_moved(self) -> int:
        """Weights read plus activations read and written."""
        return self.weight_bytes + self.activation_bytes


@dataclass(frozen=True)
class OpCompute:
    """Totals of one op type."""

    op_type: str
    nodes: int
    macs: int
    flops: int
    integer_macs: int
    bytes_moved: int


@dataclass(frozen=True)
class LayerCompute:
    """Totals of one layer-tree row (a prefix of the nodes' layer paths, at most ``depth`` long)."""

    path: tuple[str, ...]
    nodes: int
    macs: int
    flops: int
    integer_macs: int
    bytes_moved: int


@dataclass(frozen=True)
class ComputeReport:
    """The model's counted compute at the bound shapes.

    Attributes:
        inputs: the graph inputs with the shapes they were bound to.
        macs: floating-point multiply-accumulates of one inference.
        flops: floating-point operations of one inference.
        integer_macs: integer multiply-accumulates of one inference (quantized ops).
        bytes_moved: weights read plus activations read and written, summed over nodes.
        training_flops: FLOPs of one training step (``TRAINING_FLOPS_FACTOR x flops``).
        nodes: every node, in graph order (subgraph nodes after their parent, with its multiplier).
        by_op: totals per op type, heaviest first.
        layers: totals per layer-tree row, in tree order.
        unknown_ops: op types with no rule (their nodes count 0).
        unresolved: names of nodes whose shapes stayed unknown (they count 0).
        assumptions: every convention the figures rest on, one sentence each.
    """

    inputs: tuple[TensorShape, ...]
    macs: int
    flops: int
    integer_macs: int
    bytes_moved: int
    training_flops: int
    nodes: tuple[NodeCompute, ...]
    by_op: tuple[OpCompute, ...]
    layers: tuple[LayerCompute, ...]
    unknown_ops: tuple[str, ...]
    unresolved: tuple[str, ...]
    assumptions: tuple[str, ...] = field(default=())

    @property
    def arithmetic_intensity(self) -> float | None:
        """FLOPs per byte moved (None when nothing moves)."""
        return self.flops / self.bytes_moved if self.bytes_moved else None


# ---------------------------------------------------------------------------------------------
# The rules: one function per family; each gets the node's context and returns (macs, flops,
# integer_macs) or None when a shape it needs is unknown.

_Counts = tuple[int, int, int]


@dataclass(frozen=True)
class _Node:
    """What a rule sees of one node: its attributes and the shapes of its inputs and outputs."""

    op_type: str
    domain: str
    attributes: Mapping[str, object]
    inputs: tuple[tuple[int, ...] | None, ...]  # None: absent input or unknown shape
    outputs: tuple[tuple[int, ...] | None, ...]

    def attr(self, name: str, default: object = None) -> object:
        return self.attributes.get(name, default)

    def int_attr(self, name: str, default: int) -> int:
        value = self.attributes.get(name, default)
        return int(value) if isinstance(value, (int, float)) else default

    def shape_in(self, index: int) -> tuple[int, ...] | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def shape_out(self, index: int = 0) -> tuple[int, ...] | None:
        return self.outputs[index] if index < len(self.outputs) else None

    def has_input(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] is not None


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _conv(node: _Node, weight_index: int = 1, bias_index: int | None = 2) -> _Counts | None:
    out = node.shape_out()
    weight = node.shape_in(weight_index)
    if out is None or weight is None or len(weight) < 2:
        return None
    # W: [M, C/group, k1, k2, ...]; each output element takes C/group x prod(k) MACs.
    macs = _numel(out) * _numel(weight[1:])
    bias = bias_index is not None and node.has_input(bias_index)
    return macs, 2 * macs + (_numel(out) if bias else 0), 0


def _conv_transpose(node: _Node) -> _Counts | None:
    x = node.shape_in(0)
    weight = node.shape_in(1)
    out = node.shape_out()
    if x is None or weight is None or out is None or len(weight) < 2:
        return None
    # W: [C, M/group, k1, ...]: every input element is scattered into M/group x prod(k) outputs.
    macs = _numel(x) * _numel(weight[1:])
    return macs, 2 * macs + (_numel(out) if node.has_input(2) else 0), 0


def _matmul_macs(a: tuple[int, ...], out: tuple[int, ...]) -> int:
    """MACs of a (batched, broadcast) matrix product: each output element is a dot product of K."""
    return _numel(out) * (a[-1] if a else 1)


def _matmul(node: _Node) -> _Counts | None:
    a, out = node.shape_in(0), node.shape_out()
    if a is None or out is None:
        return None
    macs = _matmul_macs(a, out)
    return macs, 2 * macs, 0


def _matmul_integer(node: _Node, a_index: int = 0) -> _Counts | None:
    a, out = node.shape_in(a_index), node.shape_out()
    if a is None or out is None:
        return None
    return 0, 0, _matmul_macs(a, out)


def _matmul_nbits(node: _Node) -> _Counts | None:
    a, out = node.shape_in(0), node.shape_out()
    if a is None or out is None:
        return None
    # Weights are dequantized block by block and multiplied in floating point (the CPU kernel does
    # int8 compute only with accuracy_level 4): counted as integer MACs, the quantized op's work.
    return 0, 0, _matmul_macs(a, out)


def _gemm(node: _Node) -> _Counts | None:
    a, out = node.shape_in(0), node.shape_out()
    if a is None or out is None or len(a) != 2:
        return None
    k = a[0] if node.int_attr("transA", 0) else a[1]
    macs = _numel(out) * k
    return macs, 2 * macs + (_numel(out) if node.has_input(2) else 0), 0


def _einsum(node: _Node) -> _Counts | None:
    equation = str(node.attr("equation", "")).replace(" ", "")
    if "->" not in equation or "." in equation:
        return None
    lhs, _rhs = equation.split("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    for index, term in enumerate(terms):
        shape = node.shape_in(index)
        if shape is None or len(shape) != len(term):
            return None
        for letter, size in zip(term, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    if len(terms) < 2:  # a reduction or transpose of one operand: one add per input element
        shape = node.shape_in(0)
        return 0, _numel(shape) if shape else 0, 0
    # A contraction: one MAC per point of the joint index space (every letter of every operand).
    macs = _numel(list(sizes.values()))
    return macs, 2 * macs, 0


def _rnn(node: _Node, gates: int) -> _Counts | None:
    x, w, r = node.shape_in(0), node.shape_in(1), node.shape_in(2)
    if x is None or w is None or r is None or len(x) != 3 or len(w) != 3:
        return None
    seq, batch = (x[1], x[0]) if node.int_attr("layout", 0) else (x[0], x[1])
    directions, gates_hidden, input_size = w
    hidden = gates_hidden // gates
    per_step = batch * gates * hidden * (input_size + hidden)
    macs = seq * directions * per_step
    # Bias adds (two per gate when B is given), then the gate nonlinearities and the cell update:
    # about one FLOP per gate element plus 3 (LSTM/GRU cell arithmetic).
    extra = (
        seq * directions * batch * hidden * (gates + 3 + (2 * gates if node.has_input(3) else 0))
    )
    return macs, 2 * macs + extra, 0


def _attention_ms(node: _Node) -> _Counts | None:
    """com.microsoft Attention: packed QKV projection, then scores and weighted values."""
    x, w, out = node.shape_in(0), node.shape_in(1), node.shape_out()
    if x is None or w is None or out is None or len(x) != 3:
        return None
    batch, seq, _hidden_in = x
    projection = _numel(x) * w[-1]
    hidden = out[-1]
    past = node.shape_in(4)
    total = seq + (past[3] if past is not None and len(past) == 5 else 0)
    scores = 2 * batch * seq * total * hidden  # Q K^T and softmax(.) V
    softmax = batch * node.int_attr("num_heads", 1) * seq * total * FLOPS_PER_ELEMENT["Softmax"]
    macs = projection + scores
    return macs, 2 * macs + _numel(out) + softmax, 0


def _attention_core(node: _Node) -> _Counts | None:
    """MultiHeadAttention / GroupQueryAttention (com.microsoft): scores and weighted values."""
    q, out = node.shape_in(0), node.shape_out()
    if q is None or out is None or len(q) != 3:
        return None
    batch, seq, hidden = q
    heads = node.int_attr("num_heads", 1)
    total: int | None = None
    present = node.shape_out(1)
    if present is not None and len(present) == 4:
        total = present[2]
    else:
        k = node.shape_in(1)
        if k is not None and len(k) == 3 and k[0] == batch:
            total = k[1]
        elif k is not None and len(k) == 4:
            total = k[2]
        elif k is None and node.op_type == "MultiHeadAttention":
            total = seq  # packed QKV in the query input
    if total is None:
        return None
    if node.op_type == "GroupQueryAttention" and node.shape_in(1) is None:
        # packed QKV: the query input holds q, k and v heads
        kv_heads = node.int_attr("kv_num_heads", heads)
        hidden = hidden * heads // (heads + 2 * kv_heads)
    scores = 2 * batch * seq * total * hidden
    softmax = batch * heads * seq * total * FLOPS_PER_ELEMENT["Softmax"]
    return scores, 2 * scores + softmax, 0


def _attention_onnx(node: _Node) -> _Counts | None:
    """ONNX Attention (opset 23): Q [B, Hq, S, d] or [B, S, Hq*d]; K [B, Hkv, L, d] or [B, L, ...]."""
    q, k, v = node.shape_in(0), node.shape_in(1), node.shape_in(2)
    if q is None or k is None or v is None:
        return None
    present = node.shape_out(1)
    if len(q) == 4:
        batch, heads, seq, head_size = q
        total = present[2] if present is not None and len(present) == 4 else k[-2]
        v_head = v[-1]
    elif len(q) == 3:
        heads = node.int_attr("q_num_heads", 1)
        kv_heads = node.int_attr("kv_num_heads", heads)
        batch, seq, q_hidden = q
        head_size = q_hidden // heads
        total = present[2] if present is not None and len(present) == 4 else k[1]
        v_head = v[-1] // kv_heads
    else:
        return None
    macs = batch * heads * seq * total * (head_size + v_head)
    softmax = batch * heads * seq * total * FLOPS_PER_ELEMENT["Softmax"]
    return macs, 2 * macs + softmax, 0


def _pool(node: _Node) -> _Counts | None:
    out = node.shape_out()
    if out is None:
        return None
    kernel = node.attr("kernel_shape")
    if not isinstance(kernel, tuple):
        return None
    return 0, _numel(out) * _numel(kernel), 0


def _reduce(node: _Node) -> _Counts | None:
    x = node.shape_in(0)
    return None if x is None else (0, _numel(x), 0)


def _elementwise(node: _Node) -> _Counts | None:
    out = node.shape_out()
    if out is None:
        return None
    return 0, _numel(out) * FLOPS_PER_ELEMENT.get(node.op_type, 1), 0


def _resize(node: _Node) -> _Counts | None:
    x, out = node.shape_in(0), node.shape_out()
    if x is None or out is None:
        return None
    mode = str(node.attr("mode", "nearest"))
    if mode == "nearest":
        return 0, 0, 0  # a gather of the nearest input element
    axes = sum(1 for a, b in zip(x, out, strict=False) if a != b) or 1
    per_axis = 3 if mode == "linear" else 7  # linear: a - b, x t, + per axis; cubic: 4 taps
    return 0, _numel(out) * per_axis * axes, 0


def _qlinear_conv(node: _Node) -> _Counts | None:
    counts = _conv(node, weight_index=3, bias_index=None)
    return None if counts is None else (0, 0, counts[0])


def _conv_integer(node: _Node) -> _Counts | None:
    counts = _conv(node, weight_index=1, bias_index=None)
    return None if counts is None else (0, 0, counts[0])


def _zero(_node: _Node) -> _Counts:
    return 0, 0, 0


_Rule = Callable[[_Node], "_Counts | None"]

#: op type -> rule; the domain is checked for the com.microsoft ops that share a name with none.
RULES: Mapping[str, _Rule] = {
    "Conv": _conv,
    "FusedConv": _conv,
    "NhwcConv": _conv,
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul,
    "FusedMatMul": _matmul,
    "Gemm": _gemm,
    "FusedGemm": _gemm,
    "Einsum": _einsum,
    "RNN": lambda n: _rnn(n, 1),
    "GRU": lambda n: _rnn(n, 3),
    "LSTM": lambda n: _rnn(n, 4),
    "Attention": lambda n: _attention_ms(n) if n.domain == "com.microsoft" else _attention_onnx(n),
    "MultiHeadAttention": _attention_core,
    "GroupQueryAttention": _attention_core,
    "MatMulInteger": _matmul_integer,
    "DynamicQuantizeMatMul": _matmul_integer,
    "MatMulIntegerToFloat": _matmul_integer,
    "QLinearMatMul": _matmul_integer,
    "MatMulNBits": _matmul_nbits,
    "ConvInteger": _conv_integer,
    "QLinearConv": _qlinear_conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    "Resize": _resize,
    "Upsample": _resize,
    **dict.fromkeys(_ELEMENTWISE, _elementwise),
    **dict.fromkeys(FLOPS_PER_ELEMENT, _elementwise),
    **dict.fromkeys(_REDUCE, _reduce),
    **dict.fromkeys(_DATA_MOVEMENT, _zero),
}
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


# ---------------------------------------------------------------------------------------------
# Walking the graph


def _concrete(shape: TensorShape | None) -> tuple[int, ...] | None:
    if shape is None or shape.dims is None:
        return None
    if not all(isinstance(d, int) and d >= 0 for d in shape.dims):
        return None
    return tuple(int(d) for d in shape.dims)


class _Walker:
    def __init__(
        self,
        model: onnx.ModelProto,
        shapes: Mapping[tuple[str, str], TensorShape],
        weights: Mapping[tuple[str, str], tuple[int, tuple[str, ...]]],
    ) -> None:
        self.model = model
        self.shapes = shapes
        self.weights = weights  # (graph, name) -> (bytes, layer path)
        self.nodes: list[NodeCompute] = []
        self.unknown_ops: set[str] = set()
        self.constants = _small_int_constants(model)

    def resolve(self, graph: str, name: str) -> tuple[str, str] | None:
        """The key a name refers to from ``graph``: its own scope, then the enclosing ones."""
        return next(
            (
                (scope, name)
                for scope in enclosing_scopes(graph)
                if (scope, name) in self.shapes or (scope, name) in self.weights
            ),
            None,
        )

    def shape(self, graph: str, name: str) -> tuple[int, ...] | None:
        if not name:
            return None
        key = self.resolve(graph, name)
        return _concrete(self.shapes.get(key)) if key else None

    def tensor_bytes(self, graph: str, name: str) -> int:
        key = self.resolve(graph, name) if name else None
        if key is None:
            return 0
        shape = self.shapes.get(key)
        if shape is None or shape.nbytes is None:
            return 0
        return shape.nbytes

    def walk(
        self, graph: onnx.GraphProto, path: str, multiplier: int, note: str
    ) -> list[NodeCompute]:
        """Count every node of ``graph``; returns the nodes added (for If's branch choice)."""
        added: list[NodeCompute] = []
        for index, node in enumerate(graph.node):
            label = node_label(node, index)
            if node.op_type in _CONTROL_FLOW and node.domain in ("", "ai.onnx"):
                added.extend(self._control_flow(node, label, path, multiplier, note))
                continue
            counted = self._node(node, label, path, multiplier, note)
            self.nodes.append(counted)
            added.append(counted)
        return added

    def _control_flow(
        self, node: onnx.NodeProto, label: str, path: str, multiplier: int, note: str
    ) -> list[NodeCompute]:
        import onnx

        branches = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
        if node.op_type == "If":
            counted: list[list[NodeCompute]] = []
            for name in ("then_branch", "else_branch"):
                if name in branches:
                    mark = len(self.nodes)
                    self.walk(branches[name], f"{path}/{label}.{name}", multiplier, note)
                    counted.append(self.nodes[mark:])
                    del self.nodes[mark:]
            heavier = max(
                counted,
                key=lambda ns: (sum(n.flops for n in ns), sum(n.integer_macs for n in ns)),
                default=[],
            )
            tagged = [
                replace(n, note=_join_note(n.note, f"heavier branch of If {label}"))
                for n in heavier
            ]
            self.nodes.extend(tagged)
            return tagged
        body = branches.get("body")
        if body is None:
            return []
        inner_note = note
        times = 1
        if node.op_type == "Loop":
            trip = (
                self.constants.get((path, node.input[0])) if node.input and node.input[0] else None
            )
            if trip is None:
                inner_note = _join_note(
                    note, f"one iteration of Loop {label} (trip count not a constant)"
                )
            else:
                times = trip
                inner_note = _join_note(note, f"x{trip} iterations of Loop {label}")
        else:  # Scan: the first scan input's scanned axis
            num_scan_inputs = int(
                next((a.i for a in node.attribute if a.name == "num_scan_inputs"), 0)
            )
            state = len(node.input) - num_scan_inputs
            axes = next((tuple(a.ints) for a in node.attribute if a.name == "scan_input_axes"), ())
            first = self.shape(path, node.input[state]) if num_scan_inputs else None
            axis = axes[0] if axes else 0
            if first is None:
                inner_note = _join_note(note, f"one iteration of Scan {label} (length unknown)")
            else:
                times = first[axis]
                inner_note = _join_note(note, f"x{times} iterations of Scan {label}")
        mark = len(self.nodes)
        self.walk(body, f"{path}/{label}.body", multiplier * times, inner_note)
        return self.nodes[mark:]

    def _node(
        self, node: onnx.NodeProto, label: str, path: str, multiplier: int, note: str
    ) -> NodeCompute:
        import onnx

        attributes = {
            a.name: _attribute_value(a)
            for a in node.attribute
            if a.type
            in (
                onnx.AttributeProto.INT,
                onnx.AttributeProto.FLOAT,
                onnx.AttributeProto.STRING,
                onnx.AttributeProto.INTS,
                onnx.AttributeProto.FLOATS,
            )
        }
        view = _Node(
            node.op_type,
            node.domain,
            attributes,
            tuple(self.shape(path, name) for name in node.input),
            tuple(self.shape(path, name) for name in node.output),
        )
        weight_bytes = 0
        activation_bytes = 0
        layer: tuple[str, ...] | None = None
        for name in node.input:
            key = self.resolve(path, name) if name else None
            if key is not None and key in self.weights:
                nbytes, weight_layer = self.weights[key]
                weight_bytes += nbytes
                layer = layer or weight_layer
            else:
                activation_bytes += self.tensor_bytes(path, name)
        activation_bytes += sum(self.tensor_bytes(path, name) for name in node.output)
        if layer is None:
            parts = _components(node.name) if node.name else []
            layer = tuple(parts[:-1]) if len(parts) > 1 else ((path,) if path else ())
        rule = RULES.get(node.op_type)
        counts: _Counts | None
        resolved = True
        if rule is None:
            self.unknown_ops.add(f"{node.domain}.{node.op_type}" if node.domain else node.op_type)
            counts = (0, 0, 0)
        else:
            counts = rule(view)
            if counts is None:
                resolved = False
                counts = (0, 0, 0)
        macs, flops, integer_macs = (c * multiplier for c in counts)
        return NodeCompute(
            name=label,
            op_type=node.op_type,
            domain=node.domain,
            graph=path,
            layer=layer,
            macs=macs,
            flops=flops,
            integer_macs=integer_macs,
            weight_bytes=weight_bytes * multiplier,
            activation_bytes=activation_bytes * multiplier,
            multiplier=multiplier,
            resolved=resolved,
            note=note,
        )


def _join_note(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _attribute_value(attribute: onnx.AttributeProto) -> object:
    import onnx

    if attribute.type == onnx.AttributeProto.INT:
        return int(attribute.i)
    if attribute.type == onnx.AttributeProto.FLOAT:
        return float(attribute.f)
    if attribute.type == onnx.AttributeProto.STRING:
        return attribute.s.decode("utf-8", errors="replace")
    if attribute.type == onnx.AttributeProto.INTS:
        return tuple(int(i) for i in attribute.ints)
    return tuple(float(f) for f in attribute.floats)


def _small_int_constants(model: onnx.ModelProto) -> dict[tuple[str, str], int]:
    """Scalar integer constants (initializers and Constant nodes kept in the skeleton), for trip counts."""
    import onnx
    from onnx import numpy_helper

    from graph_analysis.shapes import iter_graphs

    found: dict[tuple[str, str], int] = {}

    def scalar(tensor: onnx.TensorProto) -> int | None:
        if len(tensor.dims) > 1 or math.prod(tensor.dims) != 1 or tensor.data_location == 1:
            return None
        if tensor.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            return None
        try:
            return int(numpy_helper.to_array(tensor).reshape(-1)[0])
        except (ValueError, TypeError):
            return None

    for path, graph in iter_graphs(model.graph):
        for tensor in graph.initializer:
            value = scalar(tensor)
            if value is not None:
                found[(path, tensor.name)] = value
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    value = None
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        value = scalar(a.t)
                    elif a.name == "value_int":
                        value = int(a.i)
                    if value is not None:
                        found[(path, node.output[0])] = value
    return found


def _sum_into(rows: dict[Any, list[int]], key: Any, node: NodeCompute) -> None:
    """Add one node to the ``[nodes, macs, flops, integer_macs, bytes]`` row of ``key``."""
    row = rows.setdefault(key, [0, 0, 0, 0, 0])
    row[0] += 1
    row[1] += node.macs
    row[2] += node.flops
    row[3] += node.integer_macs
    row[4] += node.bytes_moved


def _totals_by_op(nodes: Sequence[NodeCompute]) -> tuple[OpCompute, ...]:
    rows: dict[Any, list[int]] = {}
    for n in nodes:
        _sum_into(rows, n.op_type, n)
    ops = [OpCompute(op, *values) for op, values in rows.items()]
    return tuple(sorted(ops, key=lambda o: (-o.flops, -o.integer_macs, -o.bytes_moved, o.op_type)))


def _totals_by_layer(nodes: Sequence[NodeCompute], depth: int) -> tuple[LayerCompute, ...]:
    rows: dict[Any, list[int]] = {}
    for n in nodes:
        path = n.layer[:depth]
        # Every prefix of the node's layer path; a node with no layer goes to the root row ().
        for k in range(1, len(path) + 1) if path else (0,):
            _sum_into(rows, path[:k], n)
    ordered = sorted(rows.items(), key=lambda item: item[0])
    return tuple(LayerCompute(path, *values) for path, values in ordered)


_ASSUMPTIONS = (
    "1 MAC = one multiply and one add; FLOPs of MAC-bearing ops = 2 x MACs + one per output element "
    "for a bias add",
    "elementwise ops: 1 FLOP per output element (transcendental functions included); "
    "normalizations and Softmax: the per-element costs in FLOPS_PER_ELEMENT",
    "data-movement ops (Reshape, Transpose, Gather, Concat, Cast, Q/DQ...): 0 FLOPs",
    "integer MACs (MatMulInteger, ConvInteger, QLinear*, MatMulNBits) are reported apart, not in MACs",
    "If: the heavier branch; Loop: body x trip count when constant, else one iteration; Scan: body x "
    "scanned length",
    f"training step = {TRAINING_FLOPS_FACTOR} x forward FLOPs (gradients w.r.t. inputs and weights)",
)


_WEIGHT_ROLES = (Role.PARAMETER, Role.RUNNING_STAT, Role.QUANT_META)


def count_compute_model(
    model: onnx.ModelProto,
    bindings: Bindings | None = None,
    *,
    weights: Mapping[tuple[str, str], tuple[int, tuple[str, ...]]] | None = None,
    stored: ModelWeights | None = None,
    default_dim: int | None = 1,
    layer_depth: int = 64,
    path: str | Path | None = None,
    table: NodeTable | None = None,
) -> ComputeReport:
    """Count MACs, FLOPs and bytes moved of every node of a loaded (skeleton) model.

    Args:
        model: the model (the weight-free skeleton is enough; it is not modified).
        bindings: input bindings, as for ``memory``.
        weights: ``(graph, name) -> (bytes, layer path)`` of the weights, from the one reading of
            the model; without it they come from ``stored`` (layers then from node names).
        stored: the model's stored tensors (:func:`graph_analysis._weights.read_weights`); read from
            ``model`` when not given.
        default_dim: value for dims nobody bound; None makes an unbound dim an error.
        layer_depth: deepest layer-tree level in ``layers``.
        path: the model's path, for error messages.
        table: the main graph's node table from the same reading, when the caller has it.

    Raises:
        ShapeBindingError: a binding that does not fit the graph.
    """
    stored = stored or read_weights(model)
    if weights is None:
        weights = {
            (w.graph, w.name): (w.nbytes, ()) for w in stored.tensors if w.role in _WEIGHT_ROLES
        }
    shapes = infer_shapes(
        model, bindings, default_dim=default_dim, path=path, stored=stored, table=table
    )
    walker = _Walker(model, shapes.lookup(), weights)
    walker.walk(model.graph, MAIN_GRAPH, 1, "")
    nodes = tuple(walker.nodes)
    flops = sum(n.flops for n in nodes)
    return ComputeReport(
        inputs=shapes.inputs,
        macs=sum(n.macs for n in nodes),
        flops=flops,
        integer_macs=sum(n.integer_macs for n in nodes),
        bytes_moved=sum(n.bytes_moved for n in nodes),
        training_flops=TRAINING_FLOPS_FACTOR * flops,
        nodes=nodes,
        by_op=_totals_by_op(nodes),
        layers=_totals_by_layer(nodes, layer_depth),
        unknown_ops=tuple(sorted(walker.unknown_ops)),
        unresolved=tuple(n.name for n in nodes if not n.resolved),
        assumptions=_ASSUMPTIONS,
    )


def count_compute(
    path: str | Path,
    bindings: Bindings | None = None,
    *,
    default_dim: int | None = 1,
    layer_depth: int = 64,
    reading: tuple[Reading, ModelReport] | None = None,
) -> ComputeReport:
    """Count MACs, FLOPs and bytes moved of an ONNX model at the bound input shapes.

    The file is read once: the weights, their roles and layers (the same tree as ``inspect``) and
    the skeleton handed to shape inference all come from that reading; ``reading`` is that
    reading and report (:func:`graph_analysis._weights.reading_and_report`) when the caller has
    them already.

    Args:
        path: the ``.onnx`` file.
        bindings: input bindings (``--input-shape``/``--dim``/``--batch``).
        default_dim: value for dims nobody bound; None makes an unbound dim an error.
        layer_depth: deepest layer-tree level in ``layers``.

    Returns:
        Per-node, per-op-type and per-layer MACs, FLOPs and bytes, with the conventions used.

    Raises:
        InputError: the file is not a readable ONNX model, or a binding does not fit it.
    """
    (stored, skeleton, table), report = reading or reading_and_report(path)
    weights = {
        (graph_scope(t.graph), t.name): (t.nbytes, t.layer)
        for t in report.tensors
        if t.role in _WEIGHT_ROLES
    }
    return count_compute_model(
        skeleton,
        bindings,
        weights=weights,
        stored=stored,
        default_dim=default_dim,
        layer_depth=layer_depth,
        path=path,
        table=table,
    )


def compute_to_dict(compute: ComputeReport, *, depth: int | None = None) -> dict[str, object]:
    """The JSON form (``compute`` section; keys documented in docs/compute.md)."""
    return {
        "kind": "counted",
        "inputs": [
            {
                "name": t.name,
                "dtype": t.data_type.name if t.data_type else None,
                "shape": list(t.dims or ()),
            }
            for t in compute.inputs
        ],
        "macs": compute.macs,
        "flops": compute.flops,
        "integer_macs": compute.integer_macs,
        "bytes_moved": compute.bytes_moved,
        "arithmetic_intensity": compute.arithmetic_intensity,
        "training_flops": compute.training_flops,
        "by_op": {
            o.op_type: {
                "nodes": o.nodes,
                "macs": o.macs,
                "flops": o.flops,
                "integer_macs": o.integer_macs,
                "bytes": o.bytes_moved,
            }
            for o in compute.by_op
        },
        "layers": [
            {
                "path": "/".join(row.path),
                "depth": len(row.path),
                "nodes": row.nodes,
                "macs": row.macs,
                "flops": row.flops,
                "integer_macs": row.integer_macs,
                "bytes": row.bytes_moved,
            }
            for row in compute.layers
            if depth is None or len(row.path) <= depth
        ],
        "nodes": [
            {
                "name": n.name,
                "op_type": n.op_type,
                "domain": n.domain,
                "graph": n.graph,
                "layer": "/".join(n.layer),
                "macs": n.macs,
                "flops": n.flops,
                "integer_macs": n.integer_macs,
                "bytes": n.bytes_moved,
                "multiplier": n.multiplier,
                "resolved": n.resolved,
                "note": n.note,
            }
            for n in compute.nodes
        ],
        "unknown_ops": list(compute.unknown_ops),
        "unresolved_nodes": list(compute.unresolved),
        "assumptions": list(compute.assumptions),
    }
