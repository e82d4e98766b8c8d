"""Rendering of counted compute and measured profiles: a summary read in seconds, then the tables."""

from __future__ import annotations

import csv
import io
import sys

from rich.console import Console
from rich.table import Table

from cli.render import OutputFormat, format_bytes, to_json
from converters.profile_source import SourceProfile
from graph_analysis.compute import ComputeReport, compute_to_dict
from graph_analysis.runtime.profile import ProfileReport, profile_to_dict

__all__ = ["format_count", "render_source_profile", "source_profile_to_dict"]

_TOP = 5


def format_count(value: float) -> str:
    """A count with a decimal SI prefix (k = 10^3, M = 10^6, G = 10^9, T = 10^12)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}"
    return f"{value:.0f}"


def _seconds(value: float) -> str:
    if abs(value) >= 1:
        return f"{value:.3f} s"
    if abs(value) >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} µs"


def source_profile_to_dict(result: SourceProfile, *, depth: int | None = None) -> dict[str, object]:
    """The JSON form: ``compute`` (counted) and, when profiled, ``measured``."""
    if result.profile is not None:
        data = profile_to_dict(result.profile, depth=depth)
    else:
        data = {"model": result.source, "compute": compute_to_dict(result.compute, depth=depth)}
    data["source"] = result.source
    return data


def _inputs_line(compute: ComputeReport) -> str:
    return ", ".join(f"{t.name}={'x'.join(str(d) for d in (t.dims or ()))}" for t in compute.inputs)


def _summary(compute: ComputeReport, profile: ProfileReport | None) -> list[str]:
    lines = [
        f"Inputs: {_inputs_line(compute)}",
        f"MACs (counted): {compute.macs:,} ({format_count(compute.macs)})   "
        f"FLOPs: {compute.flops:,} ({format_count(compute.flops)})   "
        f"training step: {format_count(compute.training_flops)}FLOPs",
    ]
    if compute.integer_macs:
        lines.append(f"Integer MACs (quantized ops): {compute.integer_macs:,}")
    if compute.arithmetic_intensity is not None:
        lines.append(
            f"Bytes moved: {format_count(compute.bytes_moved)}B; arithmetic intensity "
            f"{compute.arithmetic_intensity:.2f} FLOP/byte"
        )
    if profile is not None:
        lines.append(
            f"Latency (measured, median of {profile.runs} runs, {profile.threads} thread(s), "
            f"optimization {profile.optimization.value}): {_seconds(profile.latency_median_s)} "
            f"[{_seconds(profile.latency_min_s)} .. {_seconds(profile.latency_max_s)}]; kernels "
            f"{_seconds(profile.kernel_sum_s)}, runtime overhead {_seconds(profile.unattributed_s)}"
        )
        achieved = profile.achieved_gflops_per_s
        if achieved is not None:
            lines.append(f"Achieved: {achieved:.2f} GFLOP/s over the kernels' time")
        by_time = [r for r in profile.layers if len(r.path) == 1]
        top_time = sorted(by_time, key=lambda r: -r.time_s)[:_TOP]
        top_macs = sorted(by_time, key=lambda r: -r.macs)[:_TOP]
        lines.append(
            "Heaviest by time: "
            + ", ".join(f"{'/'.join(r.path)} {r.share:.0%}" for r in top_time if r.time_s > 0)
        )
        if compute.macs:
            lines.append(
                "Heaviest by MACs: "
                + ", ".join(
                    f"{'/'.join(r.path)} {r.macs / compute.macs:.0%}" for r in top_macs if r.macs
                )
            )
        if [r.path for r in top_time[:3]] != [r.path for r in top_macs[:3]]:
            lines.append("  (time and MACs rank the layers differently: time is what to optimize)")
        if profile.slow_layers:
            lines.append(
                "Far below the model's GFLOP/s: "
                + ", ".join("/".join(p) for p in profile.slow_layers)
            )
    if compute.unknown_ops:
        lines.append(f"Ops without a rule (counted as 0): {', '.join(compute.unknown_ops)}")
    if compute.unresolved:
        lines.append(
            f"{len(compute.unresolved)} node(s) with unknown shapes counted as 0 "
            "(give --input-shape/--dim)"
        )
    return lines


def _layer_rows(result: SourceProfile, depth: int, top: int | None) -> list[list[str]]:
    rows: list[list[str]] = []
    if result.profile is not None:
        for row in result.profile.layers:
            if len(row.path) > depth:
                continue
            rate = row.gflops_per_s
            rows.append(
                [
                    "  " * (len(row.path) - 1) + row.path[-1],
                    f"{row.time_s * 1e3:.3f}",
                    f"{row.share:.1%}",
                    f"{row.macs:,}",
                    f"{row.flops:,}",
                    f"{rate:.2f}" if rate is not None else "",
                    format_bytes(row.live_bytes) if row.live_bytes is not None else "",
                ]
            )
    else:
        for crow in result.compute.layers:
            if not crow.path or len(crow.path) > depth:
                continue
            rows.append(
                [
                    "  " * (len(crow.path) - 1) + crow.path[-1],
                    "",
                    "",
                    f"{crow.macs:,}",
                    f"{crow.flops:,}",
                    "",
                    "",
                ]
            )
    return rows[:top] if top else rows


_HEADERS = ["layer", "time (ms)", "share", "MACs", "FLOPs", "GFLOP/s", "live act. (est.)"]


def render_source_profile(
    result: SourceProfile,
    output: OutputFormat,
    console: Console,
    *,
    depth: int = 2,
    top: int | None = None,
) -> None:
    """Print ``result`` in the chosen format on stdout."""
    if output is OutputFormat.JSON:
        sys.stdout.write(to_json(source_profile_to_dict(result, depth=depth)))
        return
    rows = _layer_rows(result, depth, top)
    if output is OutputFormat.CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_HEADERS)
        writer.writerows([[cell.strip().replace(",", "") for cell in row] for row in rows])
        sys.stdout.write(buffer.getvalue())
        return
    if output is OutputFormat.MARKDOWN:
        lines = [f"# Compute of {result.source}", ""]
        lines += [f"- {line}" for line in _summary(result.compute, result.profile)]
        lines += ["", "| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
        lines += ["| " + " | ".join(cell.strip() for cell in row) + " |" for row in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    console.print(f"[bold]{result.source}[/bold]")
    for line in _summary(result.compute, result.profile):
        console.print(line, highlight=False)
    table = Table(title=f"By layer (depth {depth})", title_justify="left")
    for index, header in enumerate(_HEADERS):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    ops = Table(title="By op type", title_justify="left")
    for header in ("op", "nodes", "time (ms)", "share", "MACs", "FLOPs"):
        ops.add_column(header, justify="left" if header == "op" else "right")
    if result.profile is not None:
        for o in result.profile.by_op[:top] if top else result.profile.by_op:
            ops.add_row(
                o.op_type, str(o.kernels), f"{o.time_s * 1e3:.3f}", f"{o.share:.1%}",
                f"{o.macs:,}", f"{o.flops:,}",
            )  # fmt: skip
    else:
        for c in result.compute.by_op[:top] if top else result.compute.by_op:
            ops.add_row(c.op_type, str(c.nodes), "", "", f"{c.macs:,}", f"{c.flops:,}")
    console.print(ops)
