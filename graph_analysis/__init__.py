"""modelsize's analysis core: read an ONNX model's structure and compute exact counts and sizes.

Framework-free: never imports torch or tensorflow, never prints.
"""

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
