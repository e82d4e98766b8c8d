"""Rendering of ``fit``, ``check`` and ``scan``: a line per answer for people, JSON/JSONL for machines."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.render import OutputFormat, format_bytes, to_json
from graph_analysis.deploy import CheckResult, FitResult, LimitResult, ScanRow, scan_row_to_dict

__all__ = [
    "ScanFormat",
    "check_to_dict",
    "fit_to_dict",
    "render_check",
    "render_fit",
    "render_scan",
    "scan_progress",
]


class ScanFormat(str, Enum):
    """How ``scan`` prints: ``jsonl`` streams one object per file."""

    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    MARKDOWN = "markdown"


def fit_to_dict(result: FitResult) -> dict[str, Any]:
    """``fit -f json``: ``budget``, ``vary``, ``candidates[]`` (keys in docs/deployment.md)."""
    return {
        "model": result.path,
        "budget": {
            "memory_bytes": result.memory_budget_bytes,
            "disk_bytes": result.disk_budget_bytes,
            "train": result.train,
        },
        "vary": result.vary,
        "start": result.start,
        "monotonic": result.monotonic,
        "kv_cache_per_token_bytes": result.kv_cache_per_token_bytes,
        "candidates": [
            {
                "precision": c.precision.value,
                "value": c.value,
                "estimated_peak_bytes": c.estimated_peak_bytes,
                "disk_bytes": c.disk_bytes,
                "disk_kind": c.disk_kind,
                "fits": c.fits,
                "reason": c.reason,
                "headroom_bytes": c.headroom_bytes,
                "kv_cache_bytes": c.kv_cache_bytes,
                "measured_peak_bytes": c.measured_peak_bytes,
                "latency_s": c.latency_s,
                "notes": list(c.notes),
            }
            for c in result.candidates
        ],
        "evaluated": [{"value": v, "estimated_peak_bytes": b} for v, b in result.evaluated],
        "notes": list(result.notes),
    }


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return ("-" + format_bytes(-value)) if value < 0 else format_bytes(value)


def render_fit(result: FitResult, output: OutputFormat, console: Console) -> None:
    """Print ``result`` on stdout."""
    if output is OutputFormat.JSON:
        sys.stdout.write(to_json(fit_to_dict(result)))
        return
    headers = [
        "precision",
        f"largest {result.vary}",
        "estimated peak",
        "headroom",
        "disk",
        "fits",
        "why not / notes",
    ]
    rows = []
    for c in result.candidates:
        extra = [c.reason] if c.reason else []
        if c.measured_peak_bytes is not None:
            extra.append(f"measured {_size(c.measured_peak_bytes)}")
        if c.latency_s is not None:
            extra.append(f"latency {c.latency_s * 1e3:.1f} ms (measured)")
        if c.kv_cache_bytes:
            extra.append(f"KV cache {_size(c.kv_cache_bytes)}")
        rows.append(
            [
                c.precision.value,
                str(c.value) if c.value is not None else "none",
                _size(c.estimated_peak_bytes),
                _size(c.headroom_bytes),
                f"{_size(c.disk_bytes)} ({c.disk_kind})",
                "yes" if c.fits else "no",
                "; ".join(extra),
            ]
        )
    if output is OutputFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
        return
    if output is OutputFormat.MARKDOWN:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    console.print(
        f"[bold]{result.path}[/bold]: largest {result.vary} within "
        f"{_size(result.memory_budget_bytes)} of memory"
        + (f" and {_size(result.disk_budget_bytes)} of disk" if result.disk_budget_bytes else "")
        + f" ({'training step' if result.train else 'inference'}, estimated; start {result.start})",
        highlight=False,
    )
    if result.kv_cache_per_token_bytes:
        console.print(
            f"KV cache: {_size(result.kv_cache_per_token_bytes)} per token of context (from the "
            "graph's past_key_values shapes)",
            highlight=False,
        )
    table = Table(title_justify="left")
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index in (0, 5, 6) else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)


def _limit_value(r: LimitResult, value: float) -> str:
    if r.unit == "bytes":
        return _size(int(value))
    if r.unit == "fraction":
        return f"{value:.1%}"
    return f"{value:,.0f}"


def check_to_dict(result: CheckResult) -> dict[str, Any]:
    """``check -f json``: ``ok`` and ``limits[]`` with ``name``, ``value``, ``limit``, ``ok``."""
    return {
        "model": result.path,
        "baseline": result.baseline,
        "ok": result.ok,
        "limits": [
            {
                "name": r.name,
                "value": r.value,
                "limit": r.limit,
                "ok": r.ok,
                "kind": r.kind,
                "unit": r.unit,
                "detail": r.detail,
            }
            for r in result.limits
        ],
    }


def render_check(result: CheckResult, output: OutputFormat, console: Console) -> None:
    """One line per limit: name, value (and how obtained), limit, PASS/FAIL."""
    if output is OutputFormat.JSON:
        sys.stdout.write(to_json(check_to_dict(result)))
        return
    for r in result.limits:
        comparison = ">=" if r.name.startswith("min_") else "<="
        line = (
            f"{'PASS' if r.ok else 'FAIL'}  {r.name}: {_limit_value(r, r.value)} ({r.kind}) "
            f"{comparison} {_limit_value(r, r.limit)}"
        )
        if r.detail:
            line += f"  [{r.detail}]"
        console.print(line, highlight=False)
    verdict = (
        "all limits hold" if result.ok else f"{sum(not r.ok for r in result.limits)} limit(s) fail"
    )
    console.print(f"{result.path}: {verdict}", highlight=False)


_SCAN_HEADERS = [
    "path",
    "ok",
    "parameters",
    "disk",
    "external",
    "duplicates",
    "est. inference peak",
    "error / warnings",
]


def _scan_cells(row: ScanRow) -> list[str]:
    if not row.ok:
        return [row.path, "no", "", "", "", "", "", row.error or ""]
    s = row.summary
    peak = s.get("estimated_inference_peak_bytes")
    return [
        row.path,
        "yes",
        f"{s['parameters']['total']:,}",
        _size(s["size"]["on_disk_bytes"]),
        "yes" if s["external_data"] else "",
        str(s["duplicates"] or ""),
        _size(peak) if peak is not None else "",
        "; ".join(s["warnings"]),
    ]


def render_scan(rows: Iterable[ScanRow], output: ScanFormat, console: Console) -> Iterator[str]:
    """Yield the scan's text chunk by chunk (JSONL and CSV stream a line per file)."""
    if output is ScanFormat.JSONL:
        for row in rows:
            yield json.dumps(scan_row_to_dict(row)) + "\n"
        return
    collected = list(rows)
    if output is ScanFormat.JSON:
        yield to_json([scan_row_to_dict(r) for r in collected])
        return
    cells = [_scan_cells(r) for r in collected]
    if output is ScanFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_SCAN_HEADERS)
        writer.writerows(cells)
        yield buffer.getvalue()
        return
    if output is ScanFormat.MARKDOWN:
        lines = ["| " + " | ".join(_SCAN_HEADERS) + " |", "|" + "---|" * len(_SCAN_HEADERS)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
        yield "\n".join(lines) + "\n"
        return
    table = Table(title_justify="left")
    for index, header in enumerate(_SCAN_HEADERS):
        table.add_column(header, justify="left" if index in (0, 1, 4, 7) else "right")
    for r in cells:
        table.add_row(*r)
    failed = sum(1 for r in collected if not r.ok)
    with console.capture() as capture:
        console.print(table)
        console.print(f"{len(collected)} file(s), {failed} failed", highlight=False)
    yield capture.get()


def scan_progress() -> Callable[[int, int, ScanRow], None] | None:
    """A progress line on stderr (files done / total) when stderr is a terminal; else None."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, row: ScanRow) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\rscanned {done}/{total}: {Path(row.path).name[:60]:<60}{end}")
        sys.stderr.flush()

    return show
