"""Parent side of the drift job in :mod:`graph_analysis.runtime._ort_child`, and the comparison's view of
:mod:`graph_analysis.memory`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graph_analysis.bindings import Bindings
from graph_analysis.errors import ModelsizeError
from graph_analysis.runtime._child_process import run_json_child
from graph_analysis.runtime.optimized import executed_estimator

__all__ = [
    "estimate_inference_bytes",
    "run_drift",
]


def estimate_inference_bytes(path: Path, bindings: Bindings) -> tuple[int | None, str | None]:
    """The estimated inference peak (as the ``memory`` command makes it: ``executed_estimator``) and
    None, or None and why it is missing: a model the estimator cannot handle gets a note instead of
    failing the whole comparison."""
    try:
        return int(executed_estimator(path)(bindings).inference.peak_bytes), None
    except ModelsizeError as e:
        return None, f"{path.name}: no inference estimate ({e.message})"


def run_drift(
    paths: Sequence[Path], feeds: Mapping[str, np.ndarray], *, threads: int, timeout_s: float
) -> list[Any]:
    """Run every model on the same feeds in one child; drift of each vs the first (None first)."""
    with tempfile.TemporaryDirectory(prefix="modelsize-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **dict(feeds))  # type: ignore[arg-type]
        request = {"models": [str(p) for p in paths], "feeds": str(feeds_path), "threads": threads}
        result = run_json_child(
            "graph_analysis.runtime._ort_child",
            request,
            path=paths[0],
            label="onnxruntime child",
            timeout_s=timeout_s,
            env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))},
        )
    drift: list[Any] = result["drift"]
    return drift
