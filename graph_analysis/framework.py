"""The framework's own counts recorded in an exported ONNX file, reconciled with the graph's.

A converter (``converters.from_torch`` / ``converters.from_tensorflow``) writes one metadata
property, :data:`METADATA_KEY`, holding JSON (schema below). This module is its read side and is
framework-free: it never imports torch or tensorflow.

Metadata JSON (``schema`` 1)::

    {
      "schema": 1,
      "framework": {"name": "torch", "version": "2.13.0"},
      "exporter": "torch.onnx.export(dynamo=True, optimize=False)",
      "fallback_reason": null,
      "totals": {"total": 241, "trainable": 241, "non_trainable": 0, "buffers": 0},
      "tensors": [   # every framework tensor: unique parameters (tied once) and buffers
        {"name": "fc1.weight", "kind": "parameter", "trainable": true, "elements": 200,
         "module": "Linear", "all_zero": false}, ...
      ],
      "initializers": {  # ONNX initializer name -> the framework tensor it holds
        "fc1.weight": {"framework_name": "fc1.weight", "kind": "parameter", "trainable": true,
                       "layout_changed": false}, ...
      }
    }

Framework definitions: PyTorch ``total`` is the sum of ``numel()`` over unique ``parameters()``
(tied weights once), ``trainable`` those with ``requires_grad``, ``buffers`` the sum over
``buffers()`` (not part of ``total``). Keras ``total`` is ``count_params()``,
trainable/non-trainable its weights lists, ``buffers`` 0.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TypeVar

__all__ = [
    "METADATA_KEY",
    "SCHEMA_VERSION",
    "Cause",
    "FrameworkInfo",
    "FrameworkLayer",
    "FrameworkSummary",
    "FrameworkTensor",
    "FrameworkTotals",
    "InitializerOrigin",
    "LayerTrainability",
    "Reconciliation",
    "ReconciliationEntry",
    "TensorKind",
    "duplicate_tensor_names",
    "framework_info_to_dict",
    "framework_record_warning",
    "framework_summary_from_dict",
    "framework_summary_to_dict",
    "layers_from_tensors",
    "read_framework_info",
    "reconcile",
    "reconciliation_to_dict",
    "recorded_role",
    "rolled_up_layers",
    "tied_copies_from_metadata",
    "trainable_by_layer",
    "trainable_flags",
    "write_framework_json",
]

RoleT = TypeVar("RoleT")

METADATA_KEY = "modelsize.framework"
SCHEMA_VERSION = 1

# Roles the analysis core counts in ``parameters.total`` (learned parameters + running statistics).
_COUNTED_ROLES = frozenset({"parameter", "running_stat"})


class TensorKind(str, Enum):
    """What a framework tensor is, by the framework's own definition."""

    PARAMETER = "parameter"
    BUFFER = "buffer"


class Cause(str, Enum):
    """Why the graph's parameter count differs from the framework's: one value per change."""

    DUPLICATE_STORAGE = "duplicate_storage"
    """A framework tensor (a tied weight) written twice or more: counted once, copies cost bytes."""
    BATCHNORM_FOLDED = "batchnorm_folded"
    """BatchNorm scale/shift/statistics folded into the preceding Conv/MatMul by the exporter."""
    ZERO_BIAS_DROPPED = "zero_bias_dropped"
    """An all-zero bias the exporter removed (adding zero is a no-op)."""
    REWRITTEN = "rewritten_by_exporter"
    """A framework tensor replaced by an exporter tensor of as many elements (fused, re-laid)."""
    CONSTANTS_FOLDED = "constants_folded"
    """Parameters in the graph with no framework counterpart: folded constants, fused weights."""
    REMOVED = "removed_by_exporter"
    """A framework parameter absent from the graph when the record cannot say whether the forward
    read it (no usage recorded: Keras, TorchScript)."""
    BUFFER_IN_GRAPH = "buffer_in_graph"
    """A buffer (running statistics, position ids) in the graph but not in ``parameters()``."""
    OTHER_ROLE = "not_counted_in_graph"
    """A framework parameter in the graph but not counted there (classified as a constant)."""
    UNUSED = "unused_in_forward"
    """A framework parameter the forward never read on the example input (a spare layer): the
    exporter had nothing to write."""
    RELAID = "relaid_by_exporter"
    """A framework parameter the forward reads whose values the exporter stored inside other
    graph tensors (an LSTM's two biases merged into ONNX's one wider ``B``, a bias summed into a
    folded constant): those graph tensors appear under ``constants_folded``."""
    IDENTICAL_CONTENT = "identical_content"
    """A framework parameter whose values equal another's: the exporter stored the two once (a
    fresh model's all-ones norm weights), or the deep scan counted them once."""
    UNEXPLAINED = "unexplained"
    """What remains after every known cause: should be zero."""


@dataclass(frozen=True)
class FrameworkTotals:
    """Element counts by the framework's own definition."""

    total: int
    trainable: int
    non_trainable: int
    buffers: int


@dataclass(frozen=True)
class FrameworkLayer:
    """One layer (module) of a framework model, named, typed and counted by the framework itself.

    Filled by the converters without any export (PyTorch: ``named_modules()``; Keras: the model's
    layers, nested models recursively), in the framework's order with every parent before its
    children (pre-order), the root model first at depth 0. Counts are the layer's OWN tensors
    (not its children's); a tensor shared by several layers (tied weights, a reused Keras layer)
    is counted once, at the first layer holding it, so the ``parameters`` of all rows sum to
    :attr:`FrameworkTotals.total` and their ``buffers`` to :attr:`FrameworkTotals.buffers`.
    :func:`rolled_up_layers` sums the subtrees for a table at a given depth.

    Attributes:
        name: the full name the user knows (``encoder.layer.0.attention``, ``block_1/conv``);
            ``""`` for the root model.
        type: the layer's class name (``Conv2d``, ``Dense``, ``GPT2Block``).
        depth: 0 for the root, 1 for its direct children, and so on.
        parameters: parameter elements the layer holds, by the framework's definition of
            ``total`` (Keras: every weight, BatchNorm moving statistics included).
        trainable: the trainable part of ``parameters``.
        frozen: the part of ``parameters - trainable`` the user froze (``requires_grad=False``,
            Keras ``layer.trainable = False``); Keras BatchNorm moving statistics are
            non-trainable by nature, not frozen, and are left out of it.
        buffers: elements of the layer's buffers (PyTorch: BatchNorm running statistics,
            pruning masks, position ids; not in ``parameters``); 0 for Keras.
        output_shape: the layer's output shape(s) as the framework reported them on the example
            input (``"(1, 64, 16, 16)"``, several outputs joined by ``"; "``), ``""`` when unknown
            (no forward ran, or the layer was not called).
    """

    name: str
    type: str
    depth: int
    parameters: int
    trainable: int
    frozen: int = 0
    buffers: int = 0
    output_shape: str = ""

    @property
    def non_trainable(self) -> int:
        """``parameters - trainable``."""
        return self.parameters - self.trainable


@dataclass(frozen=True)
class FrameworkSummary:
    """The framework's own answer about a model, counted by the framework: no export needed.

    Attributes:
        name: the framework (``torch``, ``keras``, ``tensorflow``).
        version: its version.
        model_type: the root model's class name.
        totals: the framework's totals (definitions in this module's docstring).
        layers: the per-layer table (:class:`FrameworkLayer`, own counts, pre-order).
    """

    name: str
    version: str
    model_type: str
    totals: FrameworkTotals
    layers: tuple[FrameworkLayer, ...] = ()


@dataclass(frozen=True)
class FrameworkTensor:
    """One framework tensor (a unique parameter or a buffer)."""

    name: str
    kind: TensorKind
    trainable: bool
    num_elements: int
    module: str = ""
    is_all_zero: bool = False
    merged_into: str = ""
    """The ONNX initializer that holds this tensor's values for another framework tensor, when
    the exporter merged identical tensors (empty otherwise)."""
    used_in_forward: bool | None = None
    """Whether the framework's forward on the example input read this tensor (None: unknown, e.g.
    a TorchScript module or a Keras model). A parameter it never read is ``unused_in_forward``."""


@dataclass(frozen=True)
class InitializerOrigin:
    """The framework tensor an ONNX initializer holds.

    ``layout_changed`` is True when the initializer holds the same values re-laid out (a transposed
    tied embedding, an HWIO kernel written OIHW).
    """

    framework_name: str
    kind: TensorKind
    trainable: bool
    layout_changed: bool = False


@dataclass(frozen=True)
class FrameworkInfo:
    """What the converter recorded about the framework model behind an ONNX file."""

    name: str
    version: str
    exporter: str
    totals: FrameworkTotals
    tensors: tuple[FrameworkTensor, ...] = ()
    initializers: Mapping[str, InitializerOrigin] = field(default_factory=dict)
    fallback_reason: str | None = None


@dataclass(frozen=True)
class ReconciliationEntry:
    """One difference between the framework's count and the graph's.

    Attributes:
        cause: the kind of change.
        tensors: the tensor names involved (framework names for tensors missing from the graph,
            ONNX names otherwise).
        elements: elements of those tensors.
        nbytes: bytes of those tensors in the graph (0 for tensors absent from it).
        delta_elements: this entry's signed contribution to ``graph_total - framework_total``
            (0 for duplicate storage counted once and for buffers not counted as parameters).
    """

    cause: Cause
    tensors: tuple[str, ...]
    elements: int
    nbytes: int
    delta_elements: int


@dataclass(frozen=True)
class Reconciliation:
    """How the graph's parameter count follows from the framework's.

    ``framework_total + sum(e.delta_elements for e in entries) == graph_total`` always holds; any
    remainder is an :attr:`Cause.UNEXPLAINED` entry, so ``is_exact`` says whether every element is
    accounted for by a known cause.
    """

    framework_total: int
    graph_total: int
    entries: tuple[ReconciliationEntry, ...]

    @property
    def is_exact(self) -> bool:
        """True when no element is left unexplained."""
        return all(e.cause is not Cause.UNEXPLAINED for e in self.entries)


@dataclass(frozen=True)
class LayerTrainability:
    """Trainable and frozen parameter elements under one framework layer (the framework's names)."""

    layer: str
    trainable: int
    frozen: int


class _TensorRecordLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> Any: ...
    @property
    def num_elements(self) -> int: ...
    @property
    def nbytes(self) -> int: ...


class _ParametersLike(Protocol):
    @property
    def total(self) -> int: ...


class _ReportLike(Protocol):
    @property
    def tensors(self) -> Iterable[_TensorRecordLike]: ...
    @property
    def parameters(self) -> _ParametersLike: ...


def _role_name(role: Any) -> str:
    return str(getattr(role, "value", role))


def _is_counted(record: _TensorRecordLike) -> bool:
    """Whether the core counted this tensor in ``parameters.total`` (copies count once)."""
    return _role_name(record.role) in _COUNTED_ROLES and not getattr(record, "duplicate_of", None)


# ---------------------------------------------------------------------------------------------
# JSON (de)serialisation


def framework_info_to_dict(info: FrameworkInfo) -> dict[str, Any]:
    """The metadata JSON object for ``info`` (the schema in this module's docstring)."""
    return {
        "schema": SCHEMA_VERSION,
        "framework": {"name": info.name, "version": info.version},
        "exporter": info.exporter,
        "fallback_reason": info.fallback_reason,
        "totals": {
            "total": info.totals.total,
            "trainable": info.totals.trainable,
            "non_trainable": info.totals.non_trainable,
            "buffers": info.totals.buffers,
        },
        "tensors": [
            {
                "name": t.name,
                "kind": t.kind.value,
                "trainable": t.trainable,
                "elements": t.num_elements,
                "module": t.module,
                "all_zero": t.is_all_zero,
                "merged_into": t.merged_into,
                "used": t.used_in_forward,
            }
            for t in info.tensors
        ],
        "initializers": {
            name: {
                "framework_name": o.framework_name,
                "kind": o.kind.value,
                "trainable": o.trainable,
                "layout_changed": o.layout_changed,
            }
            for name, o in info.initializers.items()
        },
    }


def write_framework_json(info: FrameworkInfo) -> str:
    """The compact JSON text stored under :data:`METADATA_KEY`."""
    return json.dumps(framework_info_to_dict(info), separators=(",", ":"))


def read_framework_info(metadata: Mapping[str, str]) -> FrameworkInfo | None:
    """Read the framework info a converter stored in a model's ``metadata_props``.

    Args:
        metadata: the model's metadata properties (``report.metadata``).

    Returns:
        The info, or None when the model carries none, or carries a schema this version does not
        read, or the record is damaged (the metadata is advisory: it never stops an analysis;
        :func:`framework_record_warning` says why a record present was ignored).
    """
    text = metadata.get(METADATA_KEY)
    if not text:
        return None
    parsed = _parse_record(text)
    return parsed if isinstance(parsed, FrameworkInfo) else None


def framework_record_warning(metadata: Mapping[str, str]) -> str | None:
    """One line saying why the model's :data:`METADATA_KEY` record was ignored, or None.

    None when the model has no record or the record was read.
    """
    text = metadata.get(METADATA_KEY)
    if not text:
        return None
    parsed = _parse_record(text)
    if isinstance(parsed, FrameworkInfo):
        return None
    return f"the {METADATA_KEY} metadata record is ignored: {parsed}"


class _DamagedRecordError(Exception):
    """The record's JSON is valid but does not follow the schema (the message says where)."""


@functools.lru_cache(maxsize=8)
def _parse_record(text: str) -> FrameworkInfo | str:
    """The record's info, or one line saying what is wrong with it (never raises).

    Every value is type-checked: a count must be a JSON integer (``Infinity``, ``1e400`` or ``2.5``
    is damage, not a number to truncate), a name a string, a flag a boolean.
    """
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        return "its JSON is nested too deeply"
    except ValueError as e:  # json.JSONDecodeError, and the constants refused above
        return f"it is not valid JSON ({_first_line(e)})"
    try:
        return _framework_info(data)
    except _DamagedRecordError as e:
        return str(e)
    except RecursionError:
        return "its JSON is nested too deeply"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _first_line(error: BaseException) -> str:
    line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return line[:200]


def _framework_info(data: Any) -> FrameworkInfo | str:
    obj = _object(data, "the record")
    schema = obj.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        return f"schema {_shown(schema)}; this version reads schema {SCHEMA_VERSION}"
    framework = _object(obj.get("framework"), "framework")
    totals = _object(obj.get("totals"), "totals")
    fallback = obj.get("fallback_reason")
    if fallback is not None and not isinstance(fallback, str):
        raise _DamagedRecordError("fallback_reason is not a string")
    tensors = obj.get("tensors", [])
    if not isinstance(tensors, list):
        raise _DamagedRecordError("tensors is not a list")
    initializers = _object(obj.get("initializers", {}), "initializers")
    return FrameworkInfo(
        name=_str(framework, "name", "framework"),
        version=_str(framework, "version", "framework"),
        exporter=_str(obj, "exporter", "the record"),
        fallback_reason=fallback,
        totals=FrameworkTotals(
            total=_count(totals, "total", "totals"),
            trainable=_count(totals, "trainable", "totals"),
            non_trainable=_count(totals, "non_trainable", "totals"),
            buffers=_count(totals, "buffers", "totals"),
        ),
        tensors=tuple(_framework_tensor(t, i) for i, t in enumerate(tensors)),
        initializers={name: _origin(origin, name) for name, origin in initializers.items()},
    )


def _framework_tensor(data: Any, index: int) -> FrameworkTensor:
    where = f"tensors[{index}]"
    t = _object(data, where)
    return FrameworkTensor(
        name=_str(t, "name", where),
        kind=_kind(t, where),
        trainable=_flag(t, "trainable", where),
        num_elements=_count(t, "elements", where),
        module=_str(t, "module", where, default=""),
        is_all_zero=_flag(t, "all_zero", where, default=False),
        merged_into=_str(t, "merged_into", where, default=""),
        used_in_forward=None if t.get("used") is None else _flag(t, "used", where),
    )


def _origin(data: Any, name: str) -> InitializerOrigin:
    where = f"initializers[{_shown(name)}]"
    o = _object(data, where)
    return InitializerOrigin(
        framework_name=_str(o, "framework_name", where),
        kind=_kind(o, where),
        trainable=_flag(o, "trainable", where),
        layout_changed=_flag(o, "layout_changed", where, default=False),
    )


_MISSING = object()


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _DamagedRecordError(f"{where} is not a JSON object")
    return value


def _field(obj: dict[str, Any], key: str, where: str, default: Any) -> Any:
    value = obj.get(key, default)
    if value is _MISSING:
        raise _DamagedRecordError(f"{where} has no {key!r}")
    return value


def _str(obj: dict[str, Any], key: str, where: str, default: Any = _MISSING) -> str:
    value = _field(obj, key, where, default)
    if not isinstance(value, str):
        raise _DamagedRecordError(f"{where}.{key} is not a string")
    return value


def _flag(obj: dict[str, Any], key: str, where: str, default: Any = _MISSING) -> bool:
    value = _field(obj, key, where, default)
    if not isinstance(value, bool):
        raise _DamagedRecordError(f"{where}.{key} is not true or false")
    return value


def _count(obj: dict[str, Any], key: str, where: str) -> int:
    value = _field(obj, key, where, _MISSING)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _DamagedRecordError(f"{where}.{key} is not a non-negative integer")
    return value


def _kind(obj: dict[str, Any], where: str) -> TensorKind:
    value = _field(obj, "kind", where, _MISSING)
    try:
        return TensorKind(value)
    except (ValueError, TypeError):
        raise _DamagedRecordError(f"{where}.kind {_shown(value)} is not a tensor kind") from None


def _shown(value: Any) -> str:
    """A JSON value in a message, cut short (a damaged record can hold anything)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def trainable_flags(info: FrameworkInfo) -> dict[str, bool]:
    """``{initializer: trainable}`` for the initializers holding framework PARAMETERS that can be
    trained or frozen: buffers (BatchNorm running statistics, masks) and Keras moving statistics
    are left out, so a table's "frozen" column never counts them (they are no frozen layer)."""
    tensors = {t.name: t for t in info.tensors}
    flags: dict[str, bool] = {}
    for onnx_name, origin in info.initializers.items():
        tensor = tensors.get(origin.framework_name)
        if origin.kind is not TensorKind.PARAMETER:
            continue
        if tensor is not None and not origin.trainable and _is_moving_statistic(tensor):
            continue
        flags[onnx_name] = origin.trainable
    return flags


def recorded_role(role: RoleT, origin: InitializerOrigin | None) -> RoleT:
    """The role of a graph tensor once the framework's record is heard: the record decides.

    A tensor the framework calls a parameter (a PReLU slope or a scalar ``nn.Parameter`` that the
    graph reads through a Reshape or a Mul, which the graph rule alone calls a constant) is a
    parameter; a tensor the framework calls a buffer (a pruning ``weight_mask``, a buffer of
    fixed position encodings) is not a learned parameter, whatever op reads it. Running
    statistics keep their role (the analysis counts them beside the parameters), and so does any
    tensor the record does not name.

    Args:
        role: the graph rule's role (a ``graph_analysis.report.Role``).
        origin: the record's entry for the tensor (``FrameworkInfo.initializers[name]``).
    """
    if origin is None:
        return role
    kind = type(role)
    value = str(getattr(role, "value", role))
    if origin.kind is TensorKind.PARAMETER and value == "constant":
        return kind("parameter")  # type: ignore[call-arg]
    if origin.kind is TensorKind.BUFFER and value == "parameter":
        return kind("constant")  # type: ignore[call-arg]
    return role


# ---------------------------------------------------------------------------------------------
# Duplicates and reconciliation


def duplicate_tensor_names(info: FrameworkInfo) -> dict[str, str]:
    """Initializers that are exporter-written copies of a framework tensor another one holds.

    For the analysis core: each key is an ONNX initializer name to count as duplicate storage (its
    bytes are real, its elements are not new parameters), the value the initializer kept as the
    original. The original is the initializer named like the framework tensor if there is one, else
    one holding it in the framework's own layout, else the first by name.

    Returns:
        ``{copy_name: original_name}``; empty when no framework tensor is written twice.
    """
    by_framework: dict[str, list[str]] = {}
    for onnx_name, origin in info.initializers.items():
        by_framework.setdefault(origin.framework_name, []).append(onnx_name)
    copies: dict[str, str] = {}
    for framework_name, onnx_names in by_framework.items():
        if len(onnx_names) < 2:
            continue

        def rank(n: str, fw: str = framework_name) -> tuple[int, int, str]:
            return (n != fw, info.initializers[n].layout_changed, n)

        ordered = sorted(onnx_names, key=rank)
        for copy in ordered[1:]:
            copies[copy] = ordered[0]
    return copies


def tied_copies_from_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """``{copy: original}`` for the analysis core's hook ``analyze(tied_copies=...)``.

    Reads the converter's record in ``metadata`` (:func:`read_framework_info`) and returns
    :func:`duplicate_tensor_names`; empty when the model carries no framework info.
    """
    info = read_framework_info(metadata)
    return duplicate_tensor_names(info) if info is not None else {}


def trainable_by_layer(info: FrameworkInfo, *, depth: int = 1) -> tuple[LayerTrainability, ...]:
    """Trainable vs frozen parameter elements per framework layer, ``depth`` levels deep.

    Layers come from the framework's tensor names (``encoder.layer.0.attention.weight`` ->
    ``encoder.layer`` at depth 2; Keras ``dense/kernel`` -> ``dense``), in first-seen order.
    Buffers are not parameters and are left out.
    """
    rows: dict[str, list[int]] = {}
    for tensor in info.tensors:
        if tensor.kind is not TensorKind.PARAMETER:
            continue
        parts = re.split(r"[./]", tensor.name)[:-1] or [tensor.name]
        key = ".".join(parts[:depth])
        row = rows.setdefault(key, [0, 0])
        row[0 if tensor.trainable else 1] += tensor.num_elements
    return tuple(LayerTrainability(k, t, f) for k, (t, f) in rows.items())


def framework_summary_to_dict(summary: FrameworkSummary) -> dict[str, Any]:
    """JSON for a :class:`FrameworkSummary` (the converter child's protocol and ``inspect``)."""
    return {
        "name": summary.name,
        "version": summary.version,
        "model_type": summary.model_type,
        "total": summary.totals.total,
        "trainable": summary.totals.trainable,
        "non_trainable": summary.totals.non_trainable,
        "buffers": summary.totals.buffers,
        "layers": [
            {
                "name": layer.name,
                "type": layer.type,
                "depth": layer.depth,
                "parameters": layer.parameters,
                "trainable": layer.trainable,
                "frozen": layer.frozen,
                "buffers": layer.buffers,
                "output_shape": layer.output_shape,
            }
            for layer in summary.layers
        ],
    }


def framework_summary_from_dict(data: Mapping[str, Any]) -> FrameworkSummary:
    """Inverse of :func:`framework_summary_to_dict` (raises KeyError/TypeError/ValueError when
    ``data`` is not such an object)."""
    return FrameworkSummary(
        name=str(data["name"]),
        version=str(data["version"]),
        model_type=str(data.get("model_type", "")),
        totals=FrameworkTotals(
            total=int(data["total"]),
            trainable=int(data["trainable"]),
            non_trainable=int(data["non_trainable"]),
            buffers=int(data["buffers"]),
        ),
        layers=tuple(
            FrameworkLayer(
                name=str(row["name"]),
                type=str(row["type"]),
                depth=int(row["depth"]),
                parameters=int(row["parameters"]),
                trainable=int(row["trainable"]),
                frozen=int(row.get("frozen", 0)),
                buffers=int(row.get("buffers", 0)),
                output_shape=str(row.get("output_shape", "")),
            )
            for row in data.get("layers", ())
        ),
    )


def rolled_up_layers(layers: Iterable[FrameworkLayer], *, depth: int) -> tuple[FrameworkLayer, ...]:
    """The per-layer table at ``depth``: rows of depth 1..``depth``, each counting its subtree.

    ``layers`` are own counts in pre-order (:class:`FrameworkLayer`). Each returned row of depth
    ``d`` holds its own tensors plus all its descendants'; rows deeper than ``depth`` are folded
    into their ancestor. The root (depth 0) is returned first only when it holds tensors of its
    own (an ``nn.Parameter`` set on the model itself), with its own counts. So the rows of depth 1
    plus that root row sum to the totals.
    """
    ordered = list(layers)
    sums = [[r.parameters, r.trainable, r.frozen, r.buffers] for r in ordered]
    # Pre-order: a row's ancestors are the rows left open on a stack of smaller depths.
    stack: list[int] = []
    for i, row in enumerate(ordered):
        while stack and ordered[stack[-1]].depth >= row.depth:
            stack.pop()
        own = (row.parameters, row.trainable, row.frozen, row.buffers)
        for j in stack:
            if ordered[j].depth >= 1:
                sums[j] = [a + b for a, b in zip(sums[j], own, strict=True)]
        stack.append(i)
    result: list[FrameworkLayer] = []
    for row, (params, trainable, frozen, buffers) in zip(ordered, sums, strict=True):
        if row.depth == 0:
            if row.parameters or row.buffers:
                result.append(row)
        elif row.depth <= depth:
            result.append(
                FrameworkLayer(
                    row.name,
                    row.type,
                    row.depth,
                    params,
                    trainable,
                    frozen,
                    buffers,
                    row.output_shape,
                )
            )
    return tuple(result)


def layers_from_tensors(info: FrameworkInfo) -> tuple[FrameworkLayer, ...]:
    """A per-layer table rebuilt from the tensors recorded in an ONNX file's framework metadata
    (for ``inspect OUT.onnx``, where the framework is not run): layers from the tensor names
    (``encoder.layer.0.attn.weight`` -> ``encoder``, ``encoder.layer``, ...; Keras
    ``dense/kernel`` -> ``dense``), types from the recorded owner class (for the owning layer
    only), no output shapes. Parameters the framework marks non-trainable count as frozen."""
    rows: dict[str, list[Any]] = {"": ["", 0, 0, 0, 0, 0]}
    first_seen: dict[str, int] = {"": 0}
    for tensor in info.tensors:
        parts = re.split(r"[./]", tensor.name)[:-1]
        sep = "/" if "/" in tensor.name and "." not in tensor.name else "."
        for d in range(1, len(parts) + 1):
            prefix = sep.join(parts[:d])
            first_seen.setdefault(prefix, len(first_seen))
            rows.setdefault(prefix, ["", d, 0, 0, 0, 0])
        row = rows[sep.join(parts)]
        if tensor.module and not row[0]:
            row[0] = tensor.module
        if tensor.kind is TensorKind.BUFFER:
            row[5] += tensor.num_elements
        else:
            row[2] += tensor.num_elements
            if tensor.trainable:
                row[3] += tensor.num_elements
            elif not _is_moving_statistic(tensor):
                row[4] += tensor.num_elements

    def preorder(name: str) -> tuple[int, ...]:
        parts = re.split(r"[./]", name) if name else []
        return tuple(first_seen[name[: len(".".join(parts[:d]))]] for d in range(1, len(parts) + 1))

    return tuple(
        FrameworkLayer(name, kind, d, params, trainable, frozen, buffers)
        for name, (kind, d, params, trainable, frozen, buffers) in sorted(
            rows.items(), key=lambda item: preorder(item[0])
        )
    )


def _is_batchnorm(module: str) -> bool:
    return "batchnorm" in module.lower() or "batchnormalization" in module.lower()


def _is_bias_name(name: str) -> bool:
    """A bias by its name (``fc.bias``, ``dense/bias:0``, ``bn/beta``, ``B``), not any all-zero
    tensor (a normalization's sample counter is all zeros too, and no bias)."""
    leaf = re.split(r"[./:]", name.removesuffix(":0"))[-1].lower()
    return "bias" in leaf or leaf in ("beta", "b")


def _is_moving_statistic(tensor: FrameworkTensor) -> bool:
    """A Keras BatchNorm moving mean/variance: a non-trainable weight by nature, not frozen."""
    leaf = re.split(r"[./:]", tensor.name.removesuffix(":0"))[-1]
    return _is_batchnorm(tensor.module) and leaf.startswith("moving_")


def reconcile(report: _ReportLike, info: FrameworkInfo) -> Reconciliation:
    """Explain, tensor by tensor, how the graph's parameter count follows from the framework's.

    Args:
        report: the analysis of the exported graph (``graph_analysis.analyze``): its ``tensors``
            (name, role, num_elements, nbytes) and ``parameters.total``.
        info: the framework info read from the same file (:func:`read_framework_info`).

    Returns:
        A :class:`Reconciliation` whose entries sum exactly to the difference; tensors written more
        than once are listed as duplicate storage whether or not the core counted them once.
    """
    records = {r.name: r for r in report.tensors}
    copies = duplicate_tensor_names(info)
    graph_total = int(report.parameters.total)
    framework_total = info.totals.total

    entries: list[ReconciliationEntry] = []

    def add(cause: Cause, names: list[str], elements: int, nbytes: int, delta: int) -> None:
        if names:
            entries.append(ReconciliationEntry(cause, tuple(names), elements, nbytes, delta))

    # Which graph tensors hold each framework tensor.
    holders: dict[str, list[str]] = {}
    for onnx_name, origin in info.initializers.items():
        if onnx_name in records:
            holders.setdefault(origin.framework_name, []).append(onnx_name)

    # 1. Copies of one framework tensor: duplicate storage.
    dup_names = [n for n in copies if n in records]
    dup_counted = [n for n in dup_names if _is_counted(records[n])]
    # A copy the core already discounted (role "duplicate" or similar) changes nothing; one it
    # still counts as a parameter adds its elements.
    add(
        Cause.DUPLICATE_STORAGE,
        sorted(dup_names),
        sum(records[n].num_elements for n in dup_names),
        sum(records[n].nbytes for n in dup_names),
        sum(records[n].num_elements for n in dup_counted),
    )

    # 2. Framework parameters missing from the graph, or present under another role.
    missing: list[FrameworkTensor] = []
    other_role: list[str] = []
    same_content: list[str] = []
    merged: list[FrameworkTensor] = []
    unused: list[FrameworkTensor] = []
    for tensor in info.tensors:
        names = [n for n in holders.get(tensor.name, []) if n not in copies]
        if tensor.kind is TensorKind.BUFFER:
            continue
        if not names and tensor.used_in_forward is False:
            unused.append(tensor)  # whatever its content: the exporter never saw it
        elif not names and tensor.merged_into in records:
            merged.append(tensor)
        elif not names:
            missing.append(tensor)
        elif not any(_is_counted(records[n]) for n in names):
            if getattr(records[names[0]], "duplicate_of", None):
                same_content.append(names[0])
            else:
                other_role.append(names[0])

    # Graph parameters no framework tensor accounts for (fused weights, folded constants).
    unmapped = sorted(
        (r for r in report.tensors if _is_counted(r) and r.name not in info.initializers),
        key=lambda r: r.name,
    )
    # Pair a missing framework tensor with an unmapped graph tensor of the same element count:
    # the exporter rewrote it (BatchNorm scale folded into a Conv kernel, a weight re-laid out).
    free = list(unmapped)
    rewritten_fw: list[FrameworkTensor] = []
    rewritten_graph: list[_TensorRecordLike] = []
    still_missing: list[FrameworkTensor] = []
    for tensor in missing:
        same_size = [r for r in free if r.num_elements == tensor.num_elements]
        # Prefer the graph tensor whose name carries the framework layer's name.
        layer = re.split(r"[./]", tensor.name)[-2] if re.search(r"[./]", tensor.name) else ""
        match = next((r for r in same_size if layer and layer in r.name), None) or next(
            iter(same_size), None
        )
        if match is not None and not _is_batchnorm(tensor.module) and not tensor.is_all_zero:
            free.remove(match)
            rewritten_fw.append(tensor)
            rewritten_graph.append(match)
        else:
            still_missing.append(tensor)
    add(
        Cause.REWRITTEN,
        [r.name for r in rewritten_graph],
        sum(r.num_elements for r in rewritten_graph),
        sum(r.nbytes for r in rewritten_graph),
        0,
    )
    batchnorm = [t for t in still_missing if _is_batchnorm(t.module)]
    zero_bias = [
        t
        for t in still_missing
        if not _is_batchnorm(t.module) and t.is_all_zero and _is_bias_name(t.name)
    ]
    rest = [t for t in still_missing if t not in batchnorm and t not in zero_bias]
    relaid = [t for t in rest if t.used_in_forward]
    removed = [t for t in rest if not t.used_in_forward]
    for cause, group in (
        (Cause.UNUSED, unused),
        (Cause.BATCHNORM_FOLDED, batchnorm),
        (Cause.ZERO_BIAS_DROPPED, zero_bias),
        (Cause.RELAID, relaid),
        (Cause.REMOVED, removed),
    ):
        elements = sum(t.num_elements for t in group)
        add(cause, [t.name for t in group], elements, 0, -elements)
    add(
        Cause.OTHER_ROLE,
        sorted(other_role),
        sum(records[n].num_elements for n in other_role),
        sum(records[n].nbytes for n in other_role),
        -sum(records[n].num_elements for n in other_role),
    )
    merged_elements = sum(t.num_elements for t in merged)
    add(
        Cause.IDENTICAL_CONTENT,
        sorted(same_content) + [t.name for t in merged],
        sum(records[n].num_elements for n in same_content) + merged_elements,
        sum(records[n].nbytes for n in same_content),
        -sum(records[n].num_elements for n in same_content) - merged_elements,
    )
    add(
        Cause.CONSTANTS_FOLDED,
        [r.name for r in free],
        sum(r.num_elements for r in free),
        sum(r.nbytes for r in free),
        sum(r.num_elements for r in free),
    )

    # 3. Buffers present in the graph: informational unless the core counted them as parameters.
    buffer_names = sorted(
        n
        for tensor in info.tensors
        if tensor.kind is TensorKind.BUFFER
        for n in holders.get(tensor.name, [])
        if n not in copies
    )
    add(
        Cause.BUFFER_IN_GRAPH,
        buffer_names,
        sum(records[n].num_elements for n in buffer_names),
        sum(records[n].nbytes for n in buffer_names),
        sum(records[n].num_elements for n in buffer_names if _is_counted(records[n])),
    )

    explained = sum(e.delta_elements for e in entries)
    remainder = graph_total - framework_total - explained
    if remainder:
        entries.append(ReconciliationEntry(Cause.UNEXPLAINED, (), abs(remainder), 0, remainder))
    return Reconciliation(framework_total, graph_total, tuple(entries))


def reconciliation_to_dict(reconciliation: Reconciliation) -> list[dict[str, Any]]:
    """The JSON ``reconciliation`` list: one object per entry (bytes as ints)."""
    return [
        {
            "cause": e.cause.value,
            "tensors": list(e.tensors),
            "elements": e.elements,
            "bytes": e.nbytes,
            "delta_elements": e.delta_elements,
        }
        for e in reconciliation.entries
    ]
