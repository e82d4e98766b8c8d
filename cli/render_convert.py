"""Rendering for framework sources: the conversion summary, framework counts and reconciliation."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TypeVar

from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from cli.render import Breakdown, OutputFormat, format_bytes, render_inspect, to_json
from converters.sources import (
    ConversionResult,
    SourceInspection,
    conversion_to_dict,
    inspection_to_dict,
)
from graph_analysis.framework import Reconciliation

T = TypeVar("T")

__all__ = ["ConvertFormat", "progress_reporter", "render_conversion", "render_source_inspection"]


class ConvertFormat(str, Enum):
    """How ``convert`` prints what it wrote."""

    TABLE = "table"
    JSON = "json"


@contextmanager
def progress_reporter() -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the slow step under way; None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    with console.status("converting...") as status:
        yield lambda text: status.update(f"{text}...")


# What each framework's totals mean, in its own words: (total, trainable, non-trainable, buffers).
_DEFINITIONS = {
    "torch": (
        "sum(p.numel() for p in model.parameters()), tied weights once",
        "requires_grad=True",
        "requires_grad=False (frozen)",
        "sum(b.numel() for b in model.buffers()): running statistics, masks; not parameters",
    ),
    "keras": (
        "model.count_params(), BatchNorm moving statistics included",
        "model.trainable_weights",
        "model.non_trainable_weights: moving statistics, frozen layers",
        "none in Keras",
    ),
}
_DEFINITIONS["tensorflow"] = (
    "variables captured by the serving signature",
    "trainable variables",
    "other variables",
    "none",
)


_DISPLAY_NAMES = {"torch": "PyTorch", "keras": "Keras", "tensorflow": "TensorFlow"}


def _display(name: str) -> str:
    """The framework as people name it: ``PyTorch`` for ``torch``."""
    return _DISPLAY_NAMES.get(name, name)


def _definitions(name: str) -> tuple[str, str, str, str]:
    return _DEFINITIONS.get(name, _DEFINITIONS["keras" if "keras" in name else "tensorflow"])


def _graph_line(inspection: SourceInspection) -> tuple[str, str]:
    """(value, explanation) for the graph's count next to the framework's."""
    rec, report = inspection.reconciliation, inspection.report
    if inspection.export_error is not None:
        return "-", "no graph: the ONNX export failed (the warning on stderr says why)"
    if report is None:
        return "-", "not exported (--framework-only)"
    value = f"{report.parameters.total:,}"
    if rec is None:
        return value, "counted in the ONNX graph"
    delta = rec.graph_total - rec.framework_total
    if not rec.entries:
        return value, "counted in the exported ONNX graph: equal, nothing differs"
    if delta == 0:
        return value, "counted in the exported ONNX graph: equal total (see Reconciliation)"
    return value, f"counted in the exported ONNX graph: {delta:+,} (see Reconciliation)"


def _headline(inspection: SourceInspection) -> Table | None:
    """The framework's own figures first, then the graph's count beside them."""
    totals = inspection.totals
    if totals is None:
        return None
    summary, info = inspection.summary, inspection.framework
    name = summary.name if summary is not None else info.name if info is not None else "?"
    version = summary.version if summary is not None else info.version if info is not None else ""
    model_type = f", {summary.model_type}" if summary is not None and summary.model_type else ""
    where = (
        f"counted by {_display(name)} itself"
        if summary is not None
        else f"counted by {_display(name)} at export, read from the file's record"
    )
    table = Table(
        title=f"Framework: {_display(name)} {version}{model_type} ({where})",
        title_justify="left",
        title_style="bold",
        show_header=False,
        box=None,
        pad_edge=False,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    total_def, trainable_def, frozen_def, buffers_def = _definitions(name)
    table.add_row("Parameters", f"{totals.total:,}", total_def)
    table.add_row("  trainable", f"{totals.trainable:,}", trainable_def)
    table.add_row("  non-trainable", f"{totals.non_trainable:,}", frozen_def)
    table.add_row("Buffers", f"{totals.buffers:,}", buffers_def)
    value, why = _graph_line(inspection)
    table.add_row("Graph parameters", value, why)
    return table


def _limited(rows: list[T], top: int | None) -> tuple[list[T], int]:
    """The first ``top`` rows (all when None) and how many were left out."""
    if top is None or len(rows) <= top:
        return rows, 0
    return rows[:top], len(rows) - top


def _framework_layer_table(
    inspection: SourceInspection, depth: int, top: int | None
) -> tuple[Table, int] | None:
    rows, hidden = _limited(list(inspection.framework_layers(depth)), top)
    if not rows:
        return None
    info = inspection.framework
    name = (
        inspection.summary.name
        if inspection.summary is not None
        else info.name
        if info is not None
        else "framework"
    )
    table = Table(
        title=f"Layers by {_display(name)} (its names, depth {depth}; counts include sub-layers)",
        title_justify="left",
    )
    table.add_column("layer")
    table.add_column("type")
    has_shapes = any(r.output_shape for r in rows)
    if has_shapes:
        table.add_column("output shape")
    table.add_column("parameters", justify="right")
    table.add_column("trainable", justify="right")
    has_frozen = any(r.frozen for r in rows)
    has_other = any(r.non_trainable - r.frozen for r in rows)
    if has_frozen:
        table.add_column("frozen", justify="right")
    if has_other:
        table.add_column("non-trainable, not frozen", justify="right")
    has_buffers = any(r.buffers for r in rows)
    if has_buffers:
        table.add_column("buffers", justify="right")
    for r in rows:
        label = "(own tensors of the model)" if r.depth == 0 else r.name.split(".")[-1]
        cells = ["  " * max(r.depth - 1, 0) + (label if r.depth > 1 else r.name or label), r.type]
        if has_shapes:
            cells.append(r.output_shape or "-")
        cells += [f"{r.parameters:,}", f"{r.trainable:,}"]
        if has_frozen:
            cells.append(f"{r.frozen:,}")
        if has_other:
            cells.append(f"{r.non_trainable - r.frozen:,}")
        if has_buffers:
            cells.append(f"{r.buffers:,}")
        table.add_row(*cells)
    return table, hidden


def _reconciliation_table(reconciliation: Reconciliation, top: int | None) -> tuple[Table, int]:
    table = Table(
        title=(
            f"Reconciliation: framework {reconciliation.framework_total:,} -> "
            f"graph {reconciliation.graph_total:,} parameters"
        ),
        title_justify="left",
    )
    table.add_column("cause")
    table.add_column("tensors", justify="right")
    table.add_column("elements", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("effect on count", justify="right")
    table.add_column("examples")
    entries, hidden = _limited(list(reconciliation.entries), top)
    for e in entries:
        examples = ", ".join(e.tensors[:3]) + (" ..." if len(e.tensors) > 3 else "")
        table.add_row(
            e.cause.value,
            str(len(e.tensors)),
            f"{e.elements:,}",
            format_bytes(e.nbytes),
            f"{e.delta_elements:+,}",
            examples,
        )
    return table, hidden


def _more(console: Console, hidden: int) -> None:
    if hidden:
        console.print(Text(f"... {hidden} more rows (--top)", style="dim"))


def _markdown_framework(inspection: SourceInspection, depth: int, top: int | None) -> str:
    totals = inspection.totals
    if totals is None:
        return ""
    summary, info = inspection.summary, inspection.framework
    name = summary.name if summary is not None else info.name if info is not None else "?"
    version = summary.version if summary is not None else info.version if info is not None else ""
    defs = _definitions(name)
    value, why = _graph_line(inspection)
    lines = [
        f"## Framework: {_display(name)} {version} (counted by {_display(name)})",
        "",
        "| figure | value | definition |",
        "|---|---:|---|",
        f"| parameters | {totals.total:,} | {defs[0]} |",
        f"| trainable | {totals.trainable:,} | {defs[1]} |",
        f"| non-trainable | {totals.non_trainable:,} | {defs[2]} |",
        f"| buffers | {totals.buffers:,} | {defs[3]} |",
        f"| graph parameters | {value} | {why} |",
    ]
    rows, hidden = _limited(list(inspection.framework_layers(depth)), top)
    if rows:
        lines += [
            "",
            f"| layer (framework, depth {depth}) | type | output shape | parameters | trainable "
            "| frozen | buffers |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.name or '(model)'} | {r.type} | {r.output_shape or '-'} | {r.parameters:,} "
            f"| {r.trainable:,} | {r.frozen:,} | {r.buffers:,} |"
            for r in rows
        ]
        if hidden:
            lines.append(f"| ... {hidden} more rows | | | | | | |")
    return "\n".join(lines) + "\n\n"


def _markdown_reconciliation(reconciliation: Reconciliation | None, top: int | None) -> str:
    if reconciliation is None:
        return ""
    lines = [
        "",
        f"### Reconciliation: framework {reconciliation.framework_total:,} -> graph "
        f"{reconciliation.graph_total:,} parameters",
        "",
    ]
    entries, hidden = _limited(list(reconciliation.entries), top)
    if not entries:
        return "\n".join([*lines, "Equal: nothing differs."]) + "\n"
    lines += [
        "| cause | tensors | elements | bytes | effect on count |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {e.cause.value} | {len(e.tensors)} | {e.elements:,} | {e.nbytes:,} "
        f"| {e.delta_elements:+,} |"
        for e in entries
    ]
    if hidden:
        lines.append(f"| ... {hidden} more rows | | | | |")
    return "\n".join(lines) + "\n"


def _csv_framework_layers(inspection: SourceInspection, depth: int, top: int | None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["layer", "type", "depth", "output_shape", "parameters", "trainable", "frozen", "buffers"]
    )
    rows, _ = _limited(list(inspection.framework_layers(depth)), top)
    for r in rows:
        writer.writerow(
            [
                r.name,
                r.type,
                r.depth,
                r.output_shape,
                r.parameters,
                r.trainable,
                r.frozen,
                r.buffers,
            ]
        )
    return buf.getvalue()


def render_source_inspection(
    inspection: SourceInspection,
    fmt: OutputFormat,
    *,
    by: Breakdown = Breakdown.LAYER,
    depth: int = 2,
    top: int | None = None,
    console: Console | None = None,
) -> str | None:
    """Render ``inspect`` for any source: for framework sources the framework's own figures
    first (counted by the framework), its per-layer table, then the graph's report and the
    reconciliation. ``top`` limits the rows of every table. The export failure, if any, is not
    printed here (the command writes it as one warning line on stderr)."""
    if fmt == OutputFormat.JSON:
        return to_json(inspection_to_dict(inspection, depth=depth))
    report, rec = inspection.report, inspection.reconciliation
    if fmt == OutputFormat.CSV:
        if report is None:
            return _csv_framework_layers(inspection, depth, top)
        return render_inspect(report, fmt, by=by, depth=depth, top=top)
    if fmt == OutputFormat.MARKDOWN:
        graph = render_inspect(report, fmt, by=by, depth=depth, top=top) if report else ""
        return (
            _markdown_framework(inspection, depth, top)
            + (graph or "")
            + _markdown_reconciliation(rec, top)
        )
    assert console is not None
    headline = _headline(inspection)
    if headline is not None:
        console.print(headline)
        layers = _framework_layer_table(inspection, depth, top)
        if layers is not None:
            console.print(layers[0])
            _more(console, layers[1])
        if report is not None:
            console.print(Rule("Graph (the exported ONNX file, counted by modelsize)"))
    if report is not None:
        render_inspect(report, fmt, by=by, depth=depth, top=top, console=console)
    if inspection.compute is not None:
        compute = inspection.compute
        shapes = ", ".join(
            f"{s.name}={'x'.join(str(d) for d in (s.dims or ()))}" for s in compute.inputs
        )
        console.print(
            Text(
                f"Compute (counted at {shapes}): {compute.macs:,} MACs, {compute.flops:,} FLOPs"
                + (f", {compute.integer_macs:,} integer MACs" if compute.integer_macs else "")
                + " (modelsize profile: per layer, and the time measured)"
            )
        )
    if rec is not None and rec.entries:
        table, hidden = _reconciliation_table(rec, top)
        console.print(table)
        _more(console, hidden)
    elif rec is not None:
        console.print(Text("Reconciliation: graph and framework counts are equal", style="green"))
    if inspection.framework is not None and inspection.framework.fallback_reason:
        console.print(Text(f"fallback: {inspection.framework.fallback_reason}", style="yellow"))
    for note in inspection.notes:
        console.print(Text(f"note: {note}", style="dim"))
    return None


def render_conversion(result: ConversionResult, fmt: ConvertFormat, console: Console) -> str | None:
    """Render ``convert``'s result: JSON text, or a few lines on ``console``."""
    if fmt == ConvertFormat.JSON:
        return to_json(conversion_to_dict(result))
    fw = result.framework
    console.print(
        Text.assemble(
            ("wrote ", "bold"),
            str(result.onnx_path),
            f" with {result.exporter}; {fw.name} {fw.version} counts {fw.total:,} parameters "
            f"({fw.trainable:,} trainable, {fw.non_trainable:,} frozen), buffers {fw.buffers:,}",
        )
    )
    inputs = ", ".join(
        f"{i.name} {tuple(i.dims)} {i.dtype}" + (f" dynamic {dict(i.dynamic)}" if i.dynamic else "")
        for i in result.inputs
    )
    console.print(f"inputs: {inputs}")
    if result.fallback_reason:
        console.print(Text(f"fallback: {result.fallback_reason}", style="yellow"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="dim"))
    return None
