"""Parsing of the user's input descriptions: ``--input-shape``, ``--dim``, ``--batch``, ``--input-dtype``.

Shared by the converters (to build dummy inputs for export) and the shape/memory analysis (to bind
symbolic dims). Pure parsing: nothing here knows a graph; fitting a binding to a graph is the job of
``graph_analysis.shapes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from graph_analysis.errors import ShapeBindingError

__all__ = ["Bindings", "ShapeSpec", "parse_bindings", "parse_dim", "parse_input_shape"]

_DIM_SPLIT = re.compile("[,x\u00d7]")  # comma, x or the multiplication sign
_NAME = re.compile(r"^[^=\s]+$")


@dataclass(frozen=True)
class ShapeSpec:
    """One ``--input-shape``: an optional input name and concrete dims.

    ``name`` is None for the bare form (``1,3,224,224``), allowed only for single-input models.
    """

    name: str | None
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Bindings:
    """Everything the user said about input shapes.

    Attributes:
        shapes: explicit per-input shapes, in the order given.
        dims: values for named symbolic dims (``seq=512``), applied wherever that dim name occurs.
        batch: value for the leading dim of every input whose first dim is symbolic or unknown.
        dtypes: per-input data type names as in the ONNX spec (``INT64``), key None for "every input".
    """

    shapes: tuple[ShapeSpec, ...] = ()
    dims: Mapping[str, int] = field(default_factory=dict)
    batch: int | None = None
    dtypes: Mapping[str | None, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """True when the user bound nothing."""
        return not (self.shapes or self.dims or self.batch is not None or self.dtypes)


def _parse_int(text: str, what: str, *, allow_zero: bool = False) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ShapeBindingError(None, f"{what}: {text.strip()!r} is not a whole number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ShapeBindingError(None, f"{what}: {value} must be {'>= 0' if allow_zero else '> 0'}")
    return value


def parse_input_shape(text: str) -> ShapeSpec:
    """Parse ``NAME=1,3,224,224`` or a bare ``1,3,224,224`` (``x`` also separates dims).

    Raises:
        ShapeBindingError: empty text, a non-integer or negative dim, an empty name.
    """
    name: str | None = None
    dims_text = text.strip()
    if "=" in dims_text:
        name, dims_text = (part.strip() for part in dims_text.rsplit("=", 1))
        if not name or not _NAME.match(name):
            raise ShapeBindingError(
                None, f"--input-shape {text!r}: the input name is empty or has spaces"
            )
    if not dims_text:
        # A scalar input is written NAME= (rank 0).
        if name is None:
            raise ShapeBindingError(None, "--input-shape: empty shape")
        return ShapeSpec(name, ())
    parts = [p for p in _DIM_SPLIT.split(dims_text)]
    dims = tuple(_parse_int(p, f"--input-shape {text!r}", allow_zero=True) for p in parts)
    return ShapeSpec(name, dims)


def parse_dim(text: str) -> tuple[str, int]:
    """Parse ``--dim NAME=VALUE`` (``seq=512``, ``p2o.DynamicDimension.0=1``).

    Raises:
        ShapeBindingError: no ``=``, an empty name or a value that is not a positive integer.
    """
    if "=" not in text:
        raise ShapeBindingError(None, f"--dim {text!r}: expected NAME=VALUE")
    name, value = text.rsplit("=", 1)
    name = name.strip()
    if not name:
        raise ShapeBindingError(None, f"--dim {text!r}: the dim name is empty")
    return name, _parse_int(value, f"--dim {text!r}")


def parse_bindings(
    input_shapes: Iterable[str] = (),
    dims: Iterable[str] = (),
    batch: int | None = None,
    input_dtypes: Iterable[str] = (),
) -> Bindings:
    """Parse all CLI binding options at once.

    ``input_dtypes`` items are ``INT64`` (every input) or ``NAME=INT64``; names are upper-cased ONNX
    data type names (``float32``/``int64`` spellings are accepted and mapped).

    Raises:
        ShapeBindingError: any malformed item, a bare shape next to named ones, duplicate names.
    """
    shapes = tuple(parse_input_shape(s) for s in input_shapes)
    if len(shapes) > 1 and any(s.name is None for s in shapes):
        raise ShapeBindingError(
            None, "--input-shape: name every input (NAME=dims) when giving several"
        )
    names = [s.name for s in shapes if s.name is not None]
    if len(names) != len(set(names)):
        raise ShapeBindingError(None, "--input-shape: an input is named twice")
    dim_map: dict[str, int] = {}
    for item in dims:
        dim_name, dim_value = parse_dim(item)
        dim_map[dim_name] = dim_value
    if batch is not None and batch <= 0:
        raise ShapeBindingError(None, f"--batch {batch}: must be > 0")
    dtype_map: dict[str | None, str] = {}
    for item in input_dtypes:
        input_name: str | None = None
        dtype_name = item
        if "=" in item:
            input_name, dtype_name = (p.strip() for p in item.rsplit("=", 1))
        dtype_map[input_name] = _normalise_dtype_name(dtype_name)
    return Bindings(shapes=shapes, dims=dim_map, batch=batch, dtypes=dtype_map)


_DTYPE_ALIASES = {
    "FLOAT32": "FLOAT",
    "FP32": "FLOAT",
    "FP16": "FLOAT16",
    "HALF": "FLOAT16",
    "BF16": "BFLOAT16",
    "FLOAT64": "DOUBLE",
    "FP64": "DOUBLE",
    "LONG": "INT64",
    "INT": "INT32",
}


def _normalise_dtype_name(text: str) -> str:
    from graph_analysis.dtypes import DataType

    name = text.strip().upper()
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DataType.__members__:
        raise ShapeBindingError(None, f"--input-dtype {text!r}: unknown data type")
    return name
