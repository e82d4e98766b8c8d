"""Rendering of quantization results and model comparisons: rich tables, JSON, CSV, Markdown."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.render import OutputFormat, format_bytes, to_json
from converters.quantize import QuantizationResult
from graph_analysis.runtime.compare import Comparison, ModelComparison, comparison_to_dict

__all__ = [
    "comparison_rows",
    "quantization_to_dict",
    "render_comparison",
    "render_quantization",
    "render_quantized_comparison",
]


def quantization_to_dict(result: QuantizationResult) -> dict[str, Any]:
    """The JSON form of a quantization result (bytes as ints)."""
    return {
        "source": str(result.source),
        "output": str(result.output),
        "method": result.method.value,
        "per_channel": result.per_channel,
        "source_bytes": result.source_bytes,
        "output_bytes": result.output_bytes,
        "size_ratio": result.size_ratio,
        "external_data": result.external_data,
        "lifted_constants": result.lifted_constants,
        "bypassed_identities": result.bypassed_identities,
        "quantized_ops": dict(result.quantized_ops),
        "float_tensors": [
            vars(t) | {"consumers": list(t.consumers), "dims": list(t.dims)}
            for t in result.float_tensors
        ],
        "fallback_tensors": [vars(t) for t in result.fallback_tensors],
        "recommendation": {
            "method": result.recommendation.method.value,
            "reason": result.recommendation.reason,
            "weight_bytes_by_consumer": {
                "conv": result.recommendation.makeup.conv_bytes,
                "matmul_gemm": result.recommendation.makeup.matmul_bytes,
                "recurrent": result.recommendation.makeup.recurrent_bytes,
                "other": result.recommendation.makeup.other_bytes,
            },
        },
        "verified": result.verified,
        "verified_reason": result.verified_reason,
        "warnings": list(result.warnings),
        "converted_from": result.converted_from,
    }


def render_quantization(
    result: QuantizationResult, fmt: OutputFormat, *, console: Console
) -> str | None:
    """JSON text for ``fmt`` json; otherwise prints a short summary to ``console`` and returns None."""
    if fmt is OutputFormat.JSON:
        return to_json(quantization_to_dict(result)) + "\n"
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(result.quantized_ops.items())) or "none"
    lines = []
    if result.converted_from is not None:
        lines.append(
            f"{escape(result.converted_from)} exported first to [bold]{escape(str(result.source))}"
            "[/bold] (float)"
        )
    lines.append(
        f"[bold]{escape(str(result.output))}[/bold] written ({result.method.value}"
        f"{', per channel' if result.per_channel else ''}): "
        f"{format_bytes(result.output_bytes)} vs {format_bytes(result.source_bytes)} "
        f"= {result.size_ratio:.2f}x the input (counted, file plus external data)"
    )
    lines.append(f"quantized ops: {ops}")
    if result.verified:
        lines.append(f"verified: {escape(result.verified_reason)}")
    else:
        lines.append(f"[bold]NOT VERIFIED[/bold]: {escape(result.verified_reason)}")
    if result.lifted_constants:
        lines.append(
            f"Constant-node weights lifted to initializers first: {result.lifted_constants}"
        )
    if result.bypassed_identities:
        lines.append(
            f"Identity nodes between weights and readers removed: {result.bypassed_identities}"
        )
    if result.fallback_tensors:
        lines.append(
            "stored as INT8 behind DequantizeLinear (left in float by the quantizer): "
            f"{len(result.fallback_tensors)} tensor(s)"
        )
    for line in lines:
        console.print(line, soft_wrap=True)
    if result.float_tensors:
        table = Table(title="Weights left in float", title_justify="left")
        for column in ("tensor", "dtype", "size", "read by", "why"):
            table.add_column(column, justify="right" if column == "size" else "left")
        for t in result.float_tensors[:10]:
            table.add_row(
                t.name, t.data_type, format_bytes(t.nbytes), ", ".join(t.consumers), t.reason
            )
        if len(result.float_tensors) > 10:
            table.caption = f"{len(result.float_tensors) - 10} more (see --format json)"
        console.print(table)
    if result.recommendation.method is not result.method:
        console.print(
            f"recommended for this graph: {result.recommendation.method.value} "
            f"({result.recommendation.reason})",
            soft_wrap=True,
        )
    return None


def _ratio(value: int, reference: int) -> str:
    return f" ({value / reference:.2f}x)" if reference else ""


def _drift_cells(model: ModelComparison) -> tuple[str, str, str, str]:
    if model.drift is None:
        return ("reference", "reference", "reference", "reference")
    d = model.drift
    agreement = "n/a" if d.argmax_agreement is None else f"{d.argmax_agreement:.1%}"
    return (f"{d.max_abs:.3g}", f"{d.mean_abs:.3g}", f"{d.cosine_similarity:.6f}", agreement)


def comparison_rows(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """(figure label with its provenance, one cell per model): shared by table and Markdown."""
    first = comparison.models[0]
    rows: list[tuple[str, list[str]]] = []

    def add(label: str, cells: list[str]) -> None:
        rows.append((label, cells))

    add("parameters (counted)", [f"{m.parameters:,}" for m in comparison.models])
    add(
        "weights by dtype (counted)",
        [
            ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(m.weight_bytes_by_dtype.items()))
            for m in comparison.models
        ],
    )
    add(
        "on disk (counted)",
        [
            format_bytes(m.on_disk_bytes) + _ratio(m.on_disk_bytes, first.on_disk_bytes)
            for m in comparison.models
        ],
    )
    add(
        "inference memory (estimated)",
        [
            "n/a"
            if m.estimated_inference_bytes is None
            else format_bytes(m.estimated_inference_bytes)
            for m in comparison.models
        ],
    )
    for index, run in enumerate(first.measured):
        arena = "on" if run.arena else "off"
        ref_peak = run.peak_bytes
        add(
            f"peak memory, arena {arena} (measured)",
            [
                format_bytes(m.measured[index].peak_bytes)
                + _ratio(m.measured[index].peak_bytes, ref_peak)
                for m in comparison.models
            ],
        )
        add(
            f"latency median / p90, arena {arena} (measured)",
            [
                f"{m.measured[index].latency.median_ms:.3g} / {m.measured[index].latency.p90_ms:.3g} ms"
                for m in comparison.models
            ],
        )
    cells = [_drift_cells(m) for m in comparison.models]
    for position, label in enumerate(
        ("max abs drift", "mean abs drift", "cosine similarity", "argmax agreement")
    ):
        add(f"{label} (measured)", [c[position] for c in cells])
    return rows


def _notes(comparison: Comparison) -> str:
    inputs = ", ".join(
        f"{s.name}: {s.elem_type.name}[{','.join(map(str, s.dims))}]" for s in comparison.inputs
    )
    notes = "".join(f"; {note}" for note in comparison.notes)
    return (
        f"inputs generated with seed {comparison.seed} ({inputs}); {comparison.runs} timed runs after "
        f"the first; {comparison.threads} intra-op thread(s); peak memory = resident growth of a "
        "fresh child process from session creation through the first run, over its baseline with "
        f"onnxruntime imported{notes}"
    )


def _headers(comparison: Comparison) -> list[str]:
    return [Path(m.path).name for m in comparison.models]


def render_comparison(comparison: Comparison, fmt: OutputFormat, *, console: Console) -> str | None:
    """Text for JSON/CSV/Markdown; for a table, prints it to ``console`` and returns None."""
    if fmt is OutputFormat.JSON:
        return to_json(comparison_to_dict(comparison)) + "\n"
    rows = comparison_rows(comparison)
    headers = _headers(comparison)
    if fmt is OutputFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["figure", *headers])
        for label, cells in rows:
            writer.writerow([label, *cells])
        return buffer.getvalue()
    if fmt is OutputFormat.MARKDOWN:
        lines = ["| figure | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
        lines += ["| " + label + " | " + " | ".join(cells) + " |" for label, cells in rows]
        return "\n".join(lines) + "\n\n" + _notes(comparison) + "\n"
    table = Table(title="Comparison (first model = reference for drift)", title_justify="left")
    table.add_column("figure")
    for header in headers:
        table.add_column(header, justify="right")
    for label, cells in rows:
        table.add_row(label, *cells)
    table.caption = _notes(comparison)
    console.print(table)
    return None


def render_quantized_comparison(
    result: QuantizationResult, comparison: Comparison, fmt: OutputFormat, *, console: Console
) -> str | None:
    """``quantize --compare``: the result then the comparison; JSON nests both in one object."""
    if fmt is OutputFormat.JSON:
        data = {"quantization": quantization_to_dict(result), **comparison_to_dict(comparison)}
        return to_json(data) + "\n"
    first = render_quantization(result, OutputFormat.TABLE, console=console)
    second = render_comparison(comparison, fmt, console=console)
    return (first or "") + (second or "") or None
