"""Run one measuring child process: a JSON request in, a JSON result back, failures as one clean line.

The parent starts ``python -m <module> RESULT.json`` with the request on stdin; the child reads it
and answers with ``read_request`` and ``write_result`` from :mod:`graph_analysis.runtime._in_child` (its
stdout and stderr stay free for the runtime's and the user code's own output). A child that dies,
times out or writes no result becomes a :class:`~graph_analysis.errors.MeasurementError`; so does a
result ``{"error": ..., "path": ...}``, for failures the child reports itself; one with
``"kind": "inputs"`` (the model refused the generated inputs at run time) is a
:class:`~graph_analysis.errors.ShapeBindingError` instead: bad input, exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graph_analysis.errors import MeasurementError, ShapeBindingError

__all__ = ["child_environment", "run_json_child"]

# Folder holding the graph_analysis and converters packages, put on the children's PYTHONPATH so that
# ``python -m`` finds them from any working folder.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``extra`` set and the project root first on ``PYTHONPATH``."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    return env


def run_json_child(
    module: str,
    request: Mapping[str, Any],
    *,
    path: str | Path,
    label: str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python -m module`` in a fresh process with ``request`` and return the result it wrote.

    Args:
        module: the child's module (``graph_analysis.runtime._measure_child``).
        request: JSON-serialisable request, sent on the child's stdin.
        path: the model or source the error messages name.
        label: what the messages call the child (``onnxruntime child``).
        timeout_s: the child is killed after this many seconds.
        env: variables set in the child's environment on top of the parent's.

    Raises:
        MeasurementError: the child timed out, failed, wrote no result or reported an error.
    """
    child_env = child_environment(env)
    with tempfile.TemporaryDirectory(prefix="modelsize-") as tmp:
        result_path = Path(tmp) / "result.json"
        try:
            completed = subprocess.run(
                [sys.executable, "-m", module, str(result_path)],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                env=child_env,
            )
        except subprocess.TimeoutExpired as e:
            raise MeasurementError(path, f"the {label} took longer than {timeout_s:.0f} s") from e
        if completed.returncode != 0:
            tail = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise MeasurementError(
                path, f"{label} failed (exit {completed.returncode}): {tail[:300]}"
            )
        try:
            result: dict[str, Any] = json.loads(result_path.read_text())
        except (OSError, ValueError) as e:
            raise MeasurementError(path, f"the {label} returned no result") from e
    if "error" in result:
        if result.get("kind") == "inputs":  # the model refused the generated inputs: bad input
            raise ShapeBindingError(result.get("path") or path, str(result["error"]))
        raise MeasurementError(result.get("path") or path, str(result["error"]))
    return result
