"""Where the time goes: onnxruntime's profiler, run in a fresh child, mapped back to the graph.

Each profiled kernel is mapped to a node of the graph and so to its layer and its counted MACs
(:mod:`graph_analysis.compute`). onnxruntime fuses and renames nodes when it optimizes the graph: a
kernel named like a node is that node (``exact``); a kernel named after a node or an output tensor
plus a suffix the optimizer adds (``_nchwc``, ``_fused``...) is the fused node, reported under the
node it replaced whose op type it runs (``fused``); layout conversions the runtime inserts
(``ReorderInput``/``ReorderOutput``) are ``runtime`` work; anything else is ``unmapped`` and keeps its
own name. ``--optimization disabled`` profiles the exported graph as it is (every kernel exact), at the
cost of not being what a deployment runs.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import onnx

from graph_analysis._weights import reading_and_report
from graph_analysis.bindings import Bindings
from graph_analysis.compute import ComputeReport, NodeCompute, count_compute
from graph_analysis.params import _components
from graph_analysis.runtime._child_process import run_json_child
from graph_analysis.runtime._feeds import specs_to_json
from graph_analysis.runtime.measure import model_input_specs

__all__ = [
    "KernelTime",
    "LayerTime",
    "OpTime",
    "OptimizationLevel",
    "ProfileReport",
    "profile_model",
    "profile_to_dict",
]

#: Suffixes onnxruntime's optimizers append to the node or output name of a node they create.
_FUSION_SUFFIX = re.compile(r"(_nchwc|_fused.*|_token_\d+|_nhwc|/FusedMatMul|_Fused.*)$")
_RUNTIME_OPS = frozenset({"ReorderInput", "ReorderOutput", "MemcpyToHost", "MemcpyFromHost"})
#: A layer is "slow" when its achieved FLOP rate is under this fraction of the model's.
SLOW_FRACTION = 0.25
#: ... and takes at least this share of the latency (tiny layers are all overhead).
SLOW_MIN_SHARE = 0.05


class OptimizationLevel(str, Enum):
    """onnxruntime's graph optimization level for the profiled session."""

    ALL = "all"
    EXTENDED = "extended"
    BASIC = "basic"
    DISABLED = "disabled"


@dataclass(frozen=True)
class KernelTime:
    """One profiled kernel: median time over the timed runs, and the graph node it maps to."""

    name: str
    op_type: str
    time_s: float
    share: float
    node: str | None
    layer: tuple[str, ...]
    mapping: str  # exact | fused | runtime | unmapped
    macs: int
    flops: int


@dataclass(frozen=True)
class LayerTime:
    """One layer-tree row: time of the kernels mapped into it, and its counted compute."""

    path: tuple[str, ...]
    time_s: float
    share: float
    macs: int
    flops: int
    live_bytes: int | None

    @property
    def gflops_per_s(self) -> float | None:
        """Achieved GFLOP/s (None when no time was measured)."""
        return self.flops / self.time_s / 1e9 if self.time_s > 0 else None


@dataclass(frozen=True)
class OpTime:
    """Time and counted compute of one op type (kernels mapped by the op type they run)."""

    op_type: str
    kernels: int
    time_s: float
    share: float
    macs: int
    flops: int


@dataclass(frozen=True)
class ProfileReport:
    """A profiled model.

    Attributes:
        path: the model.
        compute: the counted compute at the same shapes.
        optimization: onnxruntime's graph optimization level used.
        threads: intra-op threads.
        runs: timed runs (after ``warmup`` untimed ones).
        latency_median_s, latency_min_s, latency_max_s: end-to-end ``session.run`` wall time.
        kernels: every kernel, heaviest first.
        layers: time per layer-tree row (depth-limited), in tree order.
        by_op: time per op type, heaviest first.
        kernel_sum_s: the kernels' median times added up.
        unattributed_s: ``latency_median_s - kernel_sum_s``: runtime overhead outside kernels.
        slow_layers: layers whose achieved GFLOP/s is under ``SLOW_FRACTION`` of the model's.
        onnxruntime_version: the runtime measured.
    """

    path: Path
    compute: ComputeReport
    optimization: OptimizationLevel
    threads: int
    runs: int
    warmup: int
    latency_median_s: float
    latency_min_s: float
    latency_max_s: float
    kernels: tuple[KernelTime, ...]
    layers: tuple[LayerTime, ...]
    by_op: tuple[OpTime, ...]
    kernel_sum_s: float
    unattributed_s: float
    slow_layers: tuple[tuple[str, ...], ...]
    onnxruntime_version: str

    @property
    def achieved_gflops_per_s(self) -> float | None:
        """The model's counted FLOPs over the kernels' total time."""
        return self.compute.flops / self.kernel_sum_s / 1e9 if self.kernel_sum_s > 0 else None


def _median_kernels(runs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Per (kernel name, op type): the median over runs of its total time in the run."""
    per_run: list[dict[tuple[str, str], float]] = []
    for run in runs:
        totals: dict[tuple[str, str], float] = {}
        for k in run["kernels"]:
            key = (str(k["name"]), str(k["op_type"]))
            totals[key] = totals.get(key, 0.0) + float(k["time_s"])
        per_run.append(totals)
    keys = {key for totals in per_run for key in totals}
    return {key: statistics.median(t.get(key, 0.0) for t in per_run) for key in keys}


class _Mapper:
    """Maps kernel names to the graph's counted nodes."""

    def __init__(self, nodes: Sequence[NodeCompute], edges: _Edges) -> None:
        self.by_name = {n.name: n for n in nodes}
        self.edges = edges

    def map(self, name: str, op_type: str) -> tuple[NodeCompute | None, str]:
        if op_type in _RUNTIME_OPS:
            return None, "runtime"
        node = self.by_name.get(name)
        if node is not None:
            return node, "exact"
        base = _FUSION_SUFFIX.sub("", name)
        label = base if base in self.by_name else self.edges.producer.get(base)
        if label is None:
            return None, "unmapped"
        # A fused kernel is named after the last node it replaced (Conv+Relu after the Relu's
        # output): walk up the chain to the node whose op it runs, so its MACs and layer come along.
        wanted = _BASE_OP.get(op_type, op_type)
        cursor: str | None = label
        for _ in range(_FUSION_DEPTH):
            if cursor is None or cursor not in self.by_name:
                break
            if self.by_name[cursor].op_type == wanted:
                return self.by_name[cursor], "fused"
            cursor = self.edges.first_input_producer.get(cursor)
        found = self.by_name.get(label)
        return (found, "fused") if found is not None else (None, "unmapped")


_BASE_OP = {"FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "NhwcConv": "Conv"}
_FUSION_DEPTH = 4


@dataclass(frozen=True)
class _Edges:
    producer: Mapping[str, str]  # output tensor -> node label
    first_input_producer: Mapping[str, str]  # node label -> label of its first input's producer


def _edges(skeleton: Any) -> _Edges:
    from graph_analysis.shapes import iter_graphs, node_label

    producer: dict[str, str] = {}
    first_input: dict[str, str] = {}
    for _path, graph in iter_graphs(skeleton.graph):
        for index, node in enumerate(graph.node):
            label = node_label(node, index)
            for name in node.output:
                producer[name] = label
            if node.input and node.input[0]:
                first_input[label] = node.input[0]
    return _Edges(
        producer,
        {label: producer[name] for label, name in first_input.items() if name in producer},
    )


def profile_model(
    path: str | Path,
    bindings: Bindings | None = None,
    *,
    runs: int = 10,
    warmup: int = 2,
    threads: int = 1,
    optimization: OptimizationLevel = OptimizationLevel.ALL,
    default_dim: int | None = 1,
    layer_depth: int = 3,
    timeout_s: float = 600.0,
) -> ProfileReport:
    """Profile ``path`` in onnxruntime (CPU) in a fresh child and map the time to layers and ops.

    Args:
        path: the ONNX model.
        bindings: input bindings (as for ``memory``).
        runs: timed runs, after ``warmup`` runs that are excluded.
        warmup: untimed runs first (the first run allocates and tunes).
        threads: intra-op threads (1 keeps the timing stable on shared machines).
        optimization: onnxruntime's graph optimization level.
        default_dim: value for dims nobody bound.
        layer_depth: deepest layer-tree level in ``layers``.
        timeout_s: the child is killed after this many seconds.

    Raises:
        InputError: bad model or bindings. MeasurementError: the child failed.
        ValueError: ``runs`` or ``threads`` below 1, ``warmup`` below 0.
    """
    if runs < 1 or threads < 1 or warmup < 0:
        raise ValueError("runs and threads must be at least 1, warmup at least 0")
    path = Path(path)
    reading, report = reading_and_report(path)  # one reading: counts, edges and the estimate
    compute = count_compute(
        path, bindings, default_dim=default_dim, layer_depth=layer_depth, reading=(reading, report)
    )
    parsed = reading.skeleton if isinstance(reading.skeleton, onnx.ModelProto) else None
    specs = model_input_specs(path, bindings, default_dim=default_dim, skeleton=parsed)
    result = run_json_child(
        "graph_analysis.runtime._profile_child",
        {
            "path": str(path.resolve()),
            "inputs": specs_to_json(specs),
            "runs": runs,
            "warmup": warmup,
            "threads": threads,
            "optimization": optimization.value,
        },
        path=path,
        label="onnxruntime profiling child",
        timeout_s=timeout_s,
    )
    timed = result["runs"]
    latencies = [float(r.get("wall_s", r["model_run_s"])) for r in timed] or [0.0]
    latency = statistics.median(latencies)
    medians = _median_kernels(timed)
    kernel_sum = sum(medians.values())
    mapper = _Mapper(compute.nodes, _edges(reading.skeleton))
    kernels: list[KernelTime] = []
    for (name, op_type), seconds in medians.items():
        node, how = mapper.map(name, op_type)
        if node is not None:
            layer = node.layer
        elif how == "runtime":
            layer = ("(runtime layout conversions)",)
        else:
            parts = _components(name)
            layer = tuple(parts[:-1]) if len(parts) > 1 else ("(unmapped kernels)",)
        kernels.append(
            KernelTime(
                name=name,
                op_type=op_type,
                time_s=seconds,
                share=seconds / latency if latency else 0.0,
                node=node.name if node else None,
                layer=layer,
                mapping=how,
                macs=node.macs if node else 0,
                flops=node.flops if node else 0,
            )
        )
    kernels.sort(key=lambda k: (-k.time_s, k.name))
    from graph_analysis.runtime.optimized import executed_estimator

    estimate = executed_estimator(path, reading=reading)(bindings, default_dim=default_dim)
    inference = estimate.inference
    live = dict(zip(inference.timeline_nodes, inference.timeline, strict=False))
    layers = _layer_times(kernels, compute, latency, layer_depth, live)
    by_op = _op_times(kernels, compute, latency)
    achieved = compute.flops / kernel_sum if kernel_sum else 0.0
    slow = tuple(
        row.path
        for row in layers
        if row.path
        and row.time_s >= SLOW_MIN_SHARE * latency
        and row.flops > 0
        and row.flops / row.time_s < SLOW_FRACTION * achieved
    )
    return ProfileReport(
        path=path,
        compute=compute,
        optimization=optimization,
        threads=threads,
        runs=len(timed),
        warmup=warmup,
        latency_median_s=latency,
        latency_min_s=min(latencies),
        latency_max_s=max(latencies),
        kernels=tuple(kernels),
        layers=layers,
        by_op=by_op,
        kernel_sum_s=kernel_sum,
        unattributed_s=latency - kernel_sum,
        slow_layers=slow,
        onnxruntime_version=str(result.get("onnxruntime_version", "")),
    )


def _layer_times(
    kernels: Sequence[KernelTime],
    compute: ComputeReport,
    latency: float,
    depth: int,
    live: Mapping[str, int],
) -> tuple[LayerTime, ...]:
    times: dict[tuple[str, ...], float] = {}
    for k in kernels:
        path = k.layer[:depth]
        for i in range(1, len(path) + 1):
            times[path[:i]] = times.get(path[:i], 0.0) + k.time_s
    counted = {row.path: row for row in compute.layers if len(row.path) <= depth}
    # The most activation bytes live while any node of the layer runs (the memory estimate's
    # liveness, main graph).
    live_by_layer: dict[tuple[str, ...], int] = {}
    for node in compute.nodes:
        if node.name in live:
            path = node.layer[:depth]
            for i in range(1, len(path) + 1):
                live_by_layer[path[:i]] = max(live_by_layer.get(path[:i], 0), live[node.name])
    paths = sorted(set(times) | set(counted))
    return tuple(
        LayerTime(
            path=p,
            time_s=times.get(p, 0.0),
            share=times.get(p, 0.0) / latency if latency else 0.0,
            macs=counted[p].macs if p in counted else 0,
            flops=counted[p].flops if p in counted else 0,
            live_bytes=live_by_layer.get(p),
        )
        for p in paths
        if p
    )


def _op_times(
    kernels: Sequence[KernelTime], compute: ComputeReport, latency: float
) -> tuple[OpTime, ...]:
    rows: dict[str, list[float]] = {}
    for k in kernels:
        row = rows.setdefault(k.op_type, [0, 0.0])
        row[0] += 1
        row[1] += k.time_s
    counted = {o.op_type: o for o in compute.by_op}
    ops = [
        OpTime(
            op_type=op,
            kernels=int(values[0]),
            time_s=values[1],
            share=values[1] / latency if latency else 0.0,
            macs=counted[op].macs if op in counted else 0,
            flops=counted[op].flops if op in counted else 0,
        )
        for op, values in rows.items()
    ]
    return tuple(sorted(ops, key=lambda o: (-o.time_s, o.op_type)))


def profile_to_dict(report: ProfileReport, *, depth: int | None = None) -> dict[str, object]:
    """The JSON form of ``profile -f json`` (keys documented in docs/compute.md)."""
    from graph_analysis.compute import compute_to_dict

    return {
        "model": str(report.path),
        "compute": compute_to_dict(report.compute, depth=depth),
        "measured": {
            "kind": "measured",
            "onnxruntime_version": report.onnxruntime_version,
            "optimization": report.optimization.value,
            "threads": report.threads,
            "runs": report.runs,
            "warmup": report.warmup,
            "latency_median_s": report.latency_median_s,
            "latency_min_s": report.latency_min_s,
            "latency_max_s": report.latency_max_s,
            "kernel_sum_s": report.kernel_sum_s,
            "unattributed_s": report.unattributed_s,
            "achieved_gflops_per_s": report.achieved_gflops_per_s,
            "nodes": [
                {
                    "name": k.name,
                    "op_type": k.op_type,
                    "node": k.node,
                    "layer": "/".join(k.layer),
                    "mapping": k.mapping,
                    "time_s": k.time_s,
                    "share": k.share,
                    "macs": k.macs,
                    "flops": k.flops,
                }
                for k in report.kernels
            ],
            "layers": [
                {
                    "path": "/".join(row.path),
                    "depth": len(row.path),
                    "time_s": row.time_s,
                    "share": row.share,
                    "macs": row.macs,
                    "flops": row.flops,
                    "gflops_per_s": row.gflops_per_s,
                    "live_bytes": row.live_bytes,
                }
                for row in report.layers
                if depth is None or len(row.path) <= depth
            ],
            "by_op": [
                {
                    "op_type": o.op_type,
                    "kernels": o.kernels,
                    "time_s": o.time_s,
                    "share": o.share,
                    "macs": o.macs,
                    "flops": o.flops,
                }
                for o in report.by_op
            ],
            "slow_layers": ["/".join(p) for p in report.slow_layers],
        },
    }
