"""Rendering of reports for people and machines: rich tables, JSON, CSV and Markdown."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from graph_analysis.report import GroupRow, ModelReport, report_to_dict

__all__ = [
    "Breakdown",
    "OutputFormat",
    "format_bytes",
    "print_warnings",
    "render_inspect",
    "to_json",
]


class OutputFormat(str, Enum):
    """How a command prints its result."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    HTML = "html"  # inspect, memory, compare, profile, fit: one self-contained file (-o)


class Breakdown(str, Enum):
    """Which breakdown ``inspect`` shows."""

    LAYER = "layer"
    OP = "op"
    DTYPE = "dtype"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(value: int) -> str:
    """Binary-prefixed size: ``1.50 MiB``; plain bytes below 1 KiB."""
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{value} B" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def print_warnings(warnings: Iterable[str]) -> None:
    """Each warning as one ``modelsize: warning: ...`` line on stderr, whatever the format.

    Warnings never go to stdout, where they would corrupt JSON/CSV and mix with the figures; the
    JSON formats also carry them in their ``warnings`` list.
    """
    for warning in warnings:
        sys.stderr.write(f"modelsize: warning: {' '.join(warning.split())}\n")
    sys.stderr.flush()


def to_json(data: Any) -> str:
    """Stable, indented JSON."""
    return json.dumps(data, indent=2, sort_keys=False)


_TABLE_ROW_LIMIT = 1000
"""Rows of a breakdown table printed when ``--top`` is not given (csv, json, markdown list all)."""

BreakdownRow = tuple[str, int, int, int, int | None]  # key, parameters, bytes, tensors, frozen


def _breakdown_rows(
    report: ModelReport, by: Breakdown, depth: int, top: int | None
) -> tuple[str, list[BreakdownRow]]:
    """(key column title, rows of (key, parameters, bytes, tensors, frozen or None))."""
    rows: list[BreakdownRow]
    if by == Breakdown.DTYPE:
        rows = [
            (r.data_type, r.num_elements, r.nbytes, r.tensors, None)
            for r in report.parameters.by_dtype
        ]
        title = "data type"
    elif by == Breakdown.OP:
        rows = [
            (r.key, r.num_parameters, r.nbytes, r.tensors, r.frozen_parameters)
            for r in report.by_op
        ]
        title = "read by op"
    else:
        chosen: Sequence[GroupRow] = [r for r in report.layers if r.depth <= depth]
        rows = [
            (
                "  " * (r.depth - 1) + r.key.split(".")[-1] if r.depth > 1 else r.key,
                r.num_parameters,
                r.nbytes,
                r.tensors,
                r.frozen_parameters,
            )
            for r in chosen
        ]
        title = f"layer (depth {depth})"
    if top is not None:
        rows = rows[:top]
    return title, rows


def heaviest_layers(report: ModelReport, depth: int, top: int) -> list[GroupRow]:
    """The ``top`` heaviest layers at ``depth`` (or shallower, where a branch ends earlier)."""
    # Keys with a row below them, every ancestor of every key: one pass, not one scan per row.
    parents = {k[:i] for k in (r.key for r in report.layers) for i, c in enumerate(k) if c == "."}
    candidates = [
        r for r in report.layers if r.depth == depth or (r.depth < depth and r.key not in parents)
    ]
    return sorted(candidates, key=lambda r: -r.num_parameters)[:top]


def render_inspect(
    report: ModelReport,
    fmt: OutputFormat,
    *,
    by: Breakdown = Breakdown.LAYER,
    depth: int = 2,
    top: int | None = None,
    console: Console | None = None,
) -> str | None:
    """Render an inspect report. Returns text for json/csv/markdown; prints tables to ``console``."""
    if fmt == OutputFormat.JSON:
        return to_json(report_to_dict(report, depth=depth))
    title, rows = _breakdown_rows(report, by, depth, top)
    if fmt == OutputFormat.CSV:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        has_frozen = any(row[4] is not None for row in rows)
        writer.writerow(
            ["breakdown", "key", "parameters", "bytes", "tensors"]
            + (["frozen"] if has_frozen else [])
        )
        for key, params, size, tensors, frozen in rows:
            extra = [frozen] if has_frozen else []
            writer.writerow([by.value, key.strip(), params, size, tensors, *extra])
        return buf.getvalue()
    if fmt == OutputFormat.MARKDOWN:
        return _markdown(report, title, rows)
    assert console is not None
    console.print(_summary_table(report, depth, top or 5))
    table = Table(title=f"Parameters by {title}", title_justify="left")
    table.add_column(title)
    table.add_column("parameters", justify="right")
    table.add_column("share", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("tensors", justify="right")
    has_frozen = any(row[4] is not None for row in rows)
    if has_frozen:
        table.add_column("frozen", justify="right")
    total = max(1, report.parameters.total)
    # rich takes about a millisecond a row: a graph of a million layers would print for minutes.
    hidden = len(rows) - _TABLE_ROW_LIMIT if top is None and len(rows) > _TABLE_ROW_LIMIT else 0
    for key, params, size, tensors, frozen in rows[: len(rows) - hidden]:
        cells = [
            key,
            f"{params:,}",
            f"{100 * params / total:.1f}%",
            format_bytes(size),
            str(tensors),
        ]
        table.add_row(*cells, *([f"{frozen or 0:,}"] if has_frozen else []))
    console.print(table)
    if hidden:
        console.print(
            f"{hidden:,} more rows not shown: --top N shows N rows; --format csv or json lists all"
        )
    return None


def _summary_table(report: ModelReport, depth: int, top: int) -> Group:
    p, s = report.parameters, report.size
    producer = f"{report.producer_name} {report.producer_version}".strip() or "unknown producer"
    opset = report.opsets.get("", report.opsets.get("ai.onnx", 0))
    header = Text.assemble(
        (report.path, "bold"),
        f"  ONNX IR {report.ir_version}, opset {opset}, {producer}, ",
        f"{report.num_nodes:,} nodes, {report.num_subgraphs} subgraphs",
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_column(style="dim")
    table.add_row(
        "Parameters",
        f"{p.total:,}",
        f"counted: {p.learned:,} learned + {p.running_stats:,} running statistics, in {p.tensors} tensors",
    )
    table.add_row(
        "On disk",
        format_bytes(s.on_disk_bytes),
        f"file sizes: model {format_bytes(s.model_file_bytes)} + external data "
        f"{format_bytes(s.external_data_bytes)}",
    )
    dtypes = ", ".join(f"{r.data_type} {format_bytes(r.nbytes)}" for r in s.by_dtype) or "none"
    table.add_row(
        "Weights", format_bytes(s.weights_bytes), f"counted (elements x bit width): {dtypes}"
    )
    deep = "found by the deep scan" if report.deep_scanned else "--deep finds them"
    table.add_row(
        "Duplicates",
        format_bytes(s.duplicate_bytes),
        f"copies, counted once ({deep}); shared external ranges {format_bytes(s.aliased_bytes)}",
    )
    table.add_row(
        "Constants",
        format_bytes(s.constants_bytes),
        "shape/index tensors and scalars, not parameters",
    )
    for ps in s.by_precision:
        extra = f" incl. {format_bytes(ps.overhead_nbytes)} scales" if ps.overhead_nbytes else ""
        table.add_row(
            f"  at {ps.precision.value}", format_bytes(ps.nbytes), f"what-if estimate{extra}"
        )
    heavy = Table(title=f"Heaviest layers (depth {depth})", title_justify="left")
    heavy.add_column("layer")
    heavy.add_column("parameters", justify="right")
    heavy.add_column("bytes", justify="right")
    for row in heaviest_layers(report, depth, top):
        heavy.add_row(row.key, f"{row.num_parameters:,}", format_bytes(row.nbytes))
    return Group(header, table, heavy)


def _markdown(report: ModelReport, title: str, rows: list[BreakdownRow]) -> str:
    s = report.size
    lines = [
        f"## {report.path}",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| parameters | {report.parameters.total:,} |",
        f"| on disk | {format_bytes(s.on_disk_bytes)} ({s.on_disk_bytes:,} B) |",
        f"| weights | {format_bytes(s.weights_bytes)} ({s.weights_bytes:,} B) |",
        f"| duplicate storage | {format_bytes(s.duplicate_bytes)} |",
    ]
    lines += [
        f"| at {p.precision.value} (what-if) | {format_bytes(p.nbytes)} |" for p in s.by_precision
    ]
    lines += ["", f"| {title} | parameters | bytes | tensors |", "|---|---:|---:|---:|"]
    lines += [f"| {k.strip()} | {n:,} | {b:,} | {t} |" for k, n, b, t, _frozen in rows]
    return "\n".join(lines) + "\n"
