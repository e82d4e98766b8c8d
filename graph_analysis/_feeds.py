"""Generated, reproducible input feeds for running a model: for drift, calibration and smoke runs.

Shapes are bound as the memory measurement binds them; values are seeded so that two models
compared with each other see exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType
from graph_analysis.errors import ShapeBindingError
from graph_analysis.measure import model_input_specs

__all__ = ["InputSpec", "input_specs", "make_feeds"]

# onnx elem_type -> numpy dtype for the types a generated feed may need.
_NUMPY: dict[DataType, type[np.generic]] = {
    DataType.FLOAT: np.float32,
    DataType.FLOAT16: np.float16,
    DataType.DOUBLE: np.float64,
    DataType.INT8: np.int8,
    DataType.UINT8: np.uint8,
    DataType.INT16: np.int16,
    DataType.UINT16: np.uint16,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.UINT32: np.uint32,
    DataType.UINT64: np.uint64,
    DataType.BOOL: np.bool_,
}

# Integer inputs whose name says they are masks get ones; type/segment ids and positions get zeros
# (any other value may be out of range for the embedding table they index).
_ONES_HINTS = ("mask",)
_ZEROS_HINTS = ("token_type", "segment", "position")


@dataclass(frozen=True)
class InputSpec:
    """One graph input bound to a concrete shape and data type."""

    name: str
    data_type: DataType
    dims: tuple[int, ...]


def input_specs(
    path: Path, bindings: Bindings | None = None, *, default_dim: int = 1
) -> tuple[InputSpec, ...]:
    """Every real graph input of ``path`` bound to concrete dims and a data type.

    Dims are bound exactly as the memory measurement binds them
    (:func:`graph_analysis.measure.model_input_specs`: ``--input-shape``, then ``--dim``, then
    ``--batch``, then ``default_dim``); ``--input-dtype`` overrides the declared type.

    Raises:
        ShapeBindingError: a binding that does not fit, or an input whose type cannot be generated.
        ModelFormatError: not an ONNX model, or an input that is not a plain tensor.
    """
    bindings = bindings or Bindings()
    specs = []
    for spec in model_input_specs(path, bindings, default_dim=default_dim):
        dtype_name = bindings.dtypes.get(spec.name, bindings.dtypes.get(None))
        data_type = DataType[dtype_name] if dtype_name else DataType.from_value(spec.elem_type)
        if data_type not in _NUMPY:
            raise ShapeBindingError(
                path, f"input {spec.name}: cannot generate values of type {data_type}"
            )
        specs.append(InputSpec(spec.name, data_type, tuple(spec.dims)))
    return tuple(specs)


def make_feeds(
    specs: Sequence[InputSpec], *, seed: int = 0, int_high: int = 100
) -> Mapping[str, np.ndarray]:
    """Reproducible values for the bound inputs.

    Floats are standard normal; integer inputs are uniform in ``[0, int_high)`` except masks (ones)
    and type/segment/position ids (zeros); booleans are True. The same ``seed`` gives the same feeds.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        np_type = _NUMPY[spec.data_type]
        lowered = spec.name.lower()
        if np.issubdtype(np_type, np.floating):
            feeds[spec.name] = rng.standard_normal(spec.dims).astype(np_type)
        elif np_type is np.bool_ or any(h in lowered for h in _ONES_HINTS):
            feeds[spec.name] = np.ones(spec.dims, dtype=np_type)
        elif any(h in lowered for h in _ZEROS_HINTS):
            feeds[spec.name] = np.zeros(spec.dims, dtype=np_type)
        else:
            feeds[spec.name] = rng.integers(0, int_high, size=spec.dims).astype(np_type)
    return feeds
