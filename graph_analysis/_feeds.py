"""Generated, reproducible input feeds for running a model: for drift, calibration and smoke runs.

Shapes come from the graph's declared inputs, with symbolic dims bound from the user's
:class:`~graph_analysis.bindings.Bindings`; values are seeded so that two models compared with each
other see exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType
from graph_analysis.errors import ShapeBindingError

__all__ = ["InputSpec", "graph_input_specs", "make_feeds"]

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


def graph_input_specs(
    graph: onnx.GraphProto,
    bindings: Bindings | None = None,
    *,
    default_batch: int = 1,
    default_dim: int = 1,
) -> tuple[InputSpec, ...]:
    """Bind every real graph input (initializers excluded) to concrete dims and a data type.

    Args:
        graph: the main graph (its initializers need not be loaded).
        bindings: the user's shapes, named dims, batch and dtypes; None binds nothing.
        default_batch: value for a symbolic or unknown leading dim the user did not bind.
        default_dim: value for any other symbolic or unknown dim the user did not bind.

    Raises:
        ShapeBindingError: a named shape for an input the graph lacks, a bare shape on a
            multi-input graph, a rank mismatch, or an input whose type cannot be generated.
    """
    bindings = bindings or Bindings()
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    explicit: dict[str, tuple[int, ...]] = {}
    for spec in bindings.shapes:
        if spec.name is None:
            if len(inputs) != 1:
                raise ShapeBindingError(
                    None, "--input-shape without a name needs a single-input model"
                )
            explicit[inputs[0].name] = spec.dims
        elif spec.name not in {i.name for i in inputs}:
            raise ShapeBindingError(None, f"--input-shape {spec.name}: the model has no such input")
        else:
            explicit[spec.name] = spec.dims
    specs = []
    for value in inputs:
        tensor_type = value.type.tensor_type
        dtype_name = bindings.dtypes.get(value.name, bindings.dtypes.get(None))
        data_type = (
            DataType[dtype_name] if dtype_name else DataType.from_value(tensor_type.elem_type)
        )
        if data_type not in _NUMPY:
            raise ShapeBindingError(
                None, f"input {value.name}: cannot generate values of type {data_type}"
            )
        declared = list(tensor_type.shape.dim) if tensor_type.HasField("shape") else []
        if value.name in explicit:
            dims = explicit[value.name]
            if declared and len(dims) != len(declared):
                raise ShapeBindingError(
                    None,
                    f"input {value.name}: rank {len(dims)} given, the graph declares {len(declared)}",
                )
        else:
            dims = tuple(
                _bind_dim(d, i, bindings, default_batch, default_dim)
                for i, d in enumerate(declared)
            )
        specs.append(InputSpec(value.name, data_type, tuple(dims)))
    return tuple(specs)


def _bind_dim(
    dim: onnx.TensorShapeProto.Dimension,
    axis: int,
    bindings: Bindings,
    default_batch: int,
    default_dim: int,
) -> int:
    if dim.HasField("dim_value") and dim.dim_value > 0:
        return int(dim.dim_value)
    if dim.HasField("dim_param") and dim.dim_param in bindings.dims:
        return int(bindings.dims[dim.dim_param])
    if axis == 0:
        return bindings.batch if bindings.batch is not None else default_batch
    return default_dim


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
