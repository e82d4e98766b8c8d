"""modelsize's analysis core: read an ONNX model's structure and compute exact counts and sizes.

Framework-free: never imports torch or tensorflow, never prints. The exports load on first use, so
that the measuring child processes, which import small private modules of this package, keep a
baseline of only numpy and onnxruntime (importing ``onnx`` would add about 8 MiB to it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graph_analysis.analysis import analyze
    from graph_analysis.errors import InputError, InternalError, ModelsizeError
    from graph_analysis.report import ModelReport, Precision, Role, report_to_dict

__all__ = [
    "InputError",
    "InternalError",
    "ModelReport",
    "ModelsizeError",
    "Precision",
    "Role",
    "analyze",
    "report_to_dict",
]

_HOME = {
    "InputError": "graph_analysis.errors",
    "InternalError": "graph_analysis.errors",
    "ModelReport": "graph_analysis.report",
    "ModelsizeError": "graph_analysis.errors",
    "Precision": "graph_analysis.report",
    "Role": "graph_analysis.report",
    "analyze": "graph_analysis.analysis",
    "report_to_dict": "graph_analysis.report",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'graph_analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
