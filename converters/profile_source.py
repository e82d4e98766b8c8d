"""Compute and profile of any model source: an ONNX file as is, a framework source exported first.

The one function the ``profile`` command calls. A framework source is exported into a temporary
folder (``converters.sources.convert_source``, in a child process), as ``memory`` does.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from converters._child import ProgressCallback
from converters.sources import ConversionResult, detect_source, onnx_of
from graph_analysis.bindings import Bindings
from graph_analysis.compute import ComputeReport, count_compute
from graph_analysis.runtime.profile import OptimizationLevel, ProfileReport, profile_model

__all__ = ["SourceProfile", "source_profile"]


@dataclass(frozen=True)
class SourceProfile:
    """Counted compute, and the measured profile unless only counting was asked.

    Attributes:
        source: the source as the user wrote it.
        compute: MACs/FLOPs counted from the (exported) graph.
        profile: the measured profile (None with ``measure=False``).
        conversion: how a framework source was exported (None for ONNX files).
    """

    source: str
    compute: ComputeReport
    profile: ProfileReport | None = None
    conversion: ConversionResult | None = None


def source_profile(
    source: str,
    bindings: Bindings | None = None,
    *,
    measure: bool = True,
    runs: int = 10,
    warmup: int = 2,
    threads: int = 1,
    optimization: OptimizationLevel = OptimizationLevel.ALL,
    layer_depth: int = 3,
    on_progress: ProgressCallback | None = None,
) -> SourceProfile:
    """Count (and with ``measure``, profile) the compute of an ONNX file or a framework source.

    Raises:
        InputError: a bad source, binding or model. InternalError: an export or the profiling failed.
    """
    detected = detect_source(source)
    with tempfile.TemporaryDirectory(prefix="modelsize-profile-") as tmp:
        onnx_path, conversion = onnx_of(
            detected, Path(tmp), bindings=bindings, on_progress=on_progress
        )
        if not measure:
            return SourceProfile(
                source,
                count_compute(onnx_path, bindings, layer_depth=layer_depth),
                None,
                conversion,
            )
        profile = profile_model(
            onnx_path,
            bindings,
            runs=runs,
            warmup=warmup,
            threads=threads,
            optimization=optimization,
            layer_depth=layer_depth,
        )
    return SourceProfile(source, profile.compute, profile, conversion)
