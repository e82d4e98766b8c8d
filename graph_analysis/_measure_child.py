"""Child process of ``graph_analysis.measure``: runs one model in onnxruntime and reports memory.

Run as a script (``python _measure_child.py``) with a JSON request on stdin; writes one JSON line on
stdout. It imports only the standard library, numpy and onnxruntime, so the baseline it measures
against is the bare runtime, and it never imports the package it belongs to.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss() -> int:
    value = _status_bytes("VmRSS")
    if value is not None:
        return value
    return _hwm()


def _hwm() -> int:
    value = _status_bytes("VmHWM")
    if value is not None:
        return value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


_NUMPY_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
}


def _make_inputs(specs: list[dict[str, Any]]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    feeds: dict[str, Any] = {}
    for spec in specs:
        dtype = _NUMPY_DTYPES.get(spec["elem_type"])
        if dtype is None:
            raise ValueError(f"input {spec['name']}: data type {spec['elem_type']} not supported")
        shape = tuple(spec["dims"])
        if dtype.startswith("float") or dtype.startswith("complex"):
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            feeds[spec["name"]] = np.ones(shape, dtype=bool)
        else:
            # Ones: a valid token id / index for any table with two or more rows, and a valid mask.
            feeds[spec["name"]] = np.ones(shape, dtype=dtype)
    return feeds


def main() -> None:
    request = json.loads(sys.stdin.read())
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = bool(request["arena"])
    if request.get("threads"):
        options.intra_op_num_threads = int(request["threads"])
        options.inter_op_num_threads = 1
    options.log_severity_level = 3

    baseline = _rss()
    can_reset = _reset_hwm()
    start_hwm = _hwm()
    t0 = time.perf_counter()
    session = ort.InferenceSession(request["path"], options, providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t0
    session_peak = _hwm()
    session_rss = _rss()

    feeds = _make_inputs(request["inputs"])
    t0 = time.perf_counter()
    outputs = session.run(None, feeds)
    first_run_s = time.perf_counter() - t0
    first_peak = _hwm()
    output_bytes = int(sum(getattr(o, "nbytes", 0) for o in outputs))
    del outputs

    latencies: list[float] = []
    for _ in range(int(request["runs"])):
        t0 = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - t0)
    all_peak = _hwm()
    result = {
        "baseline_rss_bytes": baseline,
        "hwm_reset": can_reset,
        "start_hwm_bytes": start_hwm,
        "session_peak_bytes": session_peak,
        "session_rss_bytes": session_rss,
        "first_run_peak_bytes": first_peak,
        "all_runs_peak_bytes": all_peak,
        "output_bytes": output_bytes,
        "create_seconds": create_s,
        "first_run_seconds": first_run_s,
        "latencies_seconds": latencies,
        "onnxruntime_version": ort.__version__,
        "numpy_version": np.__version__,
        "pid": os.getpid(),
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
