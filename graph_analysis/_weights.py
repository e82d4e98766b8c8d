"""Per-model figures for comparisons, from the analysis core: parameters, weight bytes, file bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from graph_analysis.analysis import analyze
from graph_analysis.loading import read_model

__all__ = ["WeightCensus", "file_bytes", "weight_census"]


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
