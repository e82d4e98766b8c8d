"""Measured inference memory and latency: runs a model in onnxruntime in a fresh child process.

The child (``_measure_child.py``) imports only numpy, onnxruntime and small modules of this package
(never onnx), records its resident set
(``VmRSS``) as the baseline, resets the kernel's peak counter (``/proc/self/clear_refs``), creates a
CPU session with default options (except the memory-arena switch and the thread count), feeds
generated inputs of the bound shapes (the right dtype per input: normal floats, ones for integers,
True for booleans), runs once, then ``runs`` more times for latency. Peak growth is
``VmHWM - baseline``: everything the session and the inference made resident, including the inputs.

One child's peak depends on where glibc happens to place the heap: identical command lines give
identical peaks, but a few bytes more in argv or the environment move the peak by up to ~10 MB on a
70-100 MB process. So ``repeats`` children run, each with a differently sized padding variable in
its environment (a different layout), and the figures are their median with the peak's min and max.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType
from graph_analysis.errors import ModelFormatError
from graph_analysis.loading import read_model, require_external_data
from graph_analysis.memory import MemoryEstimate, Optimizer, TrainingPrecision
from graph_analysis.runtime._child_process import run_json_child
from graph_analysis.runtime._feeds import (
    InputSpec,
    apply_input_dtypes,
    check_inputs_fit,
    specs_to_json,
)
from graph_analysis.runtime.optimized import executed_estimator
from graph_analysis.shapes import bind_inputs, load_model_skeleton

if TYPE_CHECKING:
    import onnx

__all__ = [
    "InferenceMeasurement",
    "InputSpec",
    "MemoryComparison",
    "compare_memory",
    "measure_inference",
    "model_input_specs",
]


@dataclass(frozen=True)
class InferenceMeasurement:
    """What one onnxruntime CPU session really used (measured, in a fresh child process).

    Attributes:
        path: the model measured.
        arena: whether the CPU memory arena was enabled (``enable_cpu_mem_arena``).
        threads: intra-op threads (None: onnxruntime's default).
        inputs: the generated inputs.
        baseline_rss_bytes: the child's resident set after importing numpy and onnxruntime.
        session_peak_bytes: peak resident growth over the baseline while creating the session.
        session_bytes: resident growth once the session exists (model load transients freed).
        session_file_bytes: the file-backed part of ``session_bytes`` (``RssFile``: the pages of
            onnxruntime's code the session mapped), None where the kernel does not say.
        peak_bytes: peak resident growth from session creation through the first inference.
        steady_peak_bytes: peak growth over every run (first plus the latency runs).
        output_bytes: bytes of the outputs returned by the first run.
        latency_median_s: median seconds per ``session.run`` over the latency runs.
        latency_p90_s: 90th percentile of the same.
        runs: timed runs per child (the latency figures pool every child's runs).
        create_seconds: session creation time.
        peak_is_exact: False when the peak counter could not be reset (then the peak may include
            the imports' transient peak).
        onnxruntime_version: the runtime measured.
        repeats: fresh children measured (each with a different heap layout); every byte and
            second figure above is their median.
        peak_min_bytes: the smallest ``peak_bytes`` among the children.
        peak_max_bytes: the largest: ``peak_max_bytes - peak_min_bytes`` is the measurement's
            own noise (heap layout), the part of a difference that means nothing.
        peak_modes_bytes: the values the children's peaks gather around, smallest first (see
            :func:`peak_modes`): one for most models; two when the heap's state before the
            session decides whether a large arena region finds a hole left by session creation
            (a bimodal model: a user's process gets either, depending on what it allocated
            before; docs/memory.md).
    """

    path: str
    arena: bool
    threads: int | None
    inputs: tuple[InputSpec, ...]
    baseline_rss_bytes: int
    session_peak_bytes: int
    session_bytes: int
    peak_bytes: int
    steady_peak_bytes: int
    output_bytes: int
    latency_median_s: float
    latency_p90_s: float
    runs: int
    create_seconds: float
    peak_is_exact: bool
    onnxruntime_version: str
    repeats: int = 1
    peak_min_bytes: int = 0
    peak_max_bytes: int = 0
    peak_modes_bytes: tuple[int, ...] = ()
    session_file_bytes: int | None = None


#: Two children's peaks belong to different modes when they differ by more than this many bytes
#: and by more than :data:`MODE_GAP_FRACTION` of the larger (the layout noise within a mode is
#: 0-1 MiB on the real models; their modes are 6-17 MiB apart).
MODE_GAP_BYTES = 2 << 20
MODE_GAP_FRACTION = 0.05


def peak_modes(peaks: list[int]) -> tuple[int, ...]:
    """The modes of the children's peaks: sorted, split where two neighbours differ by more than
    :data:`MODE_GAP_BYTES` and :data:`MODE_GAP_FRACTION`, each group's median, smallest first."""
    groups: list[list[int]] = []
    for value in sorted(peaks):
        last = groups[-1][-1] if groups else None
        if last is None or (
            value - last > MODE_GAP_BYTES and value - last > MODE_GAP_FRACTION * value
        ):
            groups.append([value])
        else:
            groups[-1].append(value)
    return tuple(int(statistics.median(g)) for g in groups)


#: Environment variable whose length differs between the repeated children: it shifts the initial
#: stack and heap layout, the source of the run-to-run noise the repeats expose.
LAYOUT_PADDING_VARIABLE = "MODELSIZE_LAYOUT_PADDING"


def model_input_specs(
    path: str | Path,
    bindings: Bindings | None = None,
    *,
    default_dim: int | None = 1,
    skeleton: onnx.ModelProto | None = None,
) -> tuple[InputSpec, ...]:
    """The inputs a measurement feeds: each graph input with its bound dims and element type.

    ``skeleton``: the model's parsed skeleton when the caller has it (read here otherwise).

    Raises:
        ShapeBindingError: a binding that does not fit the model.
        ModelFormatError: not an ONNX model, or an input that is not a plain tensor.
    """
    model = load_model_skeleton(path) if skeleton is None else skeleton
    bound, _values, _defaulted = bind_inputs(
        model, bindings or Bindings(), default_dim=default_dim, path=path
    )
    initializers = {i.name for i in bound.graph.initializer}
    specs: list[InputSpec] = []
    for value_info in bound.graph.input:
        if value_info.name in initializers:
            continue
        if not value_info.type.HasField("tensor_type"):
            raise ModelFormatError(
                path, f"input {value_info.name!r} is not a tensor; cannot feed it"
            )
        tensor_type = value_info.type.tensor_type
        elem_type = DataType.from_value(tensor_type.elem_type)
        if elem_type is None:
            raise ModelFormatError(
                path, f"input {value_info.name!r} has unknown data type {tensor_type.elem_type}"
            )
        dims = tuple(d.dim_value for d in tensor_type.shape.dim)
        specs.append(InputSpec(value_info.name, elem_type, dims))
    return tuple(specs)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure_inference(
    path: str | Path,
    bindings: Bindings | None = None,
    *,
    runs: int = 10,
    arena: bool = True,
    threads: int | None = 1,
    default_dim: int | None = 1,
    timeout_s: float = 600.0,
    repeats: int = 3,
) -> InferenceMeasurement:
    """Run ``path`` in onnxruntime (CPU) in fresh child processes and measure memory and latency.

    Args:
        path: the ONNX model (external data next to it is loaded by onnxruntime).
        bindings: input bindings (unbound dims take ``default_dim``).
        runs: ``session.run`` calls timed after the first (memory) run, per child; at least 1.
        arena: enable onnxruntime's CPU memory arena (``enable_cpu_mem_arena``, on by default).
        threads: intra-op threads; 1 keeps the timing stable on shared machines, None is
            onnxruntime's default (one per physical core).
        default_dim: value for dims nobody bound.
        timeout_s: each child is killed after this many seconds.
        repeats: fresh children, each with a different heap layout (a padding variable of a
            different length in its environment); figures are their median, the peak's spread is
            reported beside it. At least 1.

    Returns:
        The measurement (bytes are resident-set growth over the child's baseline; medians over
        the children, latencies pooled).

    Raises:
        ShapeBindingError: a binding that does not fit the model, or inputs larger than the
            memory this machine has available.
        ExternalDataError: external data that is missing, unsafe or not a regular file.
        MeasurementError: a child failed (onnxruntime rejected the model, ran out of memory,
            timed out).
    """
    # The child would fail on missing external data with an onnxruntime message (exit 1): refuse it
    # here as bad input, with the loader's verdict.
    require_external_data(read_model(path))
    inputs = model_input_specs(path, bindings, default_dim=default_dim)
    inputs = apply_input_dtypes(path, inputs, bindings or Bindings())
    check_inputs_fit(path, inputs)
    request = {
        "path": str(Path(path).resolve()),
        "arena": arena,
        "threads": threads,
        "runs": max(1, runs),
        "inputs": specs_to_json(inputs),
    }
    children = [
        run_json_child(
            "graph_analysis.runtime._measure_child",
            request,
            path=path,
            label="onnxruntime child",
            timeout_s=timeout_s,
            env={LAYOUT_PADDING_VARIABLE: "x" * (1 + 4099 * k)},
        )
        for k in range(max(1, repeats))
    ]

    def growth(key: str) -> list[int]:
        return [max(0, int(d[key]) - int(d["baseline_rss_bytes"])) for d in children]

    def median(values: list[int]) -> int:
        return int(statistics.median(values))

    peaks = growth("first_run_peak_bytes")
    latencies = [float(x) for d in children for x in d["latencies_seconds"]]
    first = children[0]
    return InferenceMeasurement(
        path=str(path),
        arena=arena,
        threads=threads,
        inputs=inputs,
        baseline_rss_bytes=median([int(d["baseline_rss_bytes"]) for d in children]),
        session_peak_bytes=median(growth("session_peak_bytes")),
        session_bytes=median(growth("session_rss_bytes")),
        peak_bytes=median(peaks),
        steady_peak_bytes=median(growth("all_runs_peak_bytes")),
        output_bytes=int(first["output_bytes"]),
        latency_median_s=statistics.median(latencies),
        latency_p90_s=_percentile(latencies, 0.9),
        runs=len(first["latencies_seconds"]),
        create_seconds=statistics.median(float(d["create_seconds"]) for d in children),
        peak_is_exact=all(bool(d["hwm_reset"]) for d in children),
        onnxruntime_version=str(first["onnxruntime_version"]),
        repeats=len(children),
        peak_min_bytes=min(peaks),
        peak_max_bytes=max(peaks),
        peak_modes_bytes=peak_modes(peaks),
        session_file_bytes=None
        if any(d.get("session_file_bytes") is None for d in children)
        else median([int(d["session_file_bytes"]) for d in children]),
    )


@dataclass(frozen=True)
class MemoryComparison:
    """An estimate next to what onnxruntime really used (arena on, and off when measured).

    Attributes:
        estimate: the graph-based estimate (its ``inference.peak_bytes`` is compared).
        measurements: one per arena setting measured, arena on first.
    """

    estimate: MemoryEstimate
    measurements: tuple[InferenceMeasurement, ...]

    def ratio(self, measurement: InferenceMeasurement) -> float:
        """``estimate.inference.peak_bytes / measurement.peak_bytes`` (inf when nothing grew)."""
        if measurement.peak_bytes <= 0:
            return float("inf")
        return self.estimate.inference.peak_bytes / measurement.peak_bytes


def compare_memory(
    path: str | Path,
    bindings: Bindings | None = None,
    *,
    runs: int = 10,
    arenas: tuple[bool, ...] = (True, False),
    threads: int | None = 1,
    estimate: MemoryEstimate | None = None,
    train: bool = False,
    optimizer: Optimizer = Optimizer.ADAM,
    precision: TrainingPrecision = TrainingPrecision.FP32,
    checkpointing: float = 1.0,
    repeats: int = 3,
) -> MemoryComparison:
    """Estimate ``path``'s memory and measure it in onnxruntime for each arena setting.

    Args:
        path: the ONNX model.
        bindings: input bindings, used for both the estimate and the generated inputs.
        runs: latency runs per measurement.
        arenas: the ``enable_cpu_mem_arena`` settings to measure, each in its own child.
        threads: intra-op threads of the measured sessions.
        estimate: a ready estimate (else made as the ``memory`` command makes it, reading
            onnxruntime's optimized graph where it can: :func:`executed_estimator`, with the
            training options below).
        train, optimizer, precision, checkpointing: passed to
            :func:`graph_analysis.memory.estimate_memory`.
        repeats: children per arena setting (see :func:`measure_inference`).

    Raises:
        ShapeBindingError, ModelFormatError: bad bindings or model.
        MeasurementError: a child failed.
    """
    if estimate is None:
        estimate = executed_estimator(path)(
            bindings,
            train=train,
            optimizer=optimizer,
            precision=precision,
            checkpointing=checkpointing,
        )
    measured = tuple(
        measure_inference(path, bindings, runs=runs, arena=arena, threads=threads, repeats=repeats)
        for arena in arenas
    )
    return MemoryComparison(estimate, measured)
