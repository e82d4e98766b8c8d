"""Memory of any model source: an ONNX file as is, a framework source exported to ONNX first.

The one function the ``memory`` and ``measure`` commands call. For a framework source the model is
exported into a temporary folder (``converters.sources.convert_source``, in a child process), the
estimate and the onnxruntime measurement read that ONNX file, and for PyTorch code sources
(``file.py:Name``, ``package.module:Name``) a training step is measured in PyTorch as well.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from converters._child import ProgressCallback
from converters.sources import ConversionResult, SourceKind, detect_source, onnx_of
from converters.torch_train import TrainingComparison, compare_training
from graph_analysis.bindings import Bindings
from graph_analysis.memory import (
    Loss,
    MemoryEstimate,
    Optimizer,
    TrainingPrecision,
)
from graph_analysis.runtime.measure import MemoryComparison, compare_memory
from graph_analysis.runtime.optimized import executed_estimator

__all__ = ["SourceMemory", "source_memory"]


@dataclass(frozen=True)
class SourceMemory:
    """Estimate, and measurements when asked, for one model source.

    Attributes:
        source: the source as the user wrote it.
        estimate: the graph-based estimate (of the exported graph for framework sources).
        inference: the onnxruntime measurement with the estimate, when measured.
        training: the measured PyTorch training step with the training estimate, when measured.
        conversion: how a framework source was exported (None for ONNX files).
    """

    source: str
    estimate: MemoryEstimate
    inference: MemoryComparison | None = None
    training: TrainingComparison | None = None
    conversion: ConversionResult | None = None


def source_memory(
    source: str,
    bindings: Bindings | None = None,
    *,
    train: bool = False,
    optimizer: Optimizer = Optimizer.ADAM,
    precision: TrainingPrecision = TrainingPrecision.FP32,
    checkpointing: float = 1.0,
    loss: Loss = Loss.AUTO,
    measure: bool = False,
    arenas: tuple[bool, ...] = (True, False),
    runs: int = 10,
    repeats: int = 3,
    torch_source: str | None = None,
    on_progress: ProgressCallback | None = None,
    executed: bool = True,
) -> SourceMemory:
    """Estimate (and with ``measure``, measure) the memory of an ONNX file or a framework source.

    Args:
        source: an ``.onnx`` file or anything ``modelsize convert`` accepts.
        bindings: input shapes: the example inputs of an export, and the dims the estimate binds.
        train, optimizer, precision, checkpointing, loss: the training estimate's assumptions
            (the measured training step uses the estimate's loss).
        measure: run the model in onnxruntime (``arenas`` settings, ``runs`` timed runs), and with
            ``train`` a PyTorch training step when the source is PyTorch code.
        torch_source: the PyTorch code (``file.py:Name``) an ONNX ``source`` came from, to measure
            its training step (implies a training estimate).
        on_progress: receives the exporter's progress lines.
        executed: read the inference activations from the graph onnxruntime runs (its optimized
            graph, made in a child process: ``graph_analysis.runtime.optimized``) for models
            within its limits; False keeps the estimate static (the exported graph, nothing run).

    Raises:
        InputError: a bad source, binding or model (see ``detect_source``, ``estimate_memory``).
        InternalError: an export or a measurement failed.
    """
    detected = detect_source(source)
    code_source = torch_source
    if detected.kind is SourceKind.TORCH_CODE and code_source is None:
        code_source = detected.text
    train = train or torch_source is not None
    with tempfile.TemporaryDirectory(prefix="modelsize-memory-") as tmp:
        onnx_path, conversion = onnx_of(
            detected, Path(tmp), bindings=bindings, on_progress=on_progress
        )
        estimate = executed_estimator(onnx_path, executed=executed)(
            bindings,
            train=train,
            optimizer=optimizer,
            precision=precision,
            checkpointing=checkpointing,
            loss=loss,
            pytorch_basis=code_source is not None,
        )
        inference = None
        training = None
        if measure:
            inference = compare_memory(
                onnx_path, bindings, runs=runs, arenas=arenas, estimate=estimate, repeats=repeats
            )
        if code_source is not None and (measure or torch_source is not None):
            training = compare_training(
                onnx_path,
                code_source,
                bindings,
                optimizer=optimizer,
                precision=precision,
                checkpointing=checkpointing,
                loss=loss,
            )
            estimate = training.estimate
    return SourceMemory(source, estimate, inference, training, conversion)
