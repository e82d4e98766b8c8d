"""Generated, reproducible input feeds for running a model: measurement, drift, calibration, smoke runs.

Shapes are bound by :func:`graph_analysis.runtime.measure.model_input_specs` (one binding rule everywhere);
values are seeded so that two models compared with each other see exactly the same numbers. The
measuring child processes import this module: it needs only numpy and the dtype table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType
from graph_analysis.errors import ShapeBindingError

__all__ = [
    "InputSpec",
    "input_specs",
    "make_feeds",
    "numpy_type",
    "specs_from_json",
    "specs_to_json",
]

# ONNX data type -> numpy dtype for the types a generated feed may have.
_NUMPY: dict[DataType, type[np.generic]] = {
    DataType.FLOAT: np.float32,
    DataType.UINT8: np.uint8,
    DataType.INT8: np.int8,
    DataType.UINT16: np.uint16,
    DataType.INT16: np.int16,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.BOOL: np.bool_,
    DataType.FLOAT16: np.float16,
    DataType.DOUBLE: np.float64,
    DataType.UINT32: np.uint32,
    DataType.UINT64: np.uint64,
    DataType.COMPLEX64: np.complex64,
    DataType.COMPLEX128: np.complex128,
}

# Integer inputs whose name says they are masks get ones; type/segment ids and positions get zeros
# (any other value may be out of range for the embedding table they index).
_ONES_HINTS = ("mask",)
_ZEROS_HINTS = ("token_type", "segment", "position")


@dataclass(frozen=True)
class InputSpec:
    """A graph input bound to concrete dims: name, ONNX element type (``TensorProto.DataType``
    value; an int is accepted and stored as :class:`~graph_analysis.dtypes.DataType`) and dims."""

    name: str
    elem_type: DataType
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "elem_type", DataType(self.elem_type))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))


def numpy_type(elem_type: DataType) -> type[np.generic] | None:
    """The numpy type of a generated feed of this ONNX type (None: not generated)."""
    return _NUMPY.get(elem_type)


def specs_to_json(specs: Sequence[InputSpec]) -> list[dict[str, Any]]:
    """The specs as a child process receives them: ``{"name", "elem_type", "dims"}`` each."""
    return [{"name": s.name, "elem_type": int(s.elem_type), "dims": list(s.dims)} for s in specs]


def specs_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[InputSpec, ...]:
    """The inverse of :func:`specs_to_json`."""
    return tuple(InputSpec(i["name"], i["elem_type"], tuple(i["dims"])) for i in items)


def input_specs(
    path: Path, bindings: Bindings | None = None, *, default_dim: int = 1
) -> tuple[InputSpec, ...]:
    """Every real graph input of ``path`` bound to concrete dims and a data type that can be generated.

    Dims are bound exactly as the memory measurement binds them
    (:func:`graph_analysis.runtime.measure.model_input_specs`: ``--input-shape``, then ``--dim``, then
    ``--batch``, then ``default_dim``); ``--input-dtype`` overrides the declared type.

    Raises:
        ShapeBindingError: a binding that does not fit, or an input whose type cannot be generated.
        ModelFormatError: not an ONNX model, or an input that is not a plain tensor.
    """
    # Imported here: the measuring children import this module and must not load onnx.
    from graph_analysis.runtime.measure import model_input_specs

    bindings = bindings or Bindings()
    specs = []
    for spec in model_input_specs(path, bindings, default_dim=default_dim):
        dtype_name = bindings.dtypes.get(spec.name, bindings.dtypes.get(None))
        elem_type = DataType[dtype_name] if dtype_name else spec.elem_type
        if elem_type not in _NUMPY or np.issubdtype(_NUMPY[elem_type], np.complexfloating):
            raise ShapeBindingError(
                path, f"input {spec.name}: cannot generate values of type {elem_type}"
            )
        specs.append(InputSpec(spec.name, elem_type, spec.dims))
    return tuple(specs)


def make_feeds(
    specs: Sequence[InputSpec], *, seed: int = 0, int_high: int = 100, integer_ones: bool = False
) -> Mapping[str, np.ndarray]:
    """Reproducible values for the bound inputs.

    Floats (and complex numbers) are standard normal; booleans are True. Integer inputs are uniform
    in ``[0, int_high)`` except masks (ones) and type/segment/position ids (zeros); with
    ``integer_ones`` every integer input is ones (a valid index into any table of two or more rows:
    what a measurement feeds). The same ``seed`` gives the same feeds.

    Raises:
        ValueError: an input whose data type cannot be generated.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        np_type = numpy_type(spec.elem_type)
        if np_type is None:
            raise ValueError(f"input {spec.name}: data type {spec.elem_type.name} not supported")
        lowered = spec.name.lower()
        if np.issubdtype(np_type, np.inexact):
            feeds[spec.name] = rng.standard_normal(spec.dims).astype(np_type)
        elif np_type is np.bool_ or integer_ones or any(h in lowered for h in _ONES_HINTS):
            feeds[spec.name] = np.ones(spec.dims, dtype=np_type)
        elif any(h in lowered for h in _ZEROS_HINTS):
            feeds[spec.name] = np.zeros(spec.dims, dtype=np_type)
        else:
            feeds[spec.name] = rng.integers(0, int_high, size=spec.dims).astype(np_type)
    return feeds
