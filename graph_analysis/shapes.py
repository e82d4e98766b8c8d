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
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from graph_analysis._weights import ModelWeights, read_weights
from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType, nbytes
from graph_analysis.errors import ShapeBindingError
from graph_analysis.loading import load_skeleton, read_model

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


@dataclass(frozen=True)
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
        if self.dims is None or not all(isinstance(d, int) and d >= 0 for d in self.dims):
            return None
        count = 1
        for d in self.dims:
            count *= int(d)
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
    graph: onnx.GraphProto, path: str = MAIN_GRAPH
) -> Iterator[tuple[str, onnx.GraphProto]]:
    """Yield ``(graph_path, graph)`` for the graph and every nested subgraph, parents first."""
    yield path, graph
    for index, node in enumerate(graph.node):
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
    inputs = _real_inputs(bound.graph)
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
            for i in _real_inputs(model.graph)
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
                    for i in _real_inputs(model.graph)
                    for d in i.type.tensor_type.shape.dim
                    if _is_unknown_dim(d)
                }
            )
            raise ShapeBindingError(
                path,
                f"--dim {name}: no input has a dim named {name!r} (symbolic dims: {available})",
            )
    return bound, dim_values, tuple(defaulted)


# ---------------------------------------------------------------------------------------------
# Inference


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


def _collect(model: onnx.ModelProto) -> dict[tuple[str, str], TensorShape]:
    """Shapes the inference engines declared (inputs, value_info, outputs) in every graph."""
    found: dict[tuple[str, str], TensorShape] = {}
    for path, graph in iter_graphs(model.graph):
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            shape = _shape_of(vi, path)
            key = (path, vi.name)
            if key not in found or (shape.is_known and not found[key].is_known):
                found[key] = shape
    return found


def _stored_shapes(stored: ModelWeights) -> dict[tuple[str, str], TensorShape]:
    """Stored tensors (initializers, Constant outputs) as the one reading has them: exact."""
    return {
        (t.graph, t.name): TensorShape(t.name, t.graph, t.data_type, t.dims) for t in stored.tensors
    }


def _node_outputs(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.NodeProto, str]]:
    for path, graph in iter_graphs(model.graph):
        for node in graph.node:
            for out in node.output:
                if out:
                    yield path, node, out


def _count_unknown(model: onnx.ModelProto, found: Mapping[tuple[str, str], TensorShape]) -> int:
    return sum(
        1
        for path, _node, out in _node_outputs(model)
        if (path, out) not in found or not found[(path, out)].is_known
    )


def _run_onnx_inference(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception as e:
        # A model onnx's inference rejects (a real inconsistency, or an op it mis-handles): keep the
        # bound model; the other engine and the fallback still give figures.
        notes.append(f"onnx shape inference failed: {_first_line(e)}")
        return model


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

    Returns:
        The inputs as bound, every tensor's shape and the unknown ones with their treatment.

    Raises:
        ShapeBindingError: a binding that does not fit the graph.
        ModelFormatError: ``model`` is a path to something that is not an ONNX model.
    """
    if isinstance(model, (str, Path)):
        path = model
        model_file = read_model(model)
        stored = stored or read_weights(model_file)
        model = load_skeleton(model_file)
    bindings = bindings or Bindings()
    bound, dim_values, defaulted = bind_inputs(model, bindings, default_dim=default_dim, path=path)
    notes: list[str] = []
    inferred = _run_onnx_inference(bound, notes)
    if stored is None:
        stored = read_weights(model)
    weights = _stored_shapes(stored)
    found = _collect(inferred) | weights
    engines = ["onnx"]
    if use_symbolic and _count_unknown(inferred, found):
        symbolic = _run_symbolic_inference(inferred, notes, nchwc_block_size)
        if symbolic is not None:
            extra = _collect(symbolic)
            gained = False
            for key, shape in extra.items():
                if shape.is_known and (key not in found or not found[key].is_known):
                    found[key] = shape
                    gained = True
            if gained:
                engines.append("onnxruntime-symbolic")
    unknown = _treat_unknown(inferred, found)
    inputs = tuple(found[(MAIN_GRAPH, i.name)] for i in _real_inputs(inferred.graph))
    return InferredShapes(
        inputs=inputs,
        dim_values=dim_values,
        defaulted=defaulted,
        tensors=tuple(found.values()),
        unknown=tuple(unknown),
        engines=tuple(engines),
        notes=tuple(notes),
    )


def _treat_unknown(
    model: onnx.ModelProto, found: dict[tuple[str, str], TensorShape]
) -> list[UnknownTensor]:
    """Give every node output without a concrete shape an assumed size, in execution order.

    The size is that of the node's largest known *activation* input: never a weight's, since an
    output sized like a weight matrix is wrong for nearly every op that reads one (a MatMulInteger
    output sized like its 8 MiB int8 weight made a quantized recognizer's estimate 1.37x). A node
    computed from weights only is itself a weight (onnxruntime folds it): sized as its largest input.
    """
    unknown: list[UnknownTensor] = []
    if not _count_unknown(model, found):
        return unknown
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
        scope = graph_path
        while True:
            key = (scope, name)
            if key in assumed or key in found or key in weights:
                return scope
            if scope == MAIN_GRAPH:
                return None
            scope = scope.rsplit("/", 1)[0]

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
