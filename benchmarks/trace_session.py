"""Trace the heap calls onnxruntime makes while it creates a session (and runs it once).

Builds ``benchmarks/malloc_trace.c`` into a temporary folder, runs a child with it preloaded
(``LD_PRELOAD``), logging from just before ``InferenceSession`` to the end of the first run, then
replays the log: every block of at least ``--min-kib`` KiB in order, its size, whether glibc
mapped it, when it was freed (during creation, during the run, or kept), and the initializers of
that exact size (a weight's copy). Nothing is written outside a temporary folder.

    python benchmarks/trace_session.py MODEL [--input-shape x=1,3,224,224] [--min-kib 64]
        [--level all|basic|disabled] [--disable NchwcTransformer ...]

docs/memory.md ("What the heap keeps") records what it showed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 1 << 20

_CHILD = r"""
import ctypes, json, sys
import numpy as np, numpy.random, onnxruntime as ort
request = json.loads(sys.stdin.read())
shim = ctypes.CDLL(request["shim"])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.log_severity_level = 3
options.enable_cpu_mem_arena = request["arena"]
options.graph_optimization_level = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}[request["level"]]
rng = np.random.default_rng(0)
feeds = {
    name: rng.standard_normal(dims).astype(dtype) if dtype.startswith("float")
    else np.ones(dims, dtype=dtype)
    for name, dtype, dims in request["inputs"]
}
shim.trace_on(request["log"].encode())
kwargs = {"disabled_optimizers": request["disable"]} if request["disable"] else {}
session = ort.InferenceSession(request["path"], options, providers=["CPUExecutionProvider"], **kwargs)
shim.trace_mark(b"created")
session.run(None, feeds)
shim.trace_mark(b"ran")
shim.trace_off()
"""


@dataclass
class Block:
    """One heap block of the trace."""

    index: int
    size: int
    mapped: bool
    phase: str  # when it was allocated: creation or run
    freed: str = "kept"  # creation, run or kept
    freed_at: int = -1  # the index of the next block allocated after it was freed


def build_shim(folder: Path) -> Path:
    """Compile the shim into ``folder``."""
    shim = folder / "malloc_trace.so"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-shared",
            "-fPIC",
            "-o",
            str(shim),
            str(ROOT / "benchmarks/malloc_trace.c"),
            "-ldl",
        ],
        check=True,
    )
    return shim


def trace(
    model: Path,
    inputs: list[tuple[str, str, list[int]]],
    folder: Path,
    *,
    level: str = "all",
    disable: list[str] | None = None,
    arena: bool = True,
) -> Path:
    """Run the traced child; return the log's path."""
    shim = build_shim(folder)
    log = folder / "trace.log"
    request = {
        "shim": str(shim),
        "log": str(log),
        "path": str(model),
        "inputs": inputs,
        "level": level,
        "disable": disable or [],
        "arena": arena,
    }
    env = {**os.environ, "LD_PRELOAD": str(shim)}
    subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(request), text=True, env=env, check=True
    )
    return log


def replay(log: Path) -> tuple[list[Block], dict[str, int]]:
    """The blocks of the log, and totals: bytes live at each mark, heap bytes requested."""
    live: dict[str, Block] = {}
    blocks: list[Block] = []
    phase = "creation"
    totals: dict[str, int] = {}

    heap_live = 0
    totals["creation_heap_peak"] = 0

    def allocate(size: int, ptr: str, is_mapped: str) -> None:
        nonlocal heap_live
        block = Block(len(blocks), size, is_mapped == "1", phase)
        blocks.append(block)
        live[ptr] = block
        if not block.mapped:
            heap_live += size
            if phase == "creation" and heap_live > totals["creation_heap_peak"]:
                totals["creation_heap_peak"] = heap_live

    def release(ptr: str) -> None:
        nonlocal heap_live
        block = live.pop(ptr, None)
        if block is not None:
            block.freed = phase
            block.freed_at = len(blocks)
            if not block.mapped:
                heap_live -= block.size

    for line in log.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        op = parts[0]
        if op == "mark":
            totals[f"live_heap_at_{parts[1]}"] = sum(b.size for b in live.values() if not b.mapped)
            totals[f"live_mapped_at_{parts[1]}"] = sum(b.size for b in live.values() if b.mapped)
            phase = "run" if parts[1] == "created" else "after"
        elif op == "m":
            allocate(int(parts[1]), parts[2], parts[3])
        elif op == "f":
            release(parts[1])
        elif op == "r":
            release(parts[1])
            allocate(int(parts[3]), parts[4], parts[5])
    return blocks, totals


def _replay_run(blocks: list[Block], min_bytes: int = 4096) -> None:
    """The run's blocks of at least ``min_bytes`` (with the arena off: its tensors and kernel
    buffers, in onnxruntime's order) replayed through :func:`graph_analysis._arena.simulate_arena`,
    each live from its allocation to its release (block indices as steps)."""
    from graph_analysis._arena import simulate_arena

    run = [b for b in blocks if b.phase == "run" and b.size >= min_bytes]
    spans = [
        (b.size, b.index, b.freed_at - 1 if b.freed == "run" else len(blocks) + 1) for b in run
    ]
    arena = simulate_arena(spans)
    live = peak = 0
    events = sorted([(b.index, b.size) for b in run] + [(s[2] + 0.5, -s[0]) for s in spans])
    for _step, delta in events:
        live += delta
        peak = max(peak, live)
    print(
        f"run: {len(run)} blocks of at least {min_bytes} B, {sum(b.size for b in run) / MiB:.1f}"
        f" MiB; their liveness peak {peak / MiB:.1f} MiB; replayed arena resident "
        f"{arena.resident_bytes / MiB:.1f} MiB in regions "
        f"{[round(r / MiB, 2) for r in arena.region_bytes]}"
    )


def _weight_sizes(model: Path) -> dict[int, list[str]]:
    from graph_analysis._weights import weights_and_skeleton

    stored = weights_and_skeleton(model).stored
    sizes: dict[int, list[str]] = {}
    for t in stored.tensors:
        sizes.setdefault(t.nbytes, []).append(t.name)
    return sizes


def main(argv: list[str]) -> None:
    from benchmarks.heap_probe import _inputs

    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--input-shape", action="append", default=[])
    parser.add_argument("--dim", action="append", default=[])
    parser.add_argument("--min-kib", type=int, default=64)
    parser.add_argument("--level", default="all", choices=["all", "extended", "basic", "disabled"])
    parser.add_argument("--disable", action="append", default=[])
    parser.add_argument("--keep-log", type=Path, help="copy the raw log here (outside git)")
    parser.add_argument(
        "--no-arena",
        action="store_true",
        help="arena off: every tensor of the run is a malloc; replay them through the arena model",
    )
    args = parser.parse_args(argv)
    inputs = _inputs(args.model, args.input_shape, args.dim)
    with tempfile.TemporaryDirectory(prefix="modelsize-trace-") as tmp:
        log = trace(
            args.model,
            inputs,
            Path(tmp),
            level=args.level,
            disable=args.disable,
            arena=not args.no_arena,
        )
        if args.keep_log:
            args.keep_log.write_bytes(log.read_bytes())
        blocks, totals = replay(log)
    weights = _weight_sizes(args.model)
    threshold = args.min_kib * 1024
    for b in blocks:
        if b.size >= threshold:
            names = weights.get(b.size, [])
            tag = f"  = {len(names)} weight(s) {names[0]}" if names else ""
            print(
                f"{b.index:7d} {b.phase:<8} {b.size / 1024:10.1f} KiB {'mmap' if b.mapped else 'heap'}"
                f" freed:{b.freed:<8} {b.freed_at if b.freed_at >= 0 else '':>7}{tag}"
            )
    for key, value in totals.items():
        print(f"{key}: {value / MiB:.2f} MiB")
    if args.no_arena:
        _replay_run(blocks)
    created = [b for b in blocks if b.phase == "creation" and not b.mapped]
    freed = [b for b in created if b.freed == "creation"]
    print(
        f"creation: {len(created)} heap blocks, {sum(b.size for b in created) / MiB:.1f} MiB "
        f"requested, {sum(b.size for b in freed) / MiB:.1f} MiB of them freed during creation"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
