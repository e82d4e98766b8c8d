"""Child-process entry point that runs models in onnxruntime: drift and (fallback) measurement.

Run as ``python -m graph_analysis._ort_child SPEC.json``; the spec names the job, the models, the
``.npz`` of feeds and the JSON file to write the result to (stdout is left to onnxruntime's logs).
A fresh process per job keeps one model's allocations out of another's figures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_ORT_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _session(path: str, threads: int, arena: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _feeds_for(session: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    names = [i.name for i in session.get_inputs()]
    values = list(feeds.values())
    for position, meta in enumerate(session.get_inputs()):
        value = feeds[meta.name] if meta.name in feeds else values[position]
        wanted = _ORT_NUMPY.get(meta.type)
        out[meta.name] = (
            value.astype(wanted) if wanted is not None and value.dtype != wanted else value
        )
    return {n: out[n] for n in names}


def _run_drift(spec: dict[str, Any], feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    from graph_analysis._drift import drift_all

    reference: dict[str, np.ndarray] | None = None
    results: list[Any] = []
    for path in spec["models"]:
        try:
            session = _session(path, spec["threads"], True)
            names = [o.name for o in session.get_outputs()]
            outputs = dict(zip(names, session.run(None, _feeds_for(session, feeds)), strict=True))
            del session
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}", "model": path}
        if reference is None:
            reference = outputs
            results.append(None)
            continue
        try:
            results.append([vars(d) for d in drift_all(reference, outputs)])
        except ValueError as e:
            return {"error": str(e), "model": path}
    return {"drift": results}


def _run_measure(spec: dict[str, Any], feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    has_reset = _reset_peak()
    baseline = _status_bytes("VmRSS")
    session = _session(spec["model"], spec["threads"], spec["arena"])
    run_feeds = _feeds_for(session, feeds)
    session.run(None, run_feeds)  # warm-up, not timed
    latencies = []
    for _ in range(spec["runs"]):
        start = time.perf_counter()
        session.run(None, run_feeds)
        latencies.append((time.perf_counter() - start) * 1000.0)
    peak = _status_bytes("VmHWM") if has_reset else None
    if peak is None or baseline is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        baseline = baseline or 0
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak, "latencies_ms": latencies}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    with np.load(spec["feeds"]) as data:
        feeds = {k: data[k] for k in data.files}
    try:
        job = _run_drift if spec["job"] == "drift" else _run_measure
        result = job(spec, feeds)
    except Exception as e:  # reported to the parent, which raises MeasurementError
        result = {"error": f"{type(e).__name__}: {e}"}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
