"""Rendering of memory estimates and measurements: rich tables for people, JSON for machines."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from cli.render import OutputFormat, format_bytes
from converters.memory_source import SourceMemory
from converters.torch_train import TrainingComparison
from graph_analysis.memory import MemoryEstimate, StepPhase, memory_to_dict
from graph_analysis.runtime.measure import InferenceMeasurement, MemoryComparison

__all__ = [
    "comparison_to_dict",
    "measurement_to_dict",
    "render_source_memory",
    "source_memory_to_dict",
    "training_comparison_to_dict",
]


def _mib(value: int) -> str:
    if value < 0:
        return "-" + format_bytes(-value)
    return format_bytes(value)


def measurement_to_dict(m: InferenceMeasurement) -> dict[str, object]:
    """A measurement as JSON-ready data (bytes as ints, seconds as floats)."""
    return {
        "arena": m.arena,
        "threads": m.threads,
        "inputs": {i.name: list(i.dims) for i in m.inputs},
        "baseline_rss_bytes": m.baseline_rss_bytes,
        "session_peak_bytes": m.session_peak_bytes,
        "session_bytes": m.session_bytes,
        "session_file_bytes": m.session_file_bytes,
        "peak_bytes": m.peak_bytes,
        "peak_min_bytes": m.peak_min_bytes,
        "peak_max_bytes": m.peak_max_bytes,
        "peak_modes_bytes": list(m.peak_modes_bytes),
        "repeats": m.repeats,
        "steady_peak_bytes": m.steady_peak_bytes,
        "output_bytes": m.output_bytes,
        "latency_median_s": m.latency_median_s,
        "latency_p90_s": m.latency_p90_s,
        "runs": m.runs,
        "create_seconds": m.create_seconds,
        "peak_is_exact": m.peak_is_exact,
        "onnxruntime_version": m.onnxruntime_version,
    }


def comparison_to_dict(comparison: MemoryComparison) -> dict[str, object]:
    """Estimate plus measurements, with ``ratio`` = estimated / measured peak per measurement."""
    data = memory_to_dict(comparison.estimate)
    data["measured"] = [
        {**measurement_to_dict(m), "ratio": round(comparison.ratio(m), 4)}
        for m in comparison.measurements
    ]
    return data


def _estimate_tables(estimate: MemoryEstimate) -> list[Table]:
    inf = estimate.inference
    shapes = estimate.shapes
    title = "Inference memory (estimated, onnxruntime CPU)"
    table = Table(title=title, title_justify="left")
    table.add_column("item")
    table.add_column("size", justify="right")
    table.add_column("how")
    table.add_row("weights", _mib(inf.weights_bytes), "counted: initializers + constants")
    table.add_row(
        "activations (peak live)",
        _mib(inf.activations_peak_bytes),
        "estimated: liveness over the node order",
    )
    table.add_row(
        "activations (naive sum)", _mib(inf.activations_sum_bytes), "counted: no reuse (not added)"
    )
    table.add_row(
        "runtime overhead",
        _mib(inf.runtime_overhead_bytes),
        "estimated: fixed costs, packed and heap-kept copies, arena slack",
    )
    table.add_row(
        "  of which code pages",
        _mib(inf.code_pages_bytes),
        "measured: onnxruntime's code mapped creating this session (file-backed)"
        if inf.code_pages_measured
        else "assumed: onnxruntime's code a session maps (file-backed; measured where the "
        "optimized graph is made)",
    )
    phase = (
        "session creation"
        if inf.session_creation_bytes >= inf.inference_bytes
        else "the first inference"
    )
    table.add_row(
        "peak (process growth)",
        _mib(inf.peak_bytes),
        f"estimated: reached during {phase}",
        style="bold",
    )
    tables = [table]
    info = Table(title="Shapes and peak", title_justify="left", show_header=False)
    info.add_column("what")
    info.add_column("value")
    info.add_row("inputs", ", ".join(f"{t.name}={list(t.dims or ())}" for t in shapes.inputs))
    if shapes.defaulted:
        info.add_row("defaulted dims", "; ".join(shapes.defaulted))
    info.add_row("activations from", inf.activations_graph)
    not_used = estimate.assumptions.get("executed_graph_not_used")
    if not_used:
        info.add_row("optimized graph", str(not_used))
    info.add_row("peak at", ", ".join(inf.peak_nodes) or "(before the first node)")
    if inf.peak_tensors:
        info.add_row(
            "largest live at peak",
            ", ".join(f"{t.name} ({_mib(t.nbytes)})" for t in inf.peak_tensors[:3]),
        )
    unknown = len(shapes.unknown)
    info.add_row(
        "unknown shapes",
        "none" if not unknown else f"{unknown} tensors, sized from their node's activation inputs",
    )
    info.add_row("shape engines", ", ".join(shapes.engines))
    for note in shapes.notes:
        info.add_row("note", note)
    tables.append(info)
    if estimate.training is not None:
        tr = estimate.training
        train = Table(
            title=(
                f"Training step (estimated: {tr.optimizer.value}, {tr.precision.value}, "
                f"checkpointing {tr.checkpointing:g}, loss {tr.loss.value}: {tr.loss_reason}; "
                f"{tr.basis})"
            ),
            title_justify="left",
        )
        train.add_column("item")
        train.add_column("size", justify="right")
        train.add_column("held during")
        train.add_column("formula")
        for item in tr.items:
            train.add_row(
                item.name.replace("_", " "),
                _mib(item.nbytes),
                _held_during(item.phases),
                item.formula,
            )
        p = f"P = {tr.trainable_parameters:,}"
        train.add_row(
            "peak, first step",
            _mib(tr.first_step_peak_bytes),
            tr.first_step_peak_phase.value.replace("_", " "),
            f"sum of the items held then (no optimizer state during backward); {p}",
        )
        train.add_row(
            "peak, steady state",
            _mib(tr.peak_bytes),
            tr.steady_peak_phase.value.replace("_", " "),
            "sum of the items held then (every step from the second on)",
            style="bold",
        )
        tables.append(train)
    return tables


def _held_during(phases: tuple[StepPhase, ...]) -> str:
    if set(phases) == set(StepPhase):
        return "whole step"
    if set(phases) == {StepPhase.FIRST_BACKWARD, StepPhase.BACKWARD}:
        return "backward"
    if set(phases) == {StepPhase.BACKWARD, StepPhase.OPTIMIZER_STEP}:
        return "optimizer step; backward from step 2"
    return ", ".join(phase.value.replace("_", " ") for phase in phases)


def _inference_measured_table(comparison: MemoryComparison) -> Table:
    table = Table(
        title="Measured (onnxruntime CPU, fresh child processes, median)", title_justify="left"
    )
    for column in (
        "arena",
        "session peak",
        "code pages",
        "peak (median)",
        f"min - max of {comparison.measurements[0].repeats if comparison.measurements else 0}",
        "estimate / measured",
        "latency median",
        "latency p90",
    ):
        table.add_column(column, justify="right")
    for m in comparison.measurements:
        table.add_row(
            "on" if m.arena else "off",
            _mib(m.session_peak_bytes),
            "n/a" if m.session_file_bytes is None else _mib(m.session_file_bytes),
            _mib(m.peak_bytes),
            f"{_mib(m.peak_min_bytes)} - {_mib(m.peak_max_bytes)}"
            + (
                f" (modes {' / '.join(_mib(v) for v in m.peak_modes_bytes)})"
                if len(m.peak_modes_bytes) > 1
                else ""
            ),
            f"{comparison.ratio(m):.2f}",
            f"{m.latency_median_s * 1000:.2f} ms",
            f"{m.latency_p90_s * 1000:.2f} ms",
        )
    return table


def training_comparison_to_dict(comparison: TrainingComparison) -> dict[str, object]:
    """The training estimate with the measured PyTorch step and the ratio."""
    m = comparison.measurement
    data = memory_to_dict(comparison.estimate)
    data["training_measured"] = {
        "source": m.source,
        "optimizer": m.optimizer.value,
        "precision": m.precision.value,
        "loss": m.loss.value,
        "peak_bytes": m.peak_bytes,
        "steady_peak_bytes": m.steady_peak_bytes,
        "first_step_peak_bytes": m.first_step_peak_bytes,
        "step_peak_bytes": list(m.step_peak_bytes),
        "model_bytes": m.model_bytes,
        "param_bytes": m.param_bytes,
        "num_parameters": m.num_parameters,
        "trainable_parameters": m.trainable_parameters,
        "step_seconds": list(m.step_seconds),
        "torch_version": m.torch_version,
        "ratio": round(comparison.ratio, 4),
        "first_step_ratio": round(comparison.first_step_ratio, 4),
    }
    return data


def _training_measured_table(comparison: TrainingComparison) -> Table:
    m = comparison.measurement
    table = Table(title="Measured training step (PyTorch CPU, fresh child)", title_justify="left")
    for column in ("source", "parameters", "loss", "step", "measured peak", "estimate / measured"):
        table.add_column(column, justify="right")
    est = comparison.estimate.training
    first_est = est.first_step_peak_bytes if est is not None else 0
    table.add_row(
        m.source,
        f"{m.num_parameters:,}",
        m.loss.value,
        "first",
        _mib(m.first_step_peak_bytes),
        f"{_mib(first_est)} / {_mib(m.first_step_peak_bytes)} = {comparison.first_step_ratio:.2f}",
    )
    steady_est = est.peak_bytes if est is not None else 0
    table.add_row(
        "",
        "",
        "",
        f"steady (step {len(m.step_peak_bytes)})",
        _mib(m.steady_peak_bytes),
        f"{_mib(steady_est)} / {_mib(m.steady_peak_bytes)} = {comparison.ratio:.2f}",
    )
    return table


def _training_measured_dict(comparison: TrainingComparison) -> dict[str, object]:
    return training_comparison_to_dict(comparison)["training_measured"]  # type: ignore[return-value]


def source_memory_to_dict(result: SourceMemory) -> dict[str, object]:
    """Estimate, measurements (``measured``, ``training_measured``) and export, as JSON data."""
    data = memory_to_dict(result.estimate)
    data["source"] = result.source
    if result.conversion is not None:
        data["exporter"] = result.conversion.exporter
        data["export_notes"] = list(result.conversion.notes)
    if result.inference is not None:
        data["measured"] = comparison_to_dict(result.inference)["measured"]
    if result.training is not None:
        data["training_measured"] = _training_measured_dict(result.training)
    return data


def render_source_memory(result: SourceMemory, output: OutputFormat, console: Console) -> None:
    """Print what ``source_memory`` found: estimate tables, then each measurement with its ratio."""
    if output is not OutputFormat.TABLE:
        console.print_json(json.dumps(source_memory_to_dict(result)))
        return
    if result.conversion is not None:
        console.print(f"Exported with {result.conversion.exporter}; the estimate reads that graph.")
    for table in _estimate_tables(result.estimate):
        console.print(table)
    if result.inference is not None:
        console.print(_inference_measured_table(result.inference))
    if result.training is not None:
        console.print(_training_measured_table(result.training))
