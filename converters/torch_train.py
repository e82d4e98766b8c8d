"""Measured PyTorch training-step memory: one model, a few steps, in a fresh child process.

The source is a ``file.py:Name`` (an ``nn.Module`` subclass or factory taking no arguments, or a
module instance). The child imports the source's module, records its resident set as the baseline,
builds the model, and runs ``steps`` training steps (forward, the loss on the first
floating-point output, backward, optimizer step, ``zero_grad(set_to_none=True)``), resetting the
kernel's peak counter before each. Reported: each step's peak resident growth over the baseline
(weights, gradients, optimizer state, saved activations, framework memory). The first step and
the later ones differ: Adam's state is created in the first ``step()``, after backward has freed
the activations, so only later steps hold both.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from graph_analysis.bindings import Bindings
from graph_analysis.errors import InternalError, MissingExtraError, SourceError
from graph_analysis.memory import (
    Loss,
    MemoryEstimate,
    Optimizer,
    TrainingPrecision,
    estimate_memory,
)
from graph_analysis.runtime._child_process import run_json_child
from graph_analysis.runtime._feeds import specs_to_json
from graph_analysis.runtime.measure import InputSpec, model_input_specs

__all__ = [
    "TrainingComparison",
    "TrainingMeasurement",
    "compare_training",
    "measure_training_step",
]

_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class TrainingMeasurement:
    """What a PyTorch training step really used on CPU (measured, in a fresh child process).

    Attributes:
        source: the ``file.py:Name`` measured.
        optimizer: the optimizer used.
        precision: the precision used (mixed: bfloat16 autocast on CPU).
        loss: the loss used (cross-entropy, mean-square error or a plain sum).
        model_bytes: resident growth once the model is built (weights and construction leftovers).
        step_peak_bytes: each step's peak resident growth over the baseline.
        first_step_peak_bytes: the first step's peak (optimizer state created after backward).
        steady_peak_bytes: the last step's peak (the steady state: the optimizer state is held
            through backward); equal to the first step's when only one step ran.
        peak_bytes: the largest step peak.
        param_bytes: counted: ``sum(p.numel() * p.element_size())`` in the child.
        num_parameters: ``sum(p.numel() for p in model.parameters())``.
        trainable_parameters: the same over parameters with ``requires_grad``.
        step_seconds: wall time of each step.
        torch_version: the PyTorch measured.
    """

    source: str
    optimizer: Optimizer
    precision: TrainingPrecision
    loss: Loss
    model_bytes: int
    step_peak_bytes: tuple[int, ...]
    first_step_peak_bytes: int
    steady_peak_bytes: int
    peak_bytes: int
    param_bytes: int
    num_parameters: int
    trainable_parameters: int
    step_seconds: tuple[float, ...]
    torch_version: str


def measure_training_step(
    source: str,
    inputs: Sequence[InputSpec],
    *,
    optimizer: Optimizer = Optimizer.ADAM,
    precision: TrainingPrecision = TrainingPrecision.FP32,
    loss: Loss = Loss.MSE,
    steps: int = 3,
    threads: int = 1,
    timeout_s: float = 900.0,
    malloc_mmap_threshold: int | None = None,
) -> TrainingMeasurement:
    """Run ``steps`` training steps of a PyTorch source in a child process and measure peak RSS.

    Args:
        source: ``path/to/file.py:Name`` or ``package.module:Name``; runs that code (only for
            sources the user named).
        inputs: the inputs to feed (names matched to ``forward``'s parameters when they all match,
            else passed positionally in order).
        optimizer: SGD, SGD with momentum 0.9, Adam or AdamW (PyTorch defaults otherwise).
        precision: fp32, fp16/bf16 (model cast), or mixed (bfloat16 autocast on CPU).
        loss: the loss on the first floating-point output: cross-entropy (class-index targets,
            classes in the last dim for rank 2-3 outputs, in dim 1 above), mean-square error
            (a random target of the output's shape) or a sum. ``auto`` is not accepted: the
            estimate chooses, and the measurement uses its choice.
        steps: training steps; 2 or more includes a steady-state step (3: the steady state
            measured on a step that follows one which already held the state).
        threads: ``torch.set_num_threads``.
        timeout_s: the child is killed after this many seconds.
        malloc_mmap_threshold: fix glibc's ``M_MMAP_THRESHOLD`` in the child (bytes; e.g. 131072).
            By default glibc raises the threshold as large blocks are freed, so later tensors come
            from the heap and freed memory may stay resident: the peak then includes allocator
            slack that varies by +-15% from run to run. A fixed threshold gives every large tensor
            its own mapping, returned on free: a stable, tensor-level peak.

    Raises:
        SourceError: ``source`` is not ``file.py:Name`` or the file does not exist.
        MissingExtraError: torch is not installed.
        MeasurementError: the child failed.
    """
    file_name, sep, attr = source.rpartition(":")
    is_file = file_name.endswith(".py")
    if not sep or not attr or not (is_file or _MODULE_PATH.match(file_name)):
        raise SourceError(
            source, "expected PyTorch code as path/to/file.py:Name or package.module:Name"
        )
    if is_file and not Path(file_name).is_file():
        raise SourceError(file_name, "no such file")
    if importlib.util.find_spec("torch") is None:
        raise MissingExtraError(
            source, "PyTorch models need the torch extra: pip install 'modelsize[torch]'"
        )
    request = {
        "source": f"{Path(file_name).resolve()}:{attr}" if is_file else source,
        "optimizer": Optimizer(optimizer).value,
        "precision": TrainingPrecision(precision).value,
        "loss": Loss(loss).value,
        "steps": max(1, steps),
        "threads": threads,
        "inputs": specs_to_json(inputs),
    }
    env = {}
    if malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(malloc_mmap_threshold)
    data = run_json_child(
        "converters._torch_train_child",
        request,
        path=source,
        label="training child",
        timeout_s=timeout_s,
        env=env,
    )
    baseline = int(data["baseline_rss_bytes"])
    peaks = [int(p) - baseline for p in data["step_peak_bytes"]]
    return TrainingMeasurement(
        source=source,
        optimizer=Optimizer(optimizer),
        precision=TrainingPrecision(precision),
        loss=Loss(loss),
        model_bytes=max(0, int(data["model_rss_bytes"]) - baseline),
        step_peak_bytes=tuple(peaks),
        first_step_peak_bytes=peaks[0],
        steady_peak_bytes=peaks[-1],
        peak_bytes=max(peaks),
        param_bytes=int(data["param_bytes"]),
        num_parameters=int(data["num_parameters"]),
        trainable_parameters=int(data["trainable_parameters"]),
        step_seconds=tuple(float(s) for s in data["step_seconds"]),
        torch_version=str(data["torch_version"]),
    )


@dataclass(frozen=True)
class TrainingComparison:
    """A training estimate from the ONNX graph next to a measured PyTorch training step.

    Each estimated figure is paired with the measurement of the same step: the steady-state
    estimate with the last measured step, the first-step estimate with the first step.

    Attributes:
        estimate: the estimate (``estimate.training`` is set).
        measurement: the measured steps.
        ratio: steady state: ``estimate.training.peak_bytes / measurement.steady_peak_bytes``.
        first_step_ratio: ``estimate.training.first_step_peak_bytes /
            measurement.first_step_peak_bytes``.
    """

    estimate: MemoryEstimate
    measurement: TrainingMeasurement
    ratio: float
    first_step_ratio: float


def compare_training(
    onnx_path: str | Path,
    source: str,
    bindings: Bindings | None = None,
    *,
    optimizer: Optimizer = Optimizer.ADAM,
    precision: TrainingPrecision = TrainingPrecision.FP32,
    checkpointing: float = 1.0,
    loss: Loss = Loss.AUTO,
    steps: int = 3,
) -> TrainingComparison:
    """Estimate a training step from ``onnx_path`` and measure the PyTorch ``source`` it came from.

    The inputs fed to PyTorch are the ONNX model's inputs with the bound shapes, matched to
    ``forward``'s parameters by name. Export the ONNX in training mode
    (``torch.onnx.export(..., training=torch.onnx.TrainingMode.TRAINING)``) for the closest
    estimate: eval exports fold BatchNorm into Conv, hiding the activations it saves. The loss
    measured is the estimate's (``auto`` resolved from the graph's output). The ratios pair the
    estimate's first-step and steady-state peaks with the first and the last measured step.

    Raises:
        ShapeBindingError, ModelFormatError: bad bindings or model.
        SourceError, MissingExtraError, MeasurementError: as :func:`measure_training_step`.
    """
    estimate = estimate_memory(
        onnx_path,
        bindings,
        train=True,
        optimizer=optimizer,
        precision=precision,
        checkpointing=checkpointing,
        loss=loss,
        pytorch_basis=True,
    )
    if estimate.training is None:  # estimate_memory(train=True) always sets it
        raise InternalError(onnx_path, "the training estimate is missing")
    training = estimate.training
    inputs = model_input_specs(onnx_path, bindings)
    measurement = measure_training_step(
        source,
        inputs,
        optimizer=optimizer,
        precision=precision,
        loss=training.loss,
        steps=max(steps, 2),
    )
    ratio = training.peak_bytes / max(measurement.steady_peak_bytes, 1)
    first = training.first_step_peak_bytes / max(measurement.first_step_peak_bytes, 1)
    return TrainingComparison(estimate, measurement, ratio, first)
