"""Parent side of the drift job in :mod:`graph_analysis._ort_child` (spawn, wait, read back), and
the comparison's view of :mod:`graph_analysis.measure` and :mod:`graph_analysis.memory`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graph_analysis.bindings import Bindings
from graph_analysis.errors import MeasurementError, ModelsizeError
from graph_analysis.measure import measure_inference
from graph_analysis.memory import estimate_memory

__all__ = [
    "ChildMeasurement",
    "estimate_inference_bytes",
    "measure",
    "run_child",
    "run_drift",
]

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ChildMeasurement:
    """What one fresh child process measured for one model (bytes, milliseconds)."""

    peak_bytes: int
    median_ms: float
    p90_ms: float
    runs: int


def run_child(
    spec: Mapping[str, Any],
    feeds: Mapping[str, np.ndarray],
    *,
    path_for_errors: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Run one job in a fresh ``python -m graph_analysis._ort_child`` and return its JSON result.

    Raises:
        MeasurementError: the child crashed, timed out or reported an error.
    """
    with tempfile.TemporaryDirectory(prefix="modelsize-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **dict(feeds))  # type: ignore[arg-type]
        result_path = Path(tmp) / "result.json"
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(
            json.dumps({**spec, "feeds": str(feeds_path), "result": str(result_path)})
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p
        )
        env.setdefault("OMP_NUM_THREADS", str(spec.get("threads", 1)))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "graph_analysis._ort_child", str(spec_path)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise MeasurementError(
                path_for_errors, f"the measuring process ran past {timeout_s:.0f} s"
            ) from e
        if not result_path.exists():
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [
                f"exit status {proc.returncode}"
            ]
            raise MeasurementError(path_for_errors, f"the measuring process died: {tail[0]}")
        result: dict[str, Any] = json.loads(result_path.read_text())
    if "error" in result:
        where = result.get("model", path_for_errors)
        raise MeasurementError(where, f"onnxruntime failed: {result['error']}")
    return result


def measure(
    path: Path, bindings: Bindings, *, runs: int, arena: bool, threads: int, timeout_s: float
) -> ChildMeasurement:
    """Peak memory and latency of ``path``, measured by :func:`graph_analysis.measure.measure_inference`
    in a fresh child process (peak resident growth from session creation through the first run)."""
    m = measure_inference(
        path, bindings, runs=runs, arena=arena, threads=threads, timeout_s=timeout_s
    )
    return ChildMeasurement(
        int(m.peak_bytes), m.latency_median_s * 1000.0, m.latency_p90_s * 1000.0, int(m.runs)
    )


def estimate_inference_bytes(path: Path, bindings: Bindings) -> tuple[int | None, str | None]:
    """The estimated inference peak (``estimate_memory(path, bindings).inference.peak_bytes``) and
    None, or None and why it is missing: a model the estimator cannot handle gets a note instead of
    failing the whole comparison."""
    try:
        return int(estimate_memory(path, bindings).inference.peak_bytes), None
    except ModelsizeError as e:
        return None, f"{path.name}: no inference estimate ({e.message})"


def run_drift(
    paths: Sequence[Path], feeds: Mapping[str, np.ndarray], *, threads: int, timeout_s: float
) -> list[Any]:
    """Run every model on the same feeds in one child; drift of each vs the first (None first)."""
    spec = {"job": "drift", "models": [str(p) for p in paths], "threads": threads}
    result = run_child(spec, feeds, path_for_errors=str(paths[0]), timeout_s=timeout_s)
    drift: list[Any] = result["drift"]
    return drift
