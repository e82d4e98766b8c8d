"""Child-process entry point that runs several models on identical inputs, for output drift.

Run as ``python -m graph_analysis.runtime._ort_child RESULT.json`` (by
:func:`graph_analysis.runtime._child_process.run_json_child`) with a JSON request on stdin naming the models
and the ``.npz`` of feeds. Each model is loaded, run and released in turn; the first one's outputs
are the reference. A model onnxruntime rejects is reported as ``{"error", "path"}``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from graph_analysis.dtypes import DataType
from graph_analysis.runtime._feeds import numpy_type
from graph_analysis.runtime._in_child import inputs_rejected, read_request, write_result


def _numpy_type(ort_type: str) -> type[np.generic] | None:
    """The numpy type of an onnxruntime input type (``tensor(float16)``: the ONNX name, lower-case)."""
    name = ort_type.removeprefix("tensor(").removesuffix(")").upper()
    elem_type = DataType.__members__.get(name)
    return None if elem_type is None else numpy_type(elem_type)


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
        wanted = _numpy_type(meta.type)
        out[meta.name] = (
            value.astype(wanted) if wanted is not None and value.dtype != wanted else value
        )
    return {n: out[n] for n in names}


def _run_drift(spec: dict[str, Any], feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    from graph_analysis.runtime._drift import drift_all

    reference: dict[str, np.ndarray] | None = None
    results: list[Any] = []
    for path in spec["models"]:
        try:
            session = _session(path, spec["threads"], True)
        except Exception as e:
            return {"error": f"onnxruntime failed: {type(e).__name__}: {e}", "path": path}
        names = [o.name for o in session.get_outputs()]
        try:
            outputs = dict(zip(names, session.run(None, _feeds_for(session, feeds)), strict=True))
        except Exception as e:
            if reference is None:  # the reference itself rejects the generated inputs
                return {"error": inputs_rejected(e), "path": path, "kind": "inputs"}
            return {"error": f"onnxruntime failed: {type(e).__name__}: {e}", "path": path}
        del session
        if reference is None:
            reference = outputs
            results.append(None)
            continue
        try:
            results.append([vars(d) for d in drift_all(reference, outputs)])
        except ValueError as e:
            return {"error": f"onnxruntime failed: {e}", "path": path}
    return {"drift": results}


def main() -> int:
    request = read_request()
    with np.load(request["feeds"]) as data:
        feeds = {k: data[k] for k in data.files}
    try:
        result = _run_drift(request, feeds)
    except Exception as e:  # reported to the parent, which raises MeasurementError
        result = {"error": f"onnxruntime failed: {type(e).__name__}: {e}"}
    write_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
