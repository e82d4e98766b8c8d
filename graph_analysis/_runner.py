"""Parent side of the child-process jobs in :mod:`graph_analysis._child`: spawn, wait, read back.

Also the thin adapter to the memory helper's ``measure_inference`` / ``estimate_memory``: used when
they are importable, else the measurement here (peak RSS of a fresh child over its baseline).
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
from graph_analysis.errors import MeasurementError

__all__ = ["ChildMeasurement", "estimate_inference_bytes", "measure", "run_child"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ChildMeasurement:
    """What one fresh child process measured for one model (bytes, milliseconds)."""

    peak_bytes: int
    latencies_ms: tuple[float, ...]


def run_child(
    spec: Mapping[str, Any],
    feeds: Mapping[str, np.ndarray],
    *,
    path_for_errors: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Run one job in a fresh ``python -m graph_analysis._child`` and return its JSON result.

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
                [sys.executable, "-m", "graph_analysis._child", str(spec_path)],
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
    path: Path,
    bindings: Bindings,
    feeds: Mapping[str, np.ndarray],
    *,
    runs: int,
    arena: bool,
    threads: int,
    timeout_s: float,
) -> ChildMeasurement:
    """Peak memory and per-run latency of ``path`` in a fresh child process.

    Delegates to ``graph_analysis.measure.measure_inference`` when that module exists.
    """
    try:
        from graph_analysis.measure import measure_inference
    except ImportError:
        measure_inference = None
    if measure_inference is not None:
        m = measure_inference(path, bindings, runs=runs, arena=arena)
        latencies = getattr(m, "latencies_ms", None) or ()
        return ChildMeasurement(int(m.peak_bytes), tuple(float(x) for x in latencies))
    spec = {"job": "measure", "model": str(path), "runs": runs, "arena": arena, "threads": threads}
    result = run_child(spec, feeds, path_for_errors=str(path), timeout_s=timeout_s)
    peak = max(0, int(result["peak_rss_bytes"]) - int(result["baseline_rss_bytes"]))
    return ChildMeasurement(peak, tuple(float(x) for x in result["latencies_ms"]))


def estimate_inference_bytes(path: Path, bindings: Bindings) -> int | None:
    """The memory helper's inference estimate when ``graph_analysis.memory`` exists, else None."""
    try:
        from graph_analysis.memory import estimate_memory
    except ImportError:
        return None
    estimate = estimate_memory(path, bindings)
    total = getattr(estimate, "total_bytes", None) or getattr(estimate, "peak_bytes", None)
    return int(total) if total is not None else None


def run_drift(
    paths: Sequence[Path], feeds: Mapping[str, np.ndarray], *, threads: int, timeout_s: float
) -> list[Any]:
    """Run every model on the same feeds in one child; drift of each vs the first (None first)."""
    spec = {"job": "drift", "models": [str(p) for p in paths], "threads": threads}
    result = run_child(spec, feeds, path_for_errors=str(paths[0]), timeout_s=timeout_s)
    drift: list[Any] = result["drift"]
    return drift
