"""What a measuring child process imports from its package: the request/result protocol of
:func:`graph_analysis.runtime._child_process.run_json_child` and resident-set readings. Standard library only
(``json``, ``resource``, ``sys``), so that it adds next to nothing to the baseline a child measures.

Linux reports the resident set (``VmRSS``) and its peak (``VmHWM``) in ``/proc/self/status``, and
resets the peak when ``5`` is written to ``/proc/self/clear_refs`` (Linux >= 4.0). Elsewhere the
peak comes from ``getrusage`` (kilobytes on Linux, bytes on macOS) and cannot be reset.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Mapping
from typing import Any

__all__ = [
    "inputs_rejected",
    "peak_rss_bytes",
    "read_request",
    "reset_peak_rss",
    "rss_bytes",
    "write_result",
]


def read_request() -> dict[str, Any]:
    """The request the parent sent (JSON on stdin)."""
    request: dict[str, Any] = json.loads(sys.stdin.read())
    return request


def write_result(result: Mapping[str, Any]) -> None:
    """Hand ``result`` back to the parent: JSON in the file named by the first argument."""
    with open(sys.argv[1], "w", encoding="utf-8") as handle:
        json.dump(result, handle)


def inputs_rejected(error: BaseException) -> str:
    """The one line a child reports when the model refuses the generated inputs at run time."""
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return (
        f"onnxruntime cannot run the model on the generated inputs ({type(error).__name__}: "
        f"{first}); give the real input shapes and types with --input-shape/--input-dtype (inputs "
        "that need particular values, such as a sample rate, cannot be generated)"
    )


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def file_rss_bytes() -> int | None:
    """The file-backed part of the resident set now (``RssFile``: mapped code and files), or None
    where the kernel does not say (not Linux, or Linux before 4.5)."""
    return _status_bytes("RssFile")


def rss_bytes() -> int:
    """The resident set now (``VmRSS``; the peak where the current value cannot be read)."""
    value = _status_bytes("VmRSS")
    if value is not None:
        return value
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The peak resident set since the process started or since :func:`reset_peak_rss`."""
    value = _status_bytes("VmHWM")
    if value is not None:
        return value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current resident set; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
