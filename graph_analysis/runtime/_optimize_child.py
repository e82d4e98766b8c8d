"""Child process of ``graph_analysis.runtime.optimized``: saves the graph onnxruntime runs.

Run as ``python -m graph_analysis.runtime._optimize_child RESULT.json`` (by
:func:`graph_analysis.runtime._child_process.run_json_child`) with a JSON request on stdin: the
model, the file to write (in the parent's private temporary folder) and the intra-op threads. It
creates one CPU session at ``ORT_ENABLE_ALL`` (onnxruntime's default) with
``optimized_model_filepath`` and notes how many file-backed pages (``RssFile``: onnxruntime's
code) creating it mapped, then asks MLAS's NCHWc block size of this machine by running a
one-node ``ReorderInput`` on 4 channels (its output has ``roundup(4, block)``); the block is None
where the NCHWc kernels are missing (no NCHWc layout there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from graph_analysis.runtime._in_child import file_rss_bytes, read_request, write_result


def _options(threads: int | None) -> Any:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _nchwc_block_size() -> int | None:
    import onnx
    from onnx import helper

    node = helper.make_node(
        "ReorderInput", ["x"], ["y"], domain="com.microsoft.nchwc", channels_last=0
    )
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 1, 1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft.nchwc", 1)],
    )
    options = _options(1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        (y,) = session.run(None, {"x": np.ones((1, 4, 1, 1), dtype=np.float32)})
    except Exception:  # no NCHWc kernels in this build or on this machine
        return None
    block = int(y.shape[1])
    return block if block > 1 else None


def main() -> None:
    request = read_request()
    options = _options(request.get("threads"))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = request["out"]
    files_before = file_rss_bytes()
    try:
        ort.InferenceSession(request["path"], options, providers=["CPUExecutionProvider"])
    except Exception as e:  # reported to the parent, which raises MeasurementError
        write_result(
            {"error": f"onnxruntime failed: {type(e).__name__}: {e}", "path": request["path"]}
        )
        return
    files_after = file_rss_bytes()
    write_result(
        {
            "session_file_bytes": None
            if files_before is None or files_after is None
            else max(0, files_after - files_before),
            "level": "ORT_ENABLE_ALL",
            "nchwc_block_size": _nchwc_block_size(),
            "onnxruntime_version": ort.__version__,
        }
    )


if __name__ == "__main__":
    main()
