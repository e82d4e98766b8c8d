"""``analyze``: one ONNX file in, one :class:`~graph_analysis.report.ModelReport` out."""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from graph_analysis import deep as deep_scan
from graph_analysis.dtypes import DataType
from graph_analysis.framework import (
    framework_record_warning,
    read_framework_info,
    tied_copies_from_metadata,
    trainable_flags,
)
from graph_analysis.loading import ModelFile, TensorInfo, TensorSource, read_model
from graph_analysis.params import (
    DEFAULT_INT4_BLOCK_SIZE,
    ClassifiedTensor,
    LayerItem,
    Use,
    classify_model,
    dtype_rows,
    group_rows,
    layer_path,
    precision_sizes,
    strip_common_prefix,
    unpacked_elements,
)
from graph_analysis.report import (
    DuplicateGroup,
    ModelReport,
    ParameterSummary,
    Role,
    RoleTotals,
    SizeSummary,
    TensorRecord,
)

__all__ = ["TiedCopies", "analyze"]

_WEIGHT_ROLES = frozenset({Role.PARAMETER, Role.RUNNING_STAT, Role.QUANT_META})
_COUNTED_ROLES = frozenset({Role.PARAMETER, Role.RUNNING_STAT})

# A hook for what the file's own metadata says about copies: maps a copy's tensor name to the name of
# the tensor it duplicates (the converters record tied framework parameters this way).
TiedCopies = Callable[[Mapping[str, str]], Mapping[str, str]]


def _storage(tensor: TensorInfo) -> str:
    if tensor.nnz is not None:
        return "sparse"
    if tensor.external is not None:
        return "external"
    if (
        tensor.source in (TensorSource.CONSTANT_NODE, TensorSource.ATTRIBUTE)
        and tensor.payload is None
    ):
        return "attribute"
    return "embedded"


def analyze(
    path: str | os.PathLike[str],
    *,
    deep: bool = False,
    int4_block_size: int = DEFAULT_INT4_BLOCK_SIZE,
    tied_copies: TiedCopies | None = tied_copies_from_metadata,
) -> ModelReport:
    """Count and size every tensor of an ONNX model, reading its structure only.

    Args:
        path: the ``.onnx`` file.
        deep: also hash every weight payload (streamed) to find identical and transposed copies;
            copies count once in parameter totals and their bytes go to ``size.duplicate_bytes``.
        int4_block_size: block size assumed by the INT4 what-if size.
        tied_copies: a function reading the model's metadata_props and returning {copy: original}
            for tensors the producer recorded as copies of one parameter. By default the record
            ``modelsize convert`` writes (``graph_analysis.framework``); None ignores any record.

    Returns:
        The report: parameter totals, sizes, breakdowns, every tensor classified.

    Raises:
        InputError: any problem with the file (see :func:`graph_analysis.loading.read_model`).
    """
    model = read_model(path)
    return build_report(model, deep=deep, int4_block_size=int4_block_size, tied_copies=tied_copies)


def build_report(
    model: ModelFile,
    *,
    deep: bool = False,
    int4_block_size: int = DEFAULT_INT4_BLOCK_SIZE,
    tied_copies: TiedCopies | None = tied_copies_from_metadata,
    classified: Sequence[ClassifiedTensor] | None = None,
) -> ModelReport:
    """The report for an already-read model (see :func:`analyze`).

    ``classified`` is :func:`graph_analysis.params.classify_model` of ``model`` when the caller has
    it already (it is computed otherwise).
    """
    classified = classify_model(model) if classified is None else classified
    entries = [(c.tensor, list(c.uses), c.role) for c in classified]

    # Copies: the same external byte range (aliases), then recorded ties, then the deep scan.
    duplicate_of: dict[int, tuple[int, str]] = {}
    seen_ranges: dict[tuple[Path, int, int], int] = {}
    for index, (tensor, _uses, _role) in enumerate(entries):
        ext = tensor.external
        if ext is not None and ext.length:
            rng = (ext.path, ext.offset, ext.length)
            if rng in seen_ranges:
                duplicate_of[index] = (seen_ranges[rng], "alias")
            else:
                seen_ranges[rng] = index
    if tied_copies is not None:
        by_name = {t.name: i for i, (t, _u, _r) in enumerate(entries) if not t.graph}
        for copy_name, original_name in tied_copies(model.metadata).items():
            ci, oi = by_name.get(copy_name), by_name.get(original_name)
            if ci is not None and oi is not None and ci != oi and ci not in duplicate_of:
                duplicate_of[ci] = (oi, "tied")
    if deep:
        candidates = [
            i for i, e in enumerate(entries) if e[2] in _WEIGHT_ROLES and i not in duplicate_of
        ]
        for match in deep_scan.find_copies([entries[i][0] for i in candidates]):
            copy_index = candidates[match.copy]
            duplicate_of.setdefault(copy_index, (candidates[match.original], match.kind))

    records: list[TensorRecord] = []
    role_acc: dict[Role, list[int]] = defaultdict(lambda: [0, 0, 0])
    counted: list[tuple[TensorInfo, list[Use]]] = []
    layer_items: list[LayerItem] = []
    op_items: list[LayerItem] = []
    # The framework's record (written by `modelsize convert`) says which parameters are frozen.
    info = read_framework_info(model.metadata)
    trainable_of = trainable_flags(info) if info else {}  # buffers are never "frozen"
    weight_dtypes: list[tuple[DataType, int, int]] = []
    param_dtypes: list[tuple[DataType, int, int]] = []
    duplicate_bytes = aliased_bytes = weights_bytes = 0
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, (tensor, tensor_uses, role) in enumerate(entries):
        layer = layer_path(tensor, tensor_uses)
        dup = duplicate_of.get(index)
        original = entries[dup[0]][0].name if dup else None
        # Packed low-bit weights (MatMulNBits, GatherBlockQuantized) count their logical elements;
        # their bytes stay the stored ones.
        dtype, elements, stored = tensor.data_type, tensor.num_elements, tensor.nbytes
        unpacked = unpacked_elements(tensor, tensor_uses) if role == Role.PARAMETER else None
        if unpacked is not None:
            dtype, elements = unpacked
        records.append(
            TensorRecord(
                name=tensor.name,
                graph=tensor.graph,
                source=tensor.source.value,
                storage=_storage(tensor),
                role=role,
                data_type=dtype.name,
                dims=tensor.dims,
                num_elements=elements,
                nbytes=stored,
                stored_nbytes=tensor.stored_nbytes,
                consumers=tuple(dict.fromkeys(u.op_type for u in tensor_uses)),
                layer=layer,
                duplicate_of=original,
                duplicate_kind=dup[1] if dup else None,
                trainable=trainable_of.get(tensor.name) if not tensor.graph else None,
            )
        )
        if dup is not None:
            groups[dup].append(index)
            if dup[1] == "alias":
                aliased_bytes += stored
                continue
            if role in _WEIGHT_ROLES:
                duplicate_bytes += stored
                weights_bytes += stored
                weight_dtypes.append((dtype, elements, stored))
            continue
        acc = role_acc[role]
        acc[0] += 1
        acc[1] += elements
        acc[2] += stored
        if role in _WEIGHT_ROLES:
            weights_bytes += stored
            weight_dtypes.append((dtype, elements, stored))
        if role in _COUNTED_ROLES:
            counted.append((dataclasses.replace(tensor, num_elements=elements), tensor_uses))
            param_dtypes.append((dtype, elements, stored))
            frozen = elements if trainable_of.get(tensor.name) is False and not tensor.graph else 0
            layer_items.append((layer, elements, stored, frozen))
            first_op = tensor_uses[0].op_type if tensor_uses else "<none>"
            op_items.append(((first_op,), elements, stored, frozen))

    by_role = {role: RoleTotals(*role_acc[role]) for role in Role}
    learned = by_role[Role.PARAMETER].num_elements
    running = by_role[Role.RUNNING_STAT].num_elements
    parameters = ParameterSummary(
        total=learned + running,
        learned=learned,
        running_stats=running,
        tensors=by_role[Role.PARAMETER].tensors + by_role[Role.RUNNING_STAT].tensors,
        by_dtype=dtype_rows(param_dtypes),
    )
    external_bytes = sum(size or 0 for size in model.external_files.values())
    size = SizeSummary(
        on_disk_bytes=model.file_nbytes + external_bytes,
        model_file_bytes=model.file_nbytes,
        external_data_bytes=external_bytes,
        weights_bytes=weights_bytes,
        by_dtype=dtype_rows(weight_dtypes),
        by_precision=precision_sizes(counted, int4_block_size=int4_block_size),
        duplicate_bytes=duplicate_bytes,
        aliased_bytes=aliased_bytes,
        constants_bytes=by_role[Role.CONSTANT].nbytes,
    )
    duplicates = tuple(
        DuplicateGroup(
            original=entries[orig][0].name,
            copies=tuple(entries[i][0].name for i in members),
            kind=kind,
            nbytes=sum(entries[i][0].nbytes for i in members),
        )
        for (orig, kind), members in groups.items()
    )
    graphs = list(model.graphs())
    return ModelReport(
        path=str(model.path),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        ir_version=model.ir_version,
        opsets=dict(model.opsets),
        num_nodes=sum(len(g.nodes) for g in graphs),
        num_subgraphs=sum(1 for g in model.graph.walk()) - 1,
        parameters=parameters,
        size=size,
        by_role=by_role,
        layers=group_rows(strip_common_prefix(layer_items), trainability_known=info is not None),
        by_op=tuple(
            r for r in group_rows(op_items, trainability_known=info is not None) if r.depth == 1
        ),
        duplicates=duplicates,
        deep_scanned=deep,
        tensors=tuple(records),
        metadata=dict(model.metadata),
        warnings=model.warnings + _record_warnings(model),
    )


def _record_warnings(model: ModelFile) -> tuple[str, ...]:
    """The one warning for a framework record that was present but could not be read."""
    warning = framework_record_warning(model.metadata)
    return (warning,) if warning else ()
