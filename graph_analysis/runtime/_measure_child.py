"""Child process of ``graph_analysis.runtime.measure``: runs one model in onnxruntime and reports memory.

Run as ``python -m graph_analysis.runtime._measure_child RESULT.json`` (by
:func:`graph_analysis.runtime._child_process.run_json_child`) with a JSON request on stdin. Besides the
standard library it imports only numpy, onnxruntime and small modules of its own package that need
nothing more (never onnx), so the baseline it measures against is the bare runtime. numpy loads
``numpy.random`` lazily; the feeds need it, so it is imported here, before the baseline: loaded
after the session, its code pages and tables (5 MiB file-backed, 1.1 MiB anonymous) were counted
as the model's first run.
"""

from __future__ import annotations

import os
import time

import numpy as np
import numpy.random  # the feeds need it: loaded before the baseline (module docstring)
import onnxruntime as ort

from graph_analysis.runtime._feeds import make_feeds, specs_from_json
from graph_analysis.runtime._in_child import (
    file_rss_bytes,
    inputs_rejected,
    peak_rss_bytes,
    read_request,
    reset_peak_rss,
    rss_bytes,
    write_result,
)


def main() -> None:
    request = read_request()
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = bool(request["arena"])
    if request.get("threads"):
        options.intra_op_num_threads = int(request["threads"])
        options.inter_op_num_threads = 1
    options.log_severity_level = 3

    baseline = rss_bytes()
    files_before = file_rss_bytes()
    can_reset = reset_peak_rss()
    start_hwm = peak_rss_bytes()
    t0 = time.perf_counter()
    session = ort.InferenceSession(request["path"], options, providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t0
    session_peak = peak_rss_bytes()
    session_rss = rss_bytes()
    files_after = file_rss_bytes()

    feeds = make_feeds(specs_from_json(request["inputs"]), integer_ones=True)
    t0 = time.perf_counter()
    try:
        outputs = session.run(None, feeds)
    except Exception as e:  # the model rejects the generated inputs: bad input, said so
        write_result({"error": inputs_rejected(e), "path": request["path"], "kind": "inputs"})
        return
    first_run_s = time.perf_counter() - t0
    first_peak = peak_rss_bytes()
    output_bytes = int(sum(getattr(o, "nbytes", 0) for o in outputs))
    del outputs

    latencies: list[float] = []
    for _ in range(int(request["runs"])):
        t0 = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - t0)
    all_peak = peak_rss_bytes()
    result = {
        "baseline_rss_bytes": baseline,
        "hwm_reset": can_reset,
        "start_hwm_bytes": start_hwm,
        "session_peak_bytes": session_peak,
        "session_rss_bytes": session_rss,
        "session_file_bytes": None
        if files_before is None or files_after is None
        else max(0, files_after - files_before),
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
    write_result(result)


if __name__ == "__main__":
    main()
