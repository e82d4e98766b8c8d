"""Rendering for framework sources: the conversion summary, framework counts and reconciliation."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.render import Breakdown, OutputFormat, format_bytes, render_inspect, to_json
from converters.sources import (
    ConversionResult,
    SourceInspection,
    conversion_to_dict,
    inspection_to_dict,
)
from graph_analysis.framework import FrameworkInfo, Reconciliation, trainable_by_layer

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


def _reconciliation_table(reconciliation: Reconciliation) -> Table:
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
    for e in reconciliation.entries:
        examples = ", ".join(e.tensors[:3]) + (" ..." if len(e.tensors) > 3 else "")
        table.add_row(
            e.cause.value,
            str(len(e.tensors)),
            f"{e.elements:,}",
            format_bytes(e.nbytes),
            f"{e.delta_elements:+,}",
            examples,
        )
    return table


def _frozen_table(info: FrameworkInfo, depth: int) -> Table | None:
    rows = trainable_by_layer(info, depth=depth)
    if not any(r.frozen for r in rows):
        return None
    table = Table(
        title=f"Frozen layers (framework, depth {depth})", title_justify="left", min_width=44
    )
    table.add_column("layer")
    table.add_column("trainable", justify="right")
    table.add_column("frozen", justify="right")
    for r in rows:
        table.add_row(r.layer, f"{r.trainable:,}", f"{r.frozen:,}")
    return table


def render_source_inspection(
    inspection: SourceInspection,
    fmt: OutputFormat,
    *,
    by: Breakdown = Breakdown.LAYER,
    depth: int = 2,
    top: int | None = None,
    console: Console | None = None,
) -> str | None:
    """Render ``inspect`` for any source: the report, then framework counts and reconciliation."""
    if fmt == OutputFormat.JSON:
        return to_json(inspection_to_dict(inspection, depth=depth))
    text = render_inspect(inspection.report, fmt, by=by, depth=depth, top=top, console=console)
    info, rec = inspection.framework, inspection.reconciliation
    if fmt != OutputFormat.TABLE or info is None:
        return text
    assert console is not None
    t = info.totals
    console.print(
        Text.assemble(
            ("Framework ", "bold"),
            f"{info.name} {info.version} (counted by the framework): {t.total:,} parameters, "
            f"{t.trainable:,} trainable, {t.non_trainable:,} frozen; buffers {t.buffers:,}; "
            f"exported by {info.exporter}",
        )
    )
    if info.fallback_reason:
        console.print(Text(f"fallback: {info.fallback_reason}", style="yellow"))
    frozen = _frozen_table(info, depth)
    if frozen is not None:
        console.print(frozen)
    for note in inspection.notes:
        console.print(Text(f"note: {note}", style="dim"))
    if rec is not None and rec.entries:
        console.print(_reconciliation_table(rec))
    elif rec is not None:
        console.print(Text("Reconciliation: graph and framework counts are equal", style="green"))
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
