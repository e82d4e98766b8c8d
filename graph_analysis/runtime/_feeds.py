"""Generated, reproducible input feeds for running a model: measurement, drift, calibration, smoke runs.

Shapes are bound by :func:`graph_analysis.runtime.measure.model_input_specs` (one binding rule everywhere);
values are seeded so that two models compared with each other see exactly the same numbers. The
measuring child processes import this module: it needs only numpy and the dtype table.
"""

from __future__ import annotations

import math
import os
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
    "apply_input_dtypes",
    "available_memory_bytes",
    "check_inputs_fit",
    "describe_specs",
    "feeds_nbytes",
    "input_specs",
    "make_feeds",
    "numpy_type",
    "specs_from_bindings",
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
# Normal values for types numpy cannot draw directly are drawn in float32 this many at a time, so
# that generating never holds more than the input plus one chunk.
_CHUNK = 1 << 20


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


def describe_specs(specs: Sequence[InputSpec]) -> str:
    """``x: FLOAT[1,3,224,224], mask: INT64[1,128]``: the bound inputs, for messages."""
    return ", ".join(f"{s.name}: {s.elem_type.name}[{','.join(map(str, s.dims))}]" for s in specs)


def feeds_nbytes(specs: Sequence[InputSpec]) -> int:
    """Bytes the generated feeds of ``specs`` take (elements x item size; exact, no overhead)."""
    total = 0
    for spec in specs:
        np_type = numpy_type(spec.elem_type)
        itemsize = np.dtype(np_type).itemsize if np_type is not None else 8
        total += math.prod(spec.dims) * itemsize
    return total


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), when there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    return max(0, int(limit) - int(used))


def available_memory_bytes() -> tuple[int, str] | None:
    """(bytes this machine can still give a process, where the figure comes from), or None.

    The kernel's ``MemAvailable`` (free memory plus what it can reclaim without swapping), lowered
    to the room left under a cgroup memory limit when one applies.
    """
    figures = []
    meminfo = _meminfo_available()
    if meminfo is not None:
        figures.append((meminfo, "MemAvailable"))
    cgroup = _cgroup_available()
    if cgroup is not None:
        figures.append((cgroup, "cgroup memory.max - memory.current"))
    return min(figures) if figures else None


def _binary(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} B" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def check_inputs_fit(
    path: str | Path | None, specs: Sequence[InputSpec], *, available: int | None = None
) -> None:
    """Refuse to run a model whose generated inputs alone cannot fit in the available memory.

    A run needs at least its inputs (the model's own memory comes on top), so inputs larger than
    what the machine has left can only end in an allocation failure or the OOM killer.

    Args:
        path: the model, named in the error.
        specs: the bound inputs.
        available: the bytes available (:func:`available_memory_bytes` when None).

    Raises:
        ShapeBindingError: the inputs need more bytes than are available.
    """
    needed = feeds_nbytes(specs)
    where = "given"
    if available is None:
        found = available_memory_bytes()
        if found is None:
            return
        available, where = found
    if needed > available:
        raise ShapeBindingError(
            path,
            f"the generated inputs alone need {_binary(needed)} ({needed:,} bytes: "
            f"{describe_specs(specs)}) and this machine has {_binary(available)} available "
            f"({where}); bind smaller shapes with --input-shape/--dim/--batch",
        )


def apply_input_dtypes(
    path: str | Path, specs: Sequence[InputSpec], bindings: Bindings
) -> tuple[InputSpec, ...]:
    """``--input-dtype`` on an ONNX graph's inputs: it names the type of an input the graph leaves
    undeclared, and must agree with a declared one (a graph's input types are fixed: feeding
    another type fails in onnxruntime; on framework sources the flag sets the exported type).

    Raises:
        ShapeBindingError: ``--input-dtype`` names an input the model does not have, or a type
            other than the declared one.
    """
    names = {s.name for s in specs}
    unknown = [name for name in bindings.dtypes if name is not None and name not in names]
    if unknown:
        raise ShapeBindingError(
            path,
            f"--input-dtype names {', '.join(unknown)}, not an input of the model "
            f"(inputs: {', '.join(sorted(names)) or 'none'})",
        )
    bound = []
    for spec in specs:
        dtype_name = bindings.dtypes.get(spec.name, bindings.dtypes.get(None))
        if dtype_name is None:
            bound.append(spec)
            continue
        wanted = DataType[dtype_name]
        if spec.elem_type not in (DataType.UNDEFINED, wanted):
            raise ShapeBindingError(
                path,
                f"input {spec.name} is declared {spec.elem_type.name}; --input-dtype {wanted.name} "
                "cannot change an ONNX graph's input type",
            )
        bound.append(InputSpec(spec.name, wanted, spec.dims))
    return tuple(bound)


def specs_from_bindings(bindings: Bindings) -> tuple[InputSpec, ...]:
    """The inputs ``--input-shape`` spells out in full (with ``--input-dtype``, FLOAT otherwise).

    What a framework export builds as its example inputs, known before any model is loaded: enough
    to size them with :func:`check_inputs_fit` (a bare shape is named ``input``).
    """
    specs = []
    for shape in bindings.shapes:
        name = shape.name or "input"
        dtype = bindings.dtypes.get(shape.name, bindings.dtypes.get(None, "FLOAT"))
        specs.append(InputSpec(name, DataType[dtype], shape.dims))
    return tuple(specs)


def input_specs(
    path: Path, bindings: Bindings | None = None, *, default_dim: int = 1
) -> tuple[InputSpec, ...]:
    """Every real graph input of ``path`` bound to concrete dims and a data type that can be generated.

    Dims are bound exactly as the memory measurement binds them
    (:func:`graph_analysis.runtime.measure.model_input_specs`: ``--input-shape``, then ``--dim``, then
    ``--batch``, then ``default_dim``); ``--input-dtype`` overrides the declared type.

    Raises:
        ShapeBindingError: a binding that does not fit, an input whose type cannot be generated,
            or inputs too large for the available memory (:func:`check_inputs_fit`).
        ModelFormatError: not an ONNX model, or an input that is not a plain tensor.
    """
    # Imported here: the measuring children import this module and must not load onnx.
    from graph_analysis.runtime.measure import model_input_specs

    bindings = bindings or Bindings()
    specs = []
    for spec in apply_input_dtypes(
        path, model_input_specs(path, bindings, default_dim=default_dim), bindings
    ):
        elem_type = spec.elem_type
        if elem_type not in _NUMPY or np.issubdtype(_NUMPY[elem_type], np.complexfloating):
            raise ShapeBindingError(
                path, f"input {spec.name}: cannot generate values of type {elem_type}"
            )
        specs.append(InputSpec(spec.name, elem_type, spec.dims))
    check_inputs_fit(path, specs)
    return tuple(specs)


def _standard_normal(
    rng: np.random.Generator, dims: tuple[int, ...], np_type: type[np.generic]
) -> np.ndarray:
    """Standard normal values made in ``np_type`` directly (no float64 array twice the size)."""
    if np_type is np.float32 or np_type is np.float64:
        return rng.standard_normal(dims, dtype=np_type)  # type: ignore[arg-type]
    out = np.empty(math.prod(dims), dtype=np_type)
    for start in range(0, out.size, _CHUNK):
        stop = min(out.size, start + _CHUNK)
        out[start:stop] = rng.standard_normal(stop - start, dtype=np.float32)
    return out.reshape(dims)


def make_feeds(
    specs: Sequence[InputSpec], *, seed: int = 0, int_high: int = 100, integer_ones: bool = False
) -> Mapping[str, np.ndarray]:
    """Reproducible values for the bound inputs.

    Values are made in the input's own type (never a float64 array cast afterwards, which would
    take twice the input's bytes at once). Floats (and complex numbers: the real part) are standard
    normal; booleans are True. Integer inputs are uniform
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
            feeds[spec.name] = _standard_normal(rng, spec.dims, np_type)
        elif np_type is np.bool_ or integer_ones or any(h in lowered for h in _ONES_HINTS):
            feeds[spec.name] = np.ones(spec.dims, dtype=np_type)
        elif any(h in lowered for h in _ZEROS_HINTS):
            feeds[spec.name] = np.zeros(spec.dims, dtype=np_type)
        else:
            high = min(int_high, int(np.iinfo(np_type).max) + 1)  # type: ignore[type-var]
            feeds[spec.name] = rng.integers(0, high, size=spec.dims, dtype=np_type)
    return feeds
