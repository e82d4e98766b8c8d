"""Shared by the framework converters: input specs, initializer matching, the final write."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from graph_analysis.bindings import Bindings, ShapeSpec
from graph_analysis.errors import SourceError
from graph_analysis.framework import (
    InitializerOrigin,
    TensorKind,
)

__all__ = [
    "TORCH_DTYPES",
    "DynamicAxis",
    "FrameworkTensorData",
    "InputSpec",
    "bindings_from_json",
    "bindings_to_json",
    "find_merged",
    "first_line",
    "import_user_code",
    "match_initializers",
]

# ONNX data type name -> torch dtype attribute, for the inputs the torch code is fed.
TORCH_DTYPES = {
    "FLOAT": "float32",
    "FLOAT16": "float16",
    "BFLOAT16": "bfloat16",
    "DOUBLE": "float64",
    "INT64": "int64",
    "INT32": "int32",
    "INT16": "int16",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # exporters colour their messages


def first_line(e: BaseException) -> str:
    """``Type: first line of the message``, colour codes removed, at most 400 characters."""
    text = _ANSI.sub("", str(e)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}"[:400] if first else type(e).__name__


def import_user_code(location: str, attr: str, source: str) -> Any:
    """Import ``file.py`` or ``package.module``; return its attribute ``attr`` (may be dotted).

    Runs the user's code: only for sources the user named.

    Raises:
        SourceError: the import failed, or the module has no such attribute.
    """
    try:
        if location.endswith(".py"):
            path = Path(location).resolve()
            # Sibling modules of the user's file import as they would when run as a script.
            sys.path.insert(0, str(path.parent))
            spec = importlib.util.spec_from_file_location(f"_modelsize_user_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise SourceError(source, "cannot import this file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(location)
    except SourceError:
        raise
    except Exception as e:  # user code: any exception on import is the source's problem
        raise SourceError(source, f"importing {location} failed: {first_line(e)}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SourceError(source, f"{location} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


class DynamicAxis(str, Enum):
    """Input axes the exported graph may keep symbolic (``--dynamic``)."""

    BATCH = "batch"
    """The first axis of every input."""
    SEQUENCE = "sequence"
    """The second axis of every integer (token id / mask) input of rank 2 or more."""


@dataclass(frozen=True)
class InputSpec:
    """One model input used for export: name, example dims, ONNX dtype name, symbolic axes."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "FLOAT"
    dynamic: Mapping[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (for the child-process protocol and the conversion result)."""
        return {
            "name": self.name,
            "dims": list(self.dims),
            "dtype": self.dtype,
            "dynamic": {str(k): v for k, v in self.dynamic.items()},
        }


def bindings_to_json(bindings: Bindings) -> dict[str, Any]:
    """Bindings as JSON for the child process."""
    return {
        "shapes": [[s.name, list(s.dims)] for s in bindings.shapes],
        "dims": dict(bindings.dims),
        "batch": bindings.batch,
        "dtypes": [[k, v] for k, v in bindings.dtypes.items()],
    }


def bindings_from_json(data: Mapping[str, Any]) -> Bindings:
    """Inverse of :func:`bindings_to_json`."""
    return Bindings(
        shapes=tuple(ShapeSpec(name, tuple(dims)) for name, dims in data.get("shapes", ())),
        dims=dict(data.get("dims", {})),
        batch=data.get("batch"),
        dtypes={k: v for k, v in data.get("dtypes", ())},
    )


def dynamic_axes_for(dims: Sequence[int], dtype: str, dynamic: Iterable[str]) -> dict[int, str]:
    """Which axes of an input of ``dims``/``dtype`` the user asked to keep symbolic."""
    axes: dict[int, str] = {}
    wanted = {DynamicAxis(d) for d in dynamic}
    if DynamicAxis.BATCH in wanted and len(dims) >= 1:
        axes[0] = "batch"
    is_integer = dtype.startswith(("INT", "UINT")) or dtype == "BOOL"
    if DynamicAxis.SEQUENCE in wanted and len(dims) >= 2 and is_integer:
        axes[1] = "sequence"
    return axes


@dataclass
class FrameworkTensorData:
    """A framework tensor as the converter sees it, with its values for content matching."""

    name: str
    kind: TensorKind
    trainable: bool
    values: np.ndarray
    module: str = ""
    aliases: tuple[str, ...] = ()
    layer_hint: str = ""
    used_in_forward: bool | None = None
    """Whether the forward on the example input read it (None: not known)."""

    @property
    def num_elements(self) -> int:
        return int(self.values.size)


def _digest(values: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(values).tobytes()).hexdigest()


def _hint_score(onnx_name: str, hint: str) -> int:
    if not hint:
        return 0
    # Keras 3 scopes repeat a layer name with a numeric suffix ("dense" -> "functional/dense_1/").
    return 1 if re.search(rf"(^|[/_.:]){re.escape(hint)}(_\d+)?([/:.]|$)", onnx_name) else 0


def match_initializers(
    initializers: Iterable[tuple[str, np.ndarray]],
    tensors: Sequence[FrameworkTensorData],
) -> dict[str, InitializerOrigin]:
    """Find which framework tensor each ONNX initializer holds.

    First by name (the framework name or one of its aliases, e.g. a tied weight's second name),
    then by content: the same values in the same shape, or the same multiset of values in another
    layout (a transposed copy, an HWIO kernel written OIHW). Among tensors with identical content
    (a fresh LayerNorm's all-ones weights), one whose layer name appears in the initializer name
    wins, then one not matched yet.

    Returns:
        ``{onnx_name: origin}`` for every initializer that holds a framework tensor.
    """
    by_alias: dict[str, FrameworkTensorData] = {}
    for t in tensors:
        t.values = canonical_values(t.values)
        for alias in (t.name, *t.aliases):
            by_alias.setdefault(alias, t)
    # Content keys are computed lazily, only for framework tensors as large as an initializer that
    # found no name match (sorting every weight of a large model would cost more than the export).
    by_size: dict[tuple[int, str], list[FrameworkTensorData]] = {}
    for t in tensors:
        by_size.setdefault((t.values.size, t.values.dtype.str), []).append(t)
    exact_keys: dict[int, str] = {}
    layout_keys: dict[int, str] = {}

    def exact_key(values: np.ndarray) -> str:
        return f"{values.shape}:{_digest(values)}"

    def layout_key(values: np.ndarray) -> str:
        return _digest(np.sort(values.reshape(-1), kind="stable"))

    result: dict[str, InitializerOrigin] = {}
    matched: set[str] = set()
    pending: list[tuple[str, np.ndarray]] = []
    for name, raw in initializers:
        values = canonical_values(raw)
        tensor = by_alias.get(name)
        if tensor is not None and _same_values(tensor.values, values):
            result[name] = InitializerOrigin(
                tensor.name, tensor.kind, tensor.trainable, tensor.values.shape != values.shape
            )
            matched.add(tensor.name)
        else:
            # No such name, or the exporter kept the name but changed the values (folded).
            pending.append((name, values))
    for name, values in pending:
        group = by_size.get((values.size, values.dtype.str), [])
        if values.size == 0 or not group:
            continue
        key = exact_key(values)
        candidates = [t for t in group if exact_keys.setdefault(id(t), exact_key(t.values)) == key]
        layout_changed = False
        if not candidates and values.ndim >= 1:
            key = layout_key(values)
            candidates = [
                t for t in group if layout_keys.setdefault(id(t), layout_key(t.values)) == key
            ]
            layout_changed = bool(candidates)
        if not candidates:
            continue
        best = max(
            candidates,
            key=lambda t: (_hint_score(name, t.layer_hint), t.name not in matched),
        )
        result[name] = InitializerOrigin(best.name, best.kind, best.trainable, layout_changed)
        matched.add(best.name)
    return result


def find_merged(
    tensors: Sequence[FrameworkTensorData], mapping: Mapping[str, InitializerOrigin]
) -> dict[str, str]:
    """Framework tensors the exporter stored only once because another has the same values.

    Returns:
        ``{framework name: ONNX initializer}`` for each framework tensor no initializer holds
        whose values equal (same shape) those of a tensor an initializer does hold.
    """
    held = {origin.framework_name: onnx_name for onnx_name, origin in mapping.items()}
    by_key: dict[tuple[Any, ...], str] = {}
    keys_needed = {(t.values.shape, t.values.dtype.str) for t in tensors if t.name not in held}
    for t in tensors:
        shape_key = (t.values.shape, t.values.dtype.str)
        if t.name in held and shape_key in keys_needed:
            by_key.setdefault((*shape_key, _digest(t.values)), held[t.name])
    merged: dict[str, str] = {}
    for t in tensors:
        if t.name not in held and t.values.size:
            onnx_name = by_key.get((t.values.shape, t.values.dtype.str, _digest(t.values)))
            if onnx_name is not None:
                merged[t.name] = onnx_name
    return merged


def canonical_values(values: np.ndarray) -> np.ndarray:
    """The array with types numpy does not know natively (bfloat16, float8, ...) seen as raw
    unsigned integers of the same width, so both sides of a comparison agree on the dtype."""
    if values.dtype.kind in "iub" or values.dtype.name in ("float16", "float32", "float64"):
        return values
    if values.dtype.name in ("complex64", "complex128"):
        return values
    return np.ascontiguousarray(values).view(f"u{values.dtype.itemsize}")


def _same_values(framework: np.ndarray, onnx_values: np.ndarray) -> bool:
    """Whether an initializer holds exactly the framework tensor's values (any layout)."""
    if framework.size != onnx_values.size or framework.dtype != onnx_values.dtype:
        return False
    if framework.shape == onnx_values.shape:
        return bool(np.array_equal(framework, onnx_values, equal_nan=framework.dtype.kind == "f"))
    return bool(np.array_equal(np.sort(framework.reshape(-1)), np.sort(onnx_values.reshape(-1))))
