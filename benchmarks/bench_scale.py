"""Benchmark: a graph of many small nodes, through ``analyze()``, ``modelsize inspect`` and ``memory``.

The graph is a chain of ``--nodes`` nodes (default 10^6): Relu nodes, every tenth one a Mul by a
16-element FLOAT initializer, names nested like an exporter's (``/block.12/layer.3/Relu``: 1,000
blocks of 100 layers at 10^6 nodes), the input's batch dim symbolic. The file (about 60 MB at 10^6
nodes) is written directly in the protobuf wire format, in seconds, into ``--out`` (default: a cache
folder outside git) and reused.

Each measurement runs in a fresh child process; wall time, CPU time (user + system: steadier than
wall time on a shared machine) and peak RSS (ru_maxrss) are printed.
Run: `.venv/bin/python benchmarks/bench_scale.py [--nodes N] [--only analyze,inspect,memory]
[--shape-values]` (the latter: a Shape -> Reshape pair every 50 nodes, about 2% more nodes).
Target (issue 13): ``inspect`` in about the time ``analyze()`` takes; ``memory`` well under a minute
and 1 GB. Last measured figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelsize" / "bench"
sys.path.insert(0, str(ROOT))

from graph_analysis._wire import encode_varint as _varint  # noqa: E402  (the wire writer's)
from graph_analysis._wire import len_field as _len  # noqa: E402


def _tensor_type(elem: int, dims: list[int | str]) -> bytes:
    shape = b"".join(
        _len(1, _len(2, d.encode()) if isinstance(d, str) else _varint(1 << 3) + _varint(d))
        for d in dims
    )
    return _len(1, _varint(1 << 3) + _varint(elem) + _len(2, shape))


def _value_info(name: str, elem: int, dims: list[int | str]) -> bytes:
    return _len(1, name.encode()) + _len(2, _tensor_type(elem, dims))


def write_chain(path: Path, nodes: int, shape_values: bool = False) -> Path:
    """Write the chain model of ``nodes`` nodes to ``path`` (wire format, no onnx.helper).

    ``shape_values``: every 50th node is a ``Reshape`` whose target shape a ``Shape`` node reads
    from its input just before (a shape value onnx propagates: segment boundaries avoid it).
    """
    parts: list[bytes] = []
    for i in range(nodes):
        scope = f"/block.{i // 1000}/layer.{i // 10 % 100}"
        src, dst = f"t{i}".encode(), f"t{i + 1}".encode()
        if shape_values and i % 50 == 48:
            node = _len(1, src) + _len(2, f"s{i}".encode()) + _len(3, f"{scope}/Shape".encode())
            node += _len(4, b"Shape")
            parts.append(_len(1, node))
            node = _len(1, src) + _len(1, f"s{i}".encode()) + _len(2, dst)
            node += _len(3, f"{scope}/Reshape".encode()) + _len(4, b"Reshape")
        elif i % 10 == 9:
            weight = f"block.{i // 1000}.layer.{i // 10 % 100}.scale"
            tensor = (
                _varint(1 << 3)
                + _varint(16)  # dims [16]
                + _varint(2 << 3)
                + _varint(1)  # FLOAT
                + _len(8, weight.encode())
                + _len(9, b"\x00\x00\x80\x3f" * 16)  # raw_data: ones
            )
            parts.append(_len(5, tensor))
            node = _len(1, src) + _len(1, weight.encode()) + _len(2, dst)
            node += _len(3, f"{scope}/Mul".encode()) + _len(4, b"Mul")
        else:
            node = _len(1, src) + _len(2, dst) + _len(3, f"{scope}/Relu_{i % 10}".encode())
            node += _len(4, b"Relu")
        parts.append(_len(1, node))
    parts.append(_len(2, b"chain"))
    parts.append(_len(11, _value_info("t0", 1, ["batch", 16])))
    parts.append(_len(12, _value_info(f"t{nodes}", 1, ["batch", 16])))
    graph = b"".join(parts)
    opset = _len(1, b"") + _varint(2 << 3) + _varint(17)
    model = _varint(1 << 3) + _varint(8) + _len(2, b"bench_scale") + _len(8, opset) + _len(7, graph)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model)
    tmp.replace(path)
    return path


def model_path(out: Path, nodes: int, shape_values: bool = False) -> Path:
    """The chain model of ``nodes`` nodes in ``out``, written when missing."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"chain_{nodes}{'_shapes' if shape_values else ''}.onnx"
    if not path.exists():
        write_chain(path, nodes, shape_values)
    return path


_ANALYZE = (
    "import sys, time; from graph_analysis import analyze; t = time.perf_counter(); "
    "r = analyze(sys.argv[1]); print(r.num_nodes, r.parameters.total, time.perf_counter() - t)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", default="analyze,inspect,memory")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--shape-values",
        action="store_true",
        help="every 50th node a Reshape fed by a Shape node (shape values across segments)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    path = model_path(args.out, args.nodes, args.shape_values)
    built = time.perf_counter() - start
    print(f"model: {path} ({path.stat().st_size / 1e6:.1f} MB, ready in {built:.1f} s)")
    py = sys.executable
    commands = {
        "analyze": [py, "-c", _ANALYZE, str(path)],
        "inspect": [py, "-m", "cli", "inspect", str(path)],
        "memory": [py, "-m", "cli", "memory", str(path)],
    }
    results = {}
    for name in args.only.split(","):
        # ru_maxrss of RUSAGE_CHILDREN is a maximum over all children: run each in its own shell.
        wrapped = [py, "-c", _WRAP, json.dumps(commands[name]), str(args.timeout)]
        proc = subprocess.run(wrapped, capture_output=True, text=True, cwd=ROOT, check=False)
        results[name] = json.loads(proc.stdout) if proc.stdout.strip() else {"error": proc.stderr}
        print(f"{name:8s} {json.dumps(results[name])}", flush=True)


# Runs one command as a child and prints its wall time and peak RSS as JSON (its own ru_maxrss
# of children is then exactly that command's).
_WRAP = """
import json, os, resource, subprocess, sys, time
cmd, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
env = {**os.environ, "PYTHONPATH": os.getcwd()}
t = time.perf_counter()
try:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    code, out, err = p.returncode, p.stdout, p.stderr
except subprocess.TimeoutExpired:
    code, out, err = "timeout", "", ""
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
rss, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
print(json.dumps({"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(rss, 1), "exit": code,
                  "stdout_tail": out.strip().splitlines()[-1:], "stderr_tail": err.strip().splitlines()[-2:]}))
"""


if __name__ == "__main__":
    main()
