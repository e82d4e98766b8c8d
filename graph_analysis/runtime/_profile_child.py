"""Child process of ``graph_analysis.runtime.profile``: runs one model with onnxruntime's profiler on.

Run as ``python -m graph_analysis.runtime._profile_child RESULT.json`` (by
:func:`graph_analysis.runtime._child_process.run_json_child`) with a JSON request on stdin. It returns,
for every timed run after the warm-up runs, the run's wall time (``perf_counter`` around
``session.run``), onnxruntime's own ``model_run`` duration and each kernel's duration with its op type.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import onnxruntime as ort

from graph_analysis.runtime._feeds import make_feeds, specs_from_json
from graph_analysis.runtime._in_child import read_request, write_result

_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def _runs(events: list[dict[str, Any]], warmup: int) -> list[dict[str, Any]]:
    """Split the profile into runs (``model_run`` spans) and drop the warm-up ones."""
    spans = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]
    runs: list[dict[str, Any]] = []
    for start, end in spans[warmup:]:
        inside = [k for k in kernels if start <= int(k["ts"]) <= end]
        runs.append(
            {
                "model_run_s": (end - start) / 1e6,
                "kernels": [
                    {
                        "name": str(k["name"])[: -len("_kernel_time")],
                        "op_type": str(k.get("args", {}).get("op_name", "")),
                        "time_s": int(k["dur"]) / 1e6,
                    }
                    for k in inside
                ],
            }
        )
    return runs


def main() -> None:
    request = read_request()
    with tempfile.TemporaryDirectory(prefix="modelsize-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        options.graph_optimization_level = _LEVELS[request["optimization"]]
        options.intra_op_num_threads = int(request["threads"])
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(request["path"], options, providers=["CPUExecutionProvider"])
        feeds = make_feeds(specs_from_json(request["inputs"]), integer_ones=True)
        warmup = int(request["warmup"])
        wall: list[float] = []
        for index in range(warmup + int(request["runs"])):
            t0 = time.perf_counter()
            session.run(None, feeds)
            if index >= warmup:
                wall.append(time.perf_counter() - t0)
        profile_path = session.end_profiling()
        with open(profile_path, encoding="utf-8") as handle:
            events = json.load(handle)
    runs = _runs(events, warmup)
    for run, seconds in zip(runs, wall, strict=False):
        run["wall_s"] = seconds
    write_result({"runs": runs, "onnxruntime_version": ort.__version__})


if __name__ == "__main__":
    main()
