"""TensorFlow/Keras to ONNX: Keras 3 ``.keras``, legacy ``.h5`` and SavedModel folders, via tf2onnx.

Runs inside the converter child process (``converters._child``); tensorflow, keras and tf2onnx are
imported inside the functions. Keras files load with ``safe_mode=True`` (a Lambda layer's
Python code is never run) and ``compile=False``; custom classes come only from the module the user
names (``--custom-objects``). The model is converted through a ``tf.function`` with an input
signature (``tf2onnx.convert.from_function``): ``from_keras`` fails on some Keras 3 models.

Framework tensors are one per variable *object* (identity, never names: SavedModel variables often
share a name). :func:`summarize_tensorflow` gives the framework's own counts and per-layer table
without any export.

tf2onnx always runs TensorFlow's grappler constant folding and its own optimizers: BatchNorm is
folded into the preceding Conv, all-zero biases disappear. These changes are not prevented (turning
the optimizers off breaks conversions); they are recorded and reconciled element by element.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converters._child import report_progress
from converters._common import (
    FrameworkTensorData,
    InputSpec,
    bindings_from_json,
    first_line,
    import_user_code,
)
from converters._onnx_io import finish_export
from graph_analysis.bindings import Bindings
from graph_analysis.errors import (
    ConversionError,
    ShapeBindingError,
    SourceError,
    UnsupportedModelError,
)
from graph_analysis.framework import FrameworkTotals, TensorKind

__all__ = ["RAM_FACTOR", "convert_tensorflow", "custom_objects_from", "summarize_tensorflow"]

# Peak RAM of a tf2onnx conversion above the loaded model, per byte of weights (graph freezing,
# grappler constant folding, tf2onnx's graph and protobuf copies). Measured with
# benchmarks/bench_tf2onnx_memory.py (tf2onnx 1.17, TF 2.21): MLP 53x, MobileNet(alpha 0.25) 70x,
# MobileNetV2 67x, EfficientNetB0 74x; InceptionV3 reached 7.7 GB for 91 MiB of weights. The guard
# takes the largest measured factor with a margin.
RAM_FACTOR = 80
_LARGE_MODEL_BYTES = 256 * 1024 * 1024
_OPSET = 17
_TF_DTYPES = {
    "FLOAT": "float32",
    "FLOAT16": "float16",
    "DOUBLE": "float64",
    "INT64": "int64",
    "INT32": "int32",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}


# Keras 3 ("Could not locate class 'Scale'") and legacy .h5 ("Unknown layer: 'Scale'") messages.
_MISSING_CLASS = re.compile(
    r"Could not locate (?:class|function) '([^']+)'"
    r"|Unknown (?:layer|object|class)[^:']*: '?([\w.>]+)"
)
_CONFIG_MODULE = re.compile(r"'module': '([\w.]+)', 'class_name': '([^']+)'")


def custom_objects_from(spec: str, source: str) -> dict[str, Any]:
    """Import the user's module (``my_layers.py`` or ``package.module``) and return the classes
    and functions it defines, keyed by name, for ``keras.saving.load_model(custom_objects=...)``.

    Importing runs the module's code (and its ``register_keras_serializable`` decorators): only
    for a module the user named with ``--custom-objects``. Names it merely imports (``Dense``
    from ``keras.layers``) are left out, so they cannot stand in for Keras's own classes.

    Raises:
        SourceError: the import failed.
    """
    location = str(Path(spec).resolve()) if spec.endswith(".py") else spec
    namespace: dict[str, Any] = import_user_code(location, "__dict__", spec)
    module_name = namespace.get("__name__")
    return {
        name: obj
        for name, obj in namespace.items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module_name
    }


def _missing_class_message(e: BaseException, custom_objects: str | None) -> str | None:
    """The one line for a model that names a class Keras cannot find, or None."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # Keras colours its messages
    found = _MISSING_CLASS.search(text)
    if found is None:
        return None
    name = found.group(1) or found.group(2)
    short = name.rpartition(">")[2]
    module = next((m for m, c in _CONFIG_MODULE.findall(text) if c == short), None)
    where = f" (saved from module {module})" if module and not module.startswith("keras") else ""
    if custom_objects:
        return (
            f"the model uses the custom class {short!r}{where}, which {custom_objects} neither "
            "defines nor registers"
        )
    return (
        f"the model uses the custom class {short!r}{where}: pass the Python module that defines "
        "it with --custom-objects my_layers.py (or package.module); modelsize imports it, which "
        "runs its code"
    )


def _load_keras(path: str, source: str, custom_objects: str | None) -> Any:
    import keras

    objects = custom_objects_from(custom_objects, source) if custom_objects else None
    try:
        # safe_mode: a Lambda layer's pickled Python code is refused, never run. Classes from
        # --custom-objects are code the user named; safe_mode stays on for everything else.
        return keras.saving.load_model(path, compile=False, safe_mode=True, custom_objects=objects)
    except Exception as e:
        text = str(e)
        missing = _missing_class_message(e, custom_objects)
        if missing is not None:
            raise SourceError(source, missing) from e
        if "safe_mode" in text or "Lambda" in text:
            raise SourceError(
                source,
                "the model holds Python code (a Lambda layer); modelsize loads Keras files with "
                "safe_mode=True and does not run it",
            ) from e
        raise SourceError(source, f"cannot load this Keras model: {first_line(e)}") from e


def _layer_of_weights(model: Any) -> dict[int, tuple[str, str]]:
    """id(weight) -> (innermost layer name, layer class) for naming and cause hints."""
    owners: dict[int, tuple[str, str]] = {}
    try:
        layers = list(model._flatten_layers(include_self=False, recursive=True))
    except (AttributeError, TypeError):
        layers = list(getattr(model, "layers", ()))
    # Outer layers first, so the innermost owner wins.
    for layer in layers:
        for w in getattr(layer, "weights", ()):
            owners[id(w)] = (str(layer.name), type(layer).__name__)
    return owners


def _compute_dtypes(model: Any) -> dict[int, str]:
    """id(weight) -> the dtype its layer computes in, for weights of mixed-precision layers
    (``mixed_float16``: float32 variables read as float16 copies, which tf2onnx folds into
    float16 initializers)."""
    try:
        layers = list(model._flatten_layers(include_self=True, recursive=True))
    except (AttributeError, TypeError):
        layers = [model, *getattr(model, "layers", ())]
    result: dict[int, str] = {}
    for layer in layers:
        policy = getattr(layer, "dtype_policy", None)
        compute = str(getattr(policy, "compute_dtype", "") or "")
        variable = str(getattr(policy, "variable_dtype", "") or "")
        if compute and variable and compute != variable:
            for w in getattr(layer, "weights", ()):
                if getattr(w, "autocast", True) and str(w.dtype) == variable:
                    result[id(w)] = compute
    return result


def _keras_tensors(model: Any) -> tuple[list[FrameworkTensorData], FrameworkTotals]:
    owners = _layer_of_weights(model)
    # Matched by content against the graph: a mixed-precision weight as the copy the layer reads.
    compute = _compute_dtypes(model)
    trainable_ids = {id(w) for w in model.trainable_weights}
    unique: list[Any] = []
    seen: set[int] = set()
    for w in model.weights:  # a shared layer's weights appear once per use
        if id(w) not in seen:
            seen.add(id(w))
            unique.append(w)
    tensors: list[FrameworkTensorData] = []
    for name, w in zip(_unique_names(unique, {}), unique, strict=True):
        layer, cls = owners.get(id(w), ("", ""))
        values = np.asarray(w.numpy())
        if id(w) in compute:
            values = values.astype(compute[id(w)])
        tensors.append(
            FrameworkTensorData(
                name=name,
                kind=TensorKind.PARAMETER,
                trainable=id(w) in trainable_ids,
                values=values,
                module=cls,
                layer_hint=layer,
            )
        )
    total = int(model.count_params())
    trainable = sum(t.num_elements for t in tensors if t.trainable)
    counted = sum(t.num_elements for t in tensors)
    if counted != total:
        raise ConversionError(None, f"Keras count_params() {total} != sum of weights {counted}")
    return tensors, FrameworkTotals(total, trainable, total - trainable, 0)


def _keras_layer_rows(model: Any) -> list[dict[str, Any]]:
    """The framework's per-layer table of a Keras model, like ``model.summary()``: the root model
    (depth 0), then every layer in the model's order with its sublayers (a nested model's layers,
    a MultiHeadAttention's projections) under it, named as the user knows them
    (``backbone/conv``). Counts are each layer's OWN weights; a weight used by several layers (a
    shared layer, a shared variable) counts once, at the first layer holding it, so the rows sum
    to ``count_params()``. Rows are JSON objects in the ``FrameworkLayer`` schema of
    ``graph_analysis.framework`` (``framework_summary_to_dict``)."""
    effective = {id(w) for w in model.trainable_weights}
    seen: set[int] = set()
    rows: list[dict[str, Any]] = []

    def sublayers(layer: Any) -> list[Any]:
        try:
            return list(layer._flatten_layers(include_self=False, recursive=False))
        except (AttributeError, TypeError):
            return list(getattr(layer, "layers", ()))

    def owned(layer: Any) -> list[Any]:
        inner = {id(w) for sub in sublayers(layer) for w in getattr(sub, "weights", ())}
        return [w for w in getattr(layer, "weights", ()) if id(w) not in inner]

    def visit(layer: Any, name: str, depth: int) -> None:
        # Weights created trainable (in the layer's trainable list) but not trainable in the
        # model were frozen by the user; weights created non-trainable (BatchNorm moving
        # statistics, counters) are non-trainable by nature, not frozen.
        created_trainable = {id(w) for w in getattr(layer, "_trainable_variables", ())}
        params = trainable = frozen = 0
        for w in owned(layer):
            if id(w) in seen:
                continue
            seen.add(id(w))
            n = int(np.prod(w.shape))
            params += n
            if id(w) in effective:
                trainable += n
            elif id(w) in created_trainable:
                frozen += n
        rows.append(
            {
                "name": name,
                "type": type(layer).__name__,
                "depth": depth,
                "parameters": params,
                "trainable": trainable,
                "frozen": frozen,
                "buffers": 0,
                "output_shape": _keras_output_shape(layer) if depth else "",
            }
        )
        for sub in sublayers(layer):
            if type(sub).__name__ == "InputLayer":
                continue
            visit(sub, f"{name}/{sub.name}" if name else str(sub.name), depth + 1)

    visit(model, "", 0)
    return rows


def _keras_output_shape(layer: Any) -> str:
    """The symbolic output shape(s) Keras knows for a layer (``(None, 8, 8, 4)``, as
    ``model.summary()`` shows them), the distinct ones of every call of a shared layer joined by
    ``"; "``; ``""`` for a layer never called symbolically (a subclassed model's layers)."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    outputs = [t for node in nodes for t in getattr(node, "output_tensors", ())]
    if not outputs:
        try:
            output = layer.output
        except (AttributeError, ValueError, RuntimeError):
            return ""
        outputs = list(output) if isinstance(output, (list, tuple)) else [output]
    shapes = list(dict.fromkeys(str(tuple(getattr(t, "shape", ()))) for t in outputs))
    return "; ".join(shapes[:4]) + ("; ..." if len(shapes) > 4 else "")


def _scope_rows(tensors: Sequence[FrameworkTensorData]) -> list[dict[str, Any]]:
    """A SavedModel's per-layer table from its variables' scopes (no layer objects survive the
    export): ``block/conv/kernel`` -> rows ``block`` and ``block/conv``, pre-order, own counts."""
    rows: dict[str, dict[str, Any]] = {}
    order: dict[str, int] = {"": 0}

    def row(name: str, depth: int) -> dict[str, Any]:
        order.setdefault(name, len(order))
        return rows.setdefault(
            name,
            {
                "name": name,
                "type": "",
                "depth": depth,
                "parameters": 0,
                "trainable": 0,
                "frozen": 0,
                "buffers": 0,
                "output_shape": "",
            },
        )

    root = row("", 0)
    root["type"] = "SavedModel"
    for t in tensors:
        parts = t.name.split("/")[:-1]
        for d in range(1, len(parts) + 1):
            row("/".join(parts[:d]), d)
        target = rows["/".join(parts)] if parts else root
        if t.module and not target["type"]:
            target["type"] = t.module
        target["parameters"] += t.num_elements
        target["trainable"] += t.num_elements if t.trainable else 0

    def key(name: str) -> tuple[int, ...]:
        parts = name.split("/") if name else []
        return tuple(order["/".join(parts[: d + 1])] for d in range(len(parts)))

    return [rows[n] for n in sorted(rows, key=key)]


def _summary(
    framework: str, version: str, model_type: str, totals: FrameworkTotals, rows: list[Any]
) -> dict[str, Any]:
    """JSON in the schema of ``graph_analysis.framework.framework_summary_to_dict``."""
    return {
        "name": framework,
        "version": version,
        "model_type": model_type,
        "total": totals.total,
        "trainable": totals.trainable,
        "non_trainable": totals.non_trainable,
        "buffers": totals.buffers,
        "layers": rows,
    }


def summarize_tensorflow(
    *, kind: str, location: str, source: str, custom_objects: str | None = None
) -> dict[str, Any]:
    """The framework's own answer about a Keras file or SavedModel, without any export.

    :func:`convert_tensorflow` with ``export=False``, its ``summary`` only. Counts the model the
    way the framework does: totals (``count_params()``, the trainable weights; BatchNorm moving
    statistics are non-trainable, not frozen) and the per-layer table
    (:func:`_keras_layer_rows`; for a SavedModel, rows by variable scope). Fast: no tracing, no
    tf2onnx.

    Returns:
        ``framework_summary_to_dict`` JSON: ``name``, ``version``, ``model_type``, ``total``,
        ``trainable``, ``non_trainable``, ``buffers`` and ``layers``.

    Raises:
        SourceError: the model cannot be loaded.
    """
    answer = convert_tensorflow(
        kind=kind,
        location=location,
        source=source,
        out_path=None,
        bindings={},
        dynamic=[],
        custom_objects=custom_objects,
        export=False,
    )
    summary: dict[str, Any] = answer["summary"]
    return summary


def _object_paths(root: Any, tf: Any) -> dict[int, str]:
    """id(variable) -> its path in the SavedModel's object graph (``a``, ``encoder/w``), breadth
    first so the shortest path wins. Paths name variables that have no distinct name of their own
    (a ``tf.Module``'s unnamed ``tf.Variable``s are all ``Variable:0``)."""
    paths: dict[int, str] = {}
    seen = {id(root)}
    todo: list[tuple[Any, str]] = [(root, "")]
    while todo:
        obj, prefix = todo.pop(0)
        try:
            children = tf.train.TrackableView(obj).children(obj)
        except Exception:  # an object the view cannot walk: its variables keep their names
            continue
        for name, child in children.items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}/{name}" if prefix else str(name)
            if isinstance(child, tf.Variable):
                paths[id(child)] = path
            else:
                todo.append((child, path))
    return paths


def _unique_names(variables: Sequence[Any], paths: Mapping[int, str]) -> list[str]:
    """A distinct name per variable: its own name where no other variable has it; else its
    object-graph path when that says more than a list position (``a``, not ``variables/3``);
    else the name with a Keras-style ``_N`` suffix, in capture order."""
    names = [str(getattr(v, "path", None) or v.name).removesuffix(":0") for v in variables]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    taken = {n for n in names if counts[n] == 1}
    result: list[str] = []
    suffixes: dict[str, int] = {}
    for v, name in zip(variables, names, strict=True):
        if counts[name] == 1:
            result.append(name)
            continue
        path = paths.get(id(v), "")
        if path and not path.rpartition("/")[2].isdigit() and path not in taken:
            chosen = path
        else:
            k = suffixes.get(name, 0)
            chosen = name if k == 0 and name not in taken else f"{name}_{k}"
            while chosen in taken:
                k += 1
                chosen = f"{name}_{k}"
            suffixes[name] = k + 1
        taken.add(chosen)
        result.append(chosen)
    return result


_BATCHNORM_WEIGHTS = frozenset({"gamma", "beta", "moving_mean", "moving_variance"})


def _leaf(name: str) -> str:
    """The variable's own name without the ``_N`` suffix of :func:`_unique_names`."""
    return re.sub(r"_\d+$", "", name.rpartition("/")[2])


def _variable_tensors(
    variables: Sequence[Any], trainable: Sequence[Any], paths: Mapping[int, str]
) -> tuple[list[FrameworkTensorData], FrameworkTotals]:
    """The framework tensors of a SavedModel signature, one per captured variable *object*.

    Variables are told apart by identity, never by name: a subclassed Keras model exported with
    ``model.export()`` names every Dense kernel ``<model>/kernel:0``, and two unnamed
    ``tf.Variable``s are both ``Variable:0``.
    """
    trainable_ids = {id(v) for v in trainable}
    unique: list[Any] = []
    seen: set[int] = set()
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    names = _unique_names(unique, paths)
    # Without layer classes, a scope holding a moving_mean is taken to hold a BatchNormalization,
    # and its gamma/beta/moving statistics to be that layer's (a subclassed model's export puts
    # every variable in one scope: its kernels are not BatchNorm's).
    batchnorm_scopes = {n.rpartition("/")[0] for n in names if _leaf(n) == "moving_mean"}
    tensors: list[FrameworkTensorData] = []
    for name, v in zip(names, unique, strict=True):
        scope = name.rpartition("/")[0]
        is_batchnorm = scope in batchnorm_scopes and _leaf(name) in _BATCHNORM_WEIGHTS
        tensors.append(
            FrameworkTensorData(
                name=name,
                kind=TensorKind.PARAMETER,
                trainable=id(v) in trainable_ids,
                values=np.asarray(v.numpy()),
                module="BatchNormalization" if is_batchnorm else "",
                layer_hint=scope.rpartition("/")[2],
            )
        )
    total = sum(t.num_elements for t in tensors)
    train = sum(t.num_elements for t in tensors if t.trainable)
    return tensors, FrameworkTotals(total, train, total - train, 0)


def _keras_inputs(
    model: Any, source: str, notes: list[str]
) -> list[tuple[str, tuple[int | None, ...], str]]:
    """(name, dims with None unknown, ONNX dtype) per declared input of a Keras model.

    A subclassed model has no symbolic inputs; its saved build config (the shape it was first
    called with) stands in, with the first axis taken as the batch.
    """
    try:
        return [
            (
                str(t.name).split(":")[0],
                tuple(None if d is None else int(d) for d in t.shape),
                _onnx_dtype(t.dtype),
            )
            for t in model.inputs
        ]
    except (AttributeError, ValueError):
        pass
    config = model.get_build_config() if hasattr(model, "get_build_config") else None
    shape = (config or {}).get("input_shape")
    if not isinstance(shape, (list, tuple)) or not all(
        d is None or isinstance(d, int) for d in shape
    ):
        raise SourceError(
            source,
            "the Keras model declares no inputs and no single built input shape (a subclassed "
            "model never called, or one with several inputs)",
        )
    dims = (None, *(None if d is None else int(d) for d in shape[1:])) if shape else ()
    notes.append(
        f"subclassed Keras model: input shape {_show(dims)} from the shape it was built with"
    )
    return [("input", dims, "FLOAT")]


def _mixed_precision_notes(model: Any) -> list[str]:
    """A note when layers compute in another dtype than their variables (``mixed_float16``)."""
    try:
        layers = list(model._flatten_layers(include_self=True, recursive=True))
    except (AttributeError, TypeError):
        layers = [model, *getattr(model, "layers", ())]
    mixed: dict[str, int] = {}
    for layer in layers:
        policy = getattr(layer, "dtype_policy", None)
        compute = getattr(policy, "compute_dtype", None)
        variable = getattr(policy, "variable_dtype", None)
        if compute and variable and compute != variable and layer.weights:
            key = f"{getattr(policy, 'name', compute)}"
            mixed[key] = mixed.get(key, 0) + 1
    if not mixed:
        return []
    variable_bytes = _variable_bytes(model.weights)
    policies = ", ".join(f"{name} ({n} layers)" for name, n in mixed.items())
    return [
        f"mixed precision {policies}: Keras keeps the variables in float32 ({variable_bytes:,} "
        "bytes, the master weights training updates) and computes in float16; the exported graph "
        "holds the float16 copies the computation reads, so its sizes are those of inference in "
        "float16, not of the Keras model in memory"
    ]


def _load_saved_model(location: str, source: str, tf: Any) -> tuple[Any, Any]:
    """The loaded SavedModel and its ``serving_default`` signature."""
    try:
        loaded = tf.saved_model.load(location)
        return loaded, loaded.signatures["serving_default"]
    except KeyError as e:
        raise SourceError(source, "the SavedModel has no serving_default signature") from e
    except Exception as e:
        raise SourceError(source, f"cannot load this SavedModel: {first_line(e)}") from e


def _saved_model_tensors(
    loaded: Any, signature: Any, tf: Any
) -> tuple[list[FrameworkTensorData], FrameworkTotals]:
    # A Keras export records the layers' own trainable split (a frozen layer's variables stay
    # tf.Variable(trainable=True)); other SavedModels only have the variables' flags.
    recorded: Any = getattr(loaded, "trainable_variables", None)
    trainable = list(recorded if recorded is not None else signature.trainable_variables)
    return _variable_tensors(signature.variables, trainable, _object_paths(loaded, tf))


def _resolve_specs(
    declared: Sequence[tuple[str, tuple[int | None, ...], str]],
    bindings: Bindings,
    dynamic: Sequence[str],
) -> list[tuple[InputSpec, tuple[int | None, ...]]]:
    """(spec with concrete example dims, signature dims with None kept symbolic) per input."""
    given: dict[str, tuple[int, ...]] = {}
    for spec in bindings.shapes:
        if spec.name is None:
            if len(declared) != 1:
                names = ", ".join(d[0] for d in declared)
                raise ShapeBindingError(None, f"the model has several inputs ({names}): name them")
            given[declared[0][0]] = spec.dims
        elif spec.name not in {d[0] for d in declared}:
            names = ", ".join(d[0] for d in declared)
            raise ShapeBindingError(
                None, f"the model has no input {spec.name!r}; its inputs: {names}"
            )
        else:
            given[spec.name] = spec.dims
    result: list[tuple[InputSpec, tuple[int | None, ...]]] = []
    for name, dims, declared_dtype in declared:
        dtype = bindings.dtypes.get(name, bindings.dtypes.get(None, declared_dtype))
        if dtype not in _TF_DTYPES:
            raise ShapeBindingError(None, f"--input-dtype {dtype} is not supported for TensorFlow")
        if name in given:
            example = given[name]
            if len(example) != len(dims) or any(
                d is not None and d != e for d, e in zip(dims, example, strict=False)
            ):
                raise ShapeBindingError(
                    None, f"input {name} has shape {_show(dims)}; {example} does not fit it"
                )
            signature: tuple[int | None, ...] = tuple(example)
        else:
            if any(d is None for d in dims[1:]):
                raise ShapeBindingError(
                    None, f"input {name} has unknown dims {_show(dims)}: give --input-shape"
                )
            first = bindings.batch or 1
            example = tuple(first if d is None else d for d in dims)
            signature = tuple(dims)
        axes: dict[int, str] = {}
        if "batch" in dynamic and signature:
            axes[0] = "batch"
        if "sequence" in dynamic and len(signature) >= 2 and not dtype.startswith("FLOAT"):
            axes[1] = "sequence"
        signature = tuple(None if i in axes else d for i, d in enumerate(signature))
        if signature and signature[0] is None:
            axes.setdefault(0, "batch")
        result.append((InputSpec(name, tuple(int(e) for e in example), dtype, axes), signature))
    return result


def _show(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _onnx_dtype(tf_dtype: Any) -> str:
    name = str(getattr(tf_dtype, "name", tf_dtype))
    reverse = {v: k for k, v in _TF_DTYPES.items()}
    return reverse.get(name, "FLOAT")


def _variable_bytes(variables: Iterable[Any]) -> int:
    """Bytes of the variables in their own dtype (float32 master weights of a mixed model)."""
    total = 0
    seen: set[int] = set()
    for v in variables:
        if id(v) in seen:
            continue
        seen.add(id(v))
        name = str(getattr(v.dtype, "name", v.dtype))
        bits = re.search(r"\d+$", name)
        itemsize = 1 if name == "bool" else (int(bits.group()) // 8 if bits else 4)
        total += int(np.prod(v.shape)) * itemsize
    return total


def _check_memory(weights: int, source: str, notes: list[str]) -> None:
    """Refuse before tf2onnx runs when the machine cannot hold its measured peak for ``weights``
    bytes of variables (exit 2), rather than let the kernel kill the conversion after minutes."""
    needed = weights * RAM_FACTOR
    available = _available_memory()
    if weights >= _LARGE_MODEL_BYTES:
        notes.append(
            f"large model: tf2onnx needs about {RAM_FACTOR}x the weights in RAM "
            f"({_binary(weights)} of weights: about {_binary(needed)})"
        )
    if available is not None and needed > available:
        raise UnsupportedModelError(
            source,
            f"converting with tf2onnx needs about {_binary(needed)} of RAM ({RAM_FACTOR}x the "
            f"{_binary(weights)} of weights, measured) and {_binary(available)} is available: "
            "run it on a machine with more memory",
        )


def _binary(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def convert_tensorflow(
    *,
    kind: str,
    location: str,
    source: str,
    out_path: str | None,
    bindings: dict[str, Any],
    dynamic: list[str],
    custom_objects: str | None = None,
    export: bool = True,
) -> dict[str, Any]:
    """Load a Keras file or SavedModel, count it, convert it with tf2onnx; return JSON.

    The framework's answer (``summary``: ``framework_summary_to_dict`` JSON, totals and per-layer
    table) is computed before any conversion and returned even when tf2onnx fails: then
    ``export_error`` holds its one-line reason and no file is written.

    Args:
        kind: ``keras``, ``keras_h5`` or ``saved_model`` (a ``SourceKind`` value).
        location: the file or folder.
        source: the user's argument, for messages.
        out_path: the ONNX file to write (unused when ``export`` is False).
        bindings: ``bindings_to_json`` of the user's input description.
        dynamic: ``DynamicAxis`` values to keep symbolic.
        custom_objects: ``my_layers.py`` or ``package.module`` defining the custom classes a
            Keras file needs (imported: its code runs), or None.
        export: False answers from the framework only: no call, no tracing, no tf2onnx.

    Returns:
        ``summary``, ``framework`` (counts), ``inputs``, ``notes``; after a conversion also
        ``onnx_path``, ``exporter``, ``fallback_reason``, or ``export_error`` when tf2onnx failed.

    Raises:
        SourceError: the model cannot be loaded (a Lambda layer under safe mode, a custom class
            not supplied, a damaged file).
        ShapeBindingError: the input description does not fit the model.
        UnsupportedModelError: tf2onnx would need more RAM than is available (measured factor).
    """
    report_progress("importing TensorFlow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    notes: list[str] = []
    parsed = bindings_from_json(bindings)
    report_progress("loading the model")
    if kind in ("keras", "keras_h5"):
        import keras

        model = _load_keras(location, source, custom_objects)
        framework, version = "keras", keras.__version__
        tensors, totals = _keras_tensors(model)
        weight_bytes = _variable_bytes(model.weights)
        summary = _summary(
            framework, version, type(model).__name__, totals, _keras_layer_rows(model)
        )
        notes.extend(_mixed_precision_notes(model))
        declared = _keras_inputs(model, source, notes)

        def call(*xs: Any) -> Any:
            return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    elif kind == "saved_model":
        loaded, signature = _load_saved_model(location, source, tf)
        framework, version = "tensorflow", tf.__version__
        tensors, totals = _saved_model_tensors(loaded, signature, tf)
        weight_bytes = sum(int(t.values.nbytes) for t in tensors)
        summary = _summary(framework, version, "SavedModel", totals, _scope_rows(tensors))
        _, kw_specs = signature.structured_input_signature
        declared = [
            (
                name,
                tuple(None if d is None else int(d) for d in spec.shape),
                _onnx_dtype(spec.dtype),
            )
            for name, spec in sorted(kw_specs.items())
        ]
        names = sorted(kw_specs)

        def call(*xs: Any) -> Any:
            return signature(**dict(zip(names, xs, strict=True)))

    else:
        raise SourceError(source, f"not a TensorFlow source ({kind})")
    result: dict[str, Any] = {
        "summary": summary,
        "framework": {k: summary[k] for k in _COUNT_KEYS},
        "inputs": [],
        "notes": notes,
    }
    if not export:
        return result
    specs = _resolve_specs(declared, parsed, dynamic)
    result["inputs"] = [s.to_json() for s, _ in specs]
    if kind != "saved_model":
        _check_keras_call(model, specs, source, tf)
    _check_memory(weight_bytes, source, notes)
    report_progress("converting with tf2onnx")
    import tf2onnx

    input_signature = [
        tf.TensorSpec(sig, getattr(tf, _TF_DTYPES[s.dtype]), name=s.name) for s, sig in specs
    ]
    function = tf.function(call, input_signature=input_signature)
    try:
        # large_model=True breaks on NumPy 2; models over 2 GiB fail here with a clear message.
        model_proto, _ = tf2onnx.convert.from_function(
            function, input_signature=input_signature, opset=_OPSET
        )
    except Exception as e:
        # The framework counted what it built: that answer stands without a graph.
        result["export_error"] = f"tf2onnx failed: {first_line(e)}"
        return result
    exporter = f"tf2onnx {tf2onnx.__version__} from_function (opset {_OPSET})"
    report_progress("recording framework counts")
    assert out_path is not None
    out = Path(out_path)
    with tempfile.TemporaryDirectory(
        prefix=f".modelsize-export-{os.getpid()}-", dir=out.parent
    ) as tmp:
        exported = Path(tmp) / "model.onnx"
        exported.write_bytes(model_proto.SerializeToString())
        del model_proto
        written = finish_export(
            exported,
            out,
            tensors,
            framework=framework,
            version=version,
            exporter=exporter,
            fallback_reason=None,
            totals=totals,
            inputs=[s for s, _ in specs],
            notes=notes,
        )
    return {**written, "summary": summary}


_COUNT_KEYS = ("name", "version", "total", "trainable", "non_trainable", "buffers")


def _check_keras_call(
    model: Any, specs: Sequence[tuple[InputSpec, tuple[int | None, ...]]], source: str, tf: Any
) -> None:
    report_progress("checking the model on the example input")
    inputs = [tf.zeros(s.dims, dtype=getattr(tf, _TF_DTYPES[s.dtype])) for s, _ in specs]
    shapes = ", ".join(f"{s.name} {tuple(s.dims)} {s.dtype}" for s, _ in specs)
    try:
        model(inputs if len(inputs) > 1 else inputs[0], training=False)
    except Exception as e:
        raise ShapeBindingError(
            source, f"the model rejects the input ({shapes}): {first_line(e)}"
        ) from e
