"""The frozen dataclasses every analysis returns, and their JSON form (``report_to_dict``).

Rendering for people lives in ``cli/``; this module only defines data and its stable JSON schema
(documented key by key in docs/json.md, versioned by ``SCHEMA_VERSION``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "DtypeRow",
    "DuplicateGroup",
    "GroupRow",
    "ModelReport",
    "ParameterSummary",
    "Precision",
    "PrecisionSize",
    "Role",
    "RoleTotals",
    "SizeSummary",
    "TensorRecord",
    "report_to_dict",
]

SCHEMA_VERSION = 1


class Role(str, Enum):
    """What a stored tensor is for (the classification rule is in docs/counting.md)."""

    PARAMETER = "parameter"
    RUNNING_STAT = "running_stat"
    QUANT_META = "quant_meta"
    CONSTANT = "constant"
    UNUSED = "unused"


class Precision(str, Enum):
    """Storage precisions for the what-if sizes, spelled as ONNX data types."""

    FLOAT = "FLOAT"
    FLOAT16 = "FLOAT16"
    BFLOAT16 = "BFLOAT16"
    INT8 = "INT8"
    INT4 = "INT4"


@dataclass(frozen=True)
class TensorRecord:
    """One stored tensor, classified.

    ``duplicate_of`` names the tensor this one is a copy or alias of; copies count once in parameter
    totals and their bytes appear in ``SizeSummary.duplicate_bytes`` (aliases of the same external
    byte range in ``aliased_bytes``).
    """

    name: str
    graph: str
    source: str
    storage: str
    role: Role
    data_type: str
    dims: tuple[int, ...]
    num_elements: int
    nbytes: int
    stored_nbytes: int
    consumers: tuple[str, ...]
    layer: tuple[str, ...]
    duplicate_of: str | None = None
    duplicate_kind: str | None = None
    trainable: bool | None = None


@dataclass(frozen=True)
class DtypeRow:
    """Tensors, elements and dense bytes of one data type."""

    data_type: str
    tensors: int
    num_elements: int
    nbytes: int


@dataclass(frozen=True)
class RoleTotals:
    """Tensors, elements and dense bytes of one role (unique tensors only)."""

    tensors: int
    num_elements: int
    nbytes: int


@dataclass(frozen=True)
class ParameterSummary:
    """Parameter counts. ``total`` = learned parameters + running statistics, each tensor once."""

    total: int
    learned: int
    running_stats: int
    tensors: int
    by_dtype: tuple[DtypeRow, ...]


@dataclass(frozen=True)
class PrecisionSize:
    """The parameters' size if stored at one precision.

    ``nbytes`` includes ``overhead_nbytes`` (quantization scales); ``assumption`` says how both were
    computed.
    """

    precision: Precision
    nbytes: int
    overhead_nbytes: int
    assumption: str


@dataclass(frozen=True)
class SizeSummary:
    """Sizes in bytes.

    Attributes:
        on_disk_bytes: the .onnx file plus every distinct external data file it references, as on disk.
        model_file_bytes: the .onnx file alone.
        external_data_bytes: the external data files (missing ones count 0).
        weights_bytes: dense bytes of every weight tensor (parameters, running statistics, quantization
            metadata) as stored, copies included, aliases of one external range once.
        by_dtype: ``weights_bytes`` split by data type.
        by_precision: what-if sizes of the parameters (``ParameterSummary.total``) per precision.
        duplicate_bytes: bytes of weight tensors that are copies of another (found by the deep scan or
            the framework's own record of tied parameters).
        aliased_bytes: bytes of tensors pointing at an external byte range another tensor also uses
            (stored once, counted once).
        constants_bytes: dense bytes of constants (shape/index tensors, scalars).
    """

    on_disk_bytes: int
    model_file_bytes: int
    external_data_bytes: int
    weights_bytes: int
    by_dtype: tuple[DtypeRow, ...]
    by_precision: tuple[PrecisionSize, ...]
    duplicate_bytes: int
    aliased_bytes: int
    constants_bytes: int


@dataclass(frozen=True)
class GroupRow:
    """One row of a breakdown (layer tree or operator type): parameters and bytes beneath ``key``.

    ``frozen_parameters`` counts those the framework marked not trainable; None when the file carries
    no framework record (``modelsize convert`` writes one).
    """

    key: str
    depth: int
    num_parameters: int
    nbytes: int
    tensors: int
    frozen_parameters: int | None = None


@dataclass(frozen=True)
class DuplicateGroup:
    """Tensors holding the same values as ``original`` (``kind``: identical, transposed, alias, tied)."""

    original: str
    copies: tuple[str, ...]
    kind: str
    nbytes: int


@dataclass(frozen=True)
class ModelReport:
    """Everything ``modelsize inspect`` reports about one ONNX file."""

    path: str
    producer_name: str
    producer_version: str
    ir_version: int
    opsets: dict[str, int]
    num_nodes: int
    num_subgraphs: int
    parameters: ParameterSummary
    size: SizeSummary
    by_role: dict[Role, RoleTotals]
    layers: tuple[GroupRow, ...]
    by_op: tuple[GroupRow, ...]
    duplicates: tuple[DuplicateGroup, ...]
    deep_scanned: bool
    tensors: tuple[TensorRecord, ...]
    metadata: dict[str, str]
    warnings: tuple[str, ...] = field(default=())


def _dtype_dict(rows: tuple[DtypeRow, ...]) -> dict[str, dict[str, int]]:
    return {
        r.data_type: {"tensors": r.tensors, "elements": r.num_elements, "bytes": r.nbytes}
        for r in rows
    }


def report_to_dict(report: ModelReport, *, depth: int | None = None) -> dict[str, Any]:
    """The JSON form of a report (schema in docs/json.md). ``depth`` limits the layer rows."""
    size = report.size
    return {
        "schema_version": SCHEMA_VERSION,
        "path": report.path,
        "producer": {"name": report.producer_name, "version": report.producer_version},
        "ir_version": report.ir_version,
        "opsets": report.opsets,
        "graph": {"nodes": report.num_nodes, "subgraphs": report.num_subgraphs},
        "parameters": {
            "total": report.parameters.total,
            "learned": report.parameters.learned,
            "running_stats": report.parameters.running_stats,
            "tensors": report.parameters.tensors,
            "by_dtype": _dtype_dict(report.parameters.by_dtype),
        },
        "size": {
            "on_disk_bytes": size.on_disk_bytes,
            "model_file_bytes": size.model_file_bytes,
            "external_data_bytes": size.external_data_bytes,
            "weights_bytes": size.weights_bytes,
            "by_dtype": _dtype_dict(size.by_dtype),
            "by_precision": {
                p.precision.value: {
                    "bytes": p.nbytes,
                    "overhead_bytes": p.overhead_nbytes,
                    "assumption": p.assumption,
                }
                for p in size.by_precision
            },
            "duplicate_bytes": size.duplicate_bytes,
            "aliased_bytes": size.aliased_bytes,
            "constants_bytes": size.constants_bytes,
        },
        "by_role": {
            role.value: {"tensors": t.tensors, "elements": t.num_elements, "bytes": t.nbytes}
            for role, t in report.by_role.items()
        },
        "constants": _role_dict(report, Role.CONSTANT),
        "quantization_metadata": _role_dict(report, Role.QUANT_META),
        "unused": _role_dict(report, Role.UNUSED),
        "layers": [
            {
                "path": r.key,
                "depth": r.depth,
                "parameters": r.num_parameters,
                "bytes": r.nbytes,
                "tensors": r.tensors,
                "frozen": r.frozen_parameters,
            }
            for r in report.layers
            if depth is None or r.depth <= depth
        ],
        "by_op": [
            {
                "op_type": r.key,
                "parameters": r.num_parameters,
                "bytes": r.nbytes,
                "tensors": r.tensors,
            }
            for r in report.by_op
        ],
        "deep_scan": report.deep_scanned,
        "duplicates": [
            {"original": d.original, "copies": list(d.copies), "kind": d.kind, "bytes": d.nbytes}
            for d in report.duplicates
        ],
        "tensors": [
            {
                "name": t.name,
                "graph": t.graph,
                "source": t.source,
                "storage": t.storage,
                "role": t.role.value,
                "data_type": t.data_type,
                "dims": list(t.dims),
                "elements": t.num_elements,
                "bytes": t.nbytes,
                "stored_bytes": t.stored_nbytes,
                "consumers": list(t.consumers),
                "layer": ".".join(t.layer),
                "duplicate_of": t.duplicate_of,
                "trainable": t.trainable,
            }
            for t in report.tensors
        ],
        "metadata": report.metadata,
        "warnings": list(report.warnings),
    }


def _role_dict(report: ModelReport, role: Role) -> dict[str, int]:
    totals = report.by_role.get(role, RoleTotals(0, 0, 0))
    return {"tensors": totals.tensors, "elements": totals.num_elements, "bytes": totals.nbytes}
