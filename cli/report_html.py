"""The HTML reports of each command (``--format html -o report.html``), built from their results."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cli.render import format_bytes
from cli.render_html import (
    Chart,
    Marker,
    Section,
    Series,
    Tile,
    bar_chart,
    grouped_bars,
    html_page,
    line_chart,
    stacked_bars,
    treemap,
)
from converters.memory_source import SourceMemory
from converters.profile_source import SourceProfile
from converters.sources import SourceInspection
from graph_analysis.deploy import FitResult
from graph_analysis.memory import MemoryEstimate
from graph_analysis.report import ModelReport, Role
from graph_analysis.runtime.compare import Comparison

__all__ = [
    "compare_html",
    "fit_html",
    "inspect_html",
    "inspect_source_html",
    "memory_html",
    "profile_html",
]

_MIB = 2**20


def _mib(value: float) -> float:
    return value / _MIB


def byte_unit(values: list[float]) -> tuple[str, float]:
    """The binary unit that suits the largest of ``values``: (name, bytes per unit)."""
    largest = max(values, default=0.0)
    for name, scale in (("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)):
        if largest >= scale:
            return name, scale
    return "bytes", 1.0


def inspect_source_html(inspection: SourceInspection, source: str, *, depth: int = 2) -> str:
    """``inspect`` of any source: the framework's own answer first (framework sources), then the
    graph's report when there is one."""
    sections: list[Section] = []
    summary = inspection.summary
    if summary is not None:
        totals = summary.totals
        facts = [
            (
                "Framework",
                f"{summary.name} {summary.version}, {summary.model_type} (counted by the framework)",
            ),
            ("Parameters", f"{totals.total:,}"),
            ("Trainable", f"{totals.trainable:,}"),
            ("Non-trainable", f"{totals.total - totals.trainable:,}"),
            ("Buffers", f"{totals.buffers:,}"),
        ]
        if inspection.export_error:
            facts.append(("Graph", f"none: the ONNX export failed: {inspection.export_error}"))
        rows = [
            [
                "  " * layer.depth + (layer.name or "(model)"),
                layer.type,
                f"{layer.parameters:,}",
                f"{layer.trainable:,}",
                layer.output_shape,
            ]
            for layer in summary.layers
            if layer.depth <= depth
        ]
        sections.append(
            Section(
                "The framework's count",
                facts,
                tables=[
                    (
                        "Layers as the framework defines them (counted)",
                        ["layer", "type", "parameters", "trainable", "output shape"],
                        rows,
                    )
                ],
            )
        )
    if inspection.report is None:
        return html_page(f"modelsize inspect: {source}", sections)
    graph_page = _inspect_sections(inspection.report, depth)
    return html_page(f"modelsize inspect: {source}", sections + graph_page)


def inspect_html(report: ModelReport, *, title: str | None = None, depth: int = 2) -> str:
    """Parameters by layer as a treemap (bytes as area, data type as colour, copies outlined)."""
    return html_page(
        title or f"modelsize inspect: {Path(report.path).name}", _inspect_sections(report, depth)
    )


def _inspect_sections(report: ModelReport, depth: int) -> list[Section]:
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    dtypes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    marked: set[str] = set()
    for t in report.tensors:
        if t.role not in (Role.PARAMETER, Role.RUNNING_STAT):
            continue
        key = "/".join(t.layer[:depth]) or "(top level)"
        groups[key][0] += t.nbytes
        groups[key][1] += t.num_elements if t.duplicate_of is None else 0
        dtypes[key][t.data_type] += t.nbytes
        if t.duplicate_of is not None:
            marked.add(key)
    tiles = [
        Tile(
            name=key,
            value=nbytes,
            key=max(dtypes[key], key=lambda d: dtypes[key][d]),
            marked=key in marked,
            tooltip=(
                f"{key}: {params:,} parameters, {format_bytes(nbytes)} "
                f"({', '.join(sorted(dtypes[key]))}){'; holds copies of other tensors' if key in marked else ''}"
            ),
        )
        for key, (nbytes, params) in groups.items()
    ]
    size = report.size
    facts = [
        ("Parameters (counted)", f"{report.parameters.total:,}"),
        (
            "Learned / running statistics",
            f"{report.parameters.learned:,} / {report.parameters.running_stats:,}",
        ),
        ("On disk (measured)", format_bytes(size.on_disk_bytes)),
        ("Weights as stored (counted)", format_bytes(size.weights_bytes)),
        *(
            (f"At {p.precision.value} (what-if)", f"{format_bytes(p.nbytes)}: {p.assumption}")
            for p in size.by_precision
        ),
        (
            "Copies found",
            f"{len(report.duplicates)} group(s), {format_bytes(size.duplicate_bytes)}",
        ),
        ("Producer", f"{report.producer_name} {report.producer_version}".strip() or "unknown"),
    ]
    chart = treemap(
        f"Parameters by layer (depth {depth})",
        tiles,
        "Counted. Area: bytes of the layer's weights as stored; colour: the layer's main data type; "
        "red outline: the layer holds copies of other tensors (tied or duplicated).",
        unit="bytes",
    )
    dtype_chart = bar_chart(
        "Weights by data type",
        "data type",
        "MiB",
        [
            (r.data_type, _mib(r.nbytes), f"{r.data_type}: {format_bytes(r.nbytes)}")
            for r in size.by_dtype
        ],
        "Counted: dims x data type of every weight tensor, as stored.",
    )
    rows = [
        [r.key, f"{r.num_parameters:,}", format_bytes(r.nbytes), str(r.tensors)]
        for r in report.layers
        if r.depth <= depth
    ]
    return [
        Section("Summary", facts, [chart, dtype_chart]),
        Section(
            "Layers",
            tables=[
                (
                    "Parameters by layer (counted)",
                    ["layer", "parameters", "bytes", "tensors"],
                    rows,
                )
            ],
        ),
    ]


def _memory_sections(estimate: MemoryEstimate, measured_peak: int | None) -> list[Section]:
    inference = estimate.inference
    facts = [
        ("Estimated peak (inference)", format_bytes(inference.peak_bytes)),
        ("Weights (counted)", format_bytes(inference.weights_bytes)),
        ("Activations at the peak (estimated)", format_bytes(inference.activations_peak_bytes)),
        ("Activations, naive sum (counted)", format_bytes(inference.activations_sum_bytes)),
        ("Peak at", ", ".join(inference.peak_nodes) or "-"),
        (
            "Inputs",
            ", ".join(
                f"{t.name}={'x'.join(map(str, t.dims or ()))}" for t in estimate.shapes.inputs
            ),
        ),
    ]
    if measured_peak is not None:
        facts.insert(1, ("Measured peak (onnxruntime)", format_bytes(measured_peak)))
    charts: list[Chart] = []
    timeline = getattr(inference, "timeline", None)
    if timeline:
        base = inference.weights_bytes
        points = [(float(i), _mib(base + b)) for i, b in enumerate(timeline)]
        peak_step = max(range(len(timeline)), key=lambda i: timeline[i])
        hlines = [("estimated peak", _mib(inference.peak_bytes))]
        if measured_peak is not None:
            hlines.append(("measured peak", _mib(measured_peak)))
        charts.append(
            line_chart(
                "Live activations over the node order",
                "step (node in execution order)",
                "MiB",
                [Series("weights + live activation bytes", points)],
                "Estimated: activation bytes live at each step (liveness of the graph at the bound "
                "shapes), drawn on top of the weights' band (counted); the dashed lines are the estimated "
                "peak (weights, activations and runtime overhead) and, when measured, onnxruntime's "
                "measured peak.",
                hlines=hlines,
                band=("weights", _mib(inference.weights_bytes)),
                markers=[
                    Marker(
                        float(peak_step),
                        _mib(base + timeline[peak_step]),
                        "peak: "
                        + ", ".join(inference.peak_nodes[:2])
                        + "; largest: "
                        + ", ".join(t.name for t in inference.peak_tensors[:3]),
                    )
                ],
            )
        )
    parts = [
        ("weights", _mib(inference.weights_bytes)),
        ("activations at peak", _mib(inference.activations_peak_bytes)),
        ("runtime overhead", _mib(max(0, inference.runtime_overhead_bytes))),
    ]
    bars = [("estimated", parts)]
    if measured_peak is not None:
        bars.append(("measured", [("measured peak", _mib(measured_peak))]))
    charts.append(
        stacked_bars(
            "Inference memory",
            "",
            "MiB",
            bars,
            "Estimated (onnxruntime CPU memory model, docs/memory.md) beside the measured peak "
            "resident growth of a fresh onnxruntime process, when measured.",
        )
    )
    sections = [Section("Inference memory", facts, charts)]
    training = estimate.training
    if training is not None:
        sections.append(
            Section(
                "Training step",
                [
                    ("Estimated peak, steady state", format_bytes(training.peak_bytes)),
                    ("Estimated peak, first step", format_bytes(training.first_step_peak_bytes)),
                    (
                        "Optimizer / precision",
                        f"{training.optimizer.value} / {training.precision.value}",
                    ),
                    ("Basis", training.basis),
                ],
                [
                    stacked_bars(
                        "Training memory by phase of a step",
                        "phase",
                        "MiB",
                        [
                            (
                                phase.value,
                                [
                                    (i.name, _mib(i.nbytes))
                                    for i in training.items
                                    if phase in i.phases
                                ],
                            )
                            for phase in training.phase_bytes
                        ],
                        "Estimated: each bar is one phase of a training step and the items held "
                        "during it (their formulas are in the table below); the steady-state peak "
                        "is the tallest of backward and optimizer_step, the first step's the "
                        "tallest of first_backward and optimizer_step.",
                    )
                ],
                [
                    (
                        "Items (estimated)",
                        ["item", "bytes", "formula"],
                        [[i.name, format_bytes(i.nbytes), i.formula] for i in training.items],
                    )
                ],
            )
        )
    return sections


def memory_html(result: SourceMemory) -> str:
    """Inference (and training) memory: live activations over the graph, items, measured peaks."""
    measured = None
    if result.inference is not None and result.inference.measurements:
        measured = result.inference.measurements[0].peak_bytes
    return html_page(
        f"modelsize memory: {result.source}", _memory_sections(result.estimate, measured)
    )


def compare_html(comparison: Comparison) -> str:
    """Side by side: sizes, estimated and measured memory, latency, drift; one group per model."""
    names = [Path(m.path).name for m in comparison.models]
    measured = [m.measured[0].peak_bytes if m.measured else 0 for m in comparison.models]
    charts = [
        grouped_bars(
            "Size and memory per model",
            "model",
            "MiB",
            names,
            [
                ("on disk (counted)", [_mib(m.on_disk_bytes) for m in comparison.models]),
                (
                    "estimated memory",
                    [_mib(m.estimated_inference_bytes or 0) for m in comparison.models],
                ),
                ("measured memory", [_mib(v) for v in measured]),
            ],
            "On disk: counted file bytes. Estimated: the memory model. Measured: peak resident growth "
            "of a fresh onnxruntime process (arena on).",
        ),
        bar_chart(
            "Latency per model",
            "model",
            "ms (median)",
            [
                (
                    n,
                    m.measured[0].latency.median_ms if m.measured else 0.0,
                    f"{n}: {m.measured[0].latency.median_ms:.2f} ms median"
                    if m.measured
                    else f"{n}: not measured",
                )
                for n, m in zip(names, comparison.models, strict=True)
            ],
            f"Measured: median of {comparison.runs} runs, {comparison.threads} thread(s).",
        ),
    ]
    drifted = [(n, m.drift) for n, m in zip(names, comparison.models, strict=True) if m.drift]
    if drifted:
        charts.append(
            bar_chart(
                "Output drift against the first model",
                "model",
                "1 - cosine similarity",
                [
                    (
                        n,
                        1 - d.cosine_similarity,
                        f"{n}: cosine {d.cosine_similarity:.6f}, max |diff| {d.max_abs:.3g}",
                    )
                    for n, d in drifted
                ],
                "Measured on the same seeded inputs: the worst output's 1 - cosine similarity.",
            )
        )
    rows = [
        [
            n,
            f"{m.parameters:,}",
            format_bytes(m.on_disk_bytes),
            format_bytes(m.estimated_inference_bytes) if m.estimated_inference_bytes else "-",
            format_bytes(m.measured[0].peak_bytes) if m.measured else "-",
            f"{m.measured[0].latency.median_ms:.2f}" if m.measured else "-",
        ]
        for n, m in zip(names, comparison.models, strict=True)
    ]
    return html_page(
        "modelsize compare",
        [
            Section(
                "Models",
                [("Models", ", ".join(names)), ("Runs", str(comparison.runs))],
                charts,
                [
                    (
                        "Figures",
                        ["model", "parameters", "on disk", "estimated", "measured", "latency ms"],
                        rows,
                    )
                ],
            )
        ],
    )


def profile_html(result: SourceProfile, *, depth: int = 1) -> str:
    """Time per layer next to MACs per layer."""
    compute = result.compute
    facts = [
        ("MACs (counted)", f"{compute.macs:,}"),
        ("FLOPs (counted)", f"{compute.flops:,}"),
        ("Integer MACs (counted)", f"{compute.integer_macs:,}"),
    ]
    charts: list[Chart] = []
    profile = result.profile
    if profile is not None:
        facts += [
            ("Latency (measured, median)", f"{profile.latency_median_s * 1e3:.3f} ms"),
            (
                "Kernels / runtime overhead",
                f"{profile.kernel_sum_s * 1e3:.3f} / {profile.unattributed_s * 1e3:.3f} ms",
            ),
        ]
        rows = [r for r in profile.layers if len(r.path) == depth]
        names = ["/".join(r.path) for r in rows]
        charts.append(
            grouped_bars(
                "Share of time and of MACs per layer",
                "layer",
                "% of the model",
                names,
                [
                    ("time (measured)", [100 * r.share for r in rows]),
                    (
                        "MACs (counted)",
                        [100 * r.macs / compute.macs if compute.macs else 0 for r in rows],
                    ),
                ],
                "Time: median over the timed runs of the kernels mapped to the layer, as a share of "
                "the measured latency. MACs: counted from the graph, as a share of the model's.",
            )
        )
    else:
        rows_c = [r for r in compute.layers if len(r.path) == depth]
        charts.append(
            bar_chart(
                "MACs per layer",
                "layer",
                "MACs",
                [
                    ("/".join(r.path), float(r.macs), f"{'/'.join(r.path)}: {r.macs:,} MACs")
                    for r in rows_c
                ],
                "Counted from the graph at the bound shapes.",
            )
        )
    return html_page(f"modelsize profile: {result.source}", [Section("Compute", facts, charts)])


def fit_html(result: FitResult) -> str:
    """Peak memory against the varied dim per precision, with the budget as a line."""
    own = result.evaluated
    series = [
        Series("estimated peak, model's own precision", [(float(v), _mib(b)) for v, b in own])
    ]
    base = dict(own)
    for c in result.candidates:
        if (
            c.value is not None
            and c.estimated_peak_bytes is not None
            and c.disk_kind == "what-if"
            and c.value in base
        ):
            delta = c.estimated_peak_bytes - base[c.value]
            series.append(
                Series(
                    f"{c.precision.value} (what-if)",
                    [(float(v), _mib(b + delta)) for v, b in own],
                    dashed=True,
                )
            )
    markers = [
        Marker(
            float(c.value),
            _mib(c.estimated_peak_bytes),
            f"{c.precision.value}: {result.vary}={c.value}",
        )
        for c in result.candidates
        if c.value is not None and c.estimated_peak_bytes is not None
    ]
    chart = line_chart(
        f"Peak memory against {result.vary}",
        result.vary,
        "MiB",
        series,
        "Estimated by the memory model at each value evaluated by the search; other precisions are "
        "what-if (their weights' bytes replace the stored ones). The red line is the budget.",
        hlines=[("budget", _mib(result.memory_budget_bytes))],
        markers=markers,
        log_x=True,
    )
    facts = [
        (
            f"{c.precision.value}",
            f"{result.vary}={c.value}" if c.value is not None else (c.reason or "does not fit"),
        )
        for c in result.candidates
    ]
    return html_page(f"modelsize fit: {result.path}", [Section("What fits", facts, [chart])])


def memory_estimate_html(estimate: MemoryEstimate, title: str) -> str:
    """A memory report from an estimate alone (library use)."""
    return html_page(title, _memory_sections(estimate, None))
