"""TensorFlow/Keras to ONNX: Keras 3 ``.keras``, legacy ``.h5`` and SavedModel folders, via tf2onnx.

Runs inside the converter child process (``converters._child``); tensorflow, keras and tf2onnx are
imported inside the functions. Keras files load with ``safe_mode=True`` (a Lambda layer's
Python code is never run) and ``compile=False``. The model is converted through a
``tf.function`` with an input signature (``tf2onnx.convert.from_function``): ``from_keras``
fails on some Keras 3 models.

tf2onnx always runs TensorFlow's grappler constant folding and its own optimizers: BatchNorm is
folded into the preceding Conv, all-zero biases disappear. These changes are not prevented (turning
the optimizers off breaks conversions); they are recorded and reconciled element by element.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converters._child import report_progress
from converters._common import (
    FrameworkTensorData,
    InputSpec,
    bindings_from_json,
    first_line,
)
from converters._onnx_io import finish_export
from graph_analysis.bindings import Bindings
from graph_analysis.errors import ConversionError, ShapeBindingError, SourceError
from graph_analysis.framework import FrameworkTotals, TensorKind

__all__ = ["convert_tensorflow"]

# tf2onnx needs many times the model's weights in RAM (graph freezing, constant folding, protobuf).
_RAM_FACTOR = 20
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


def _load_keras(path: str, source: str) -> Any:
    import keras

    try:
        # safe_mode: a Lambda layer's pickled Python code is refused, never run.
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        text = str(e)
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


def _keras_tensors(model: Any) -> tuple[list[FrameworkTensorData], FrameworkTotals]:
    owners = _layer_of_weights(model)
    trainable_ids = {id(w) for w in model.trainable_weights}
    tensors: list[FrameworkTensorData] = []
    seen: set[int] = set()
    for w in model.weights:
        if id(w) in seen:
            continue
        seen.add(id(w))
        layer, cls = owners.get(id(w), ("", ""))
        tensors.append(
            FrameworkTensorData(
                name=str(getattr(w, "path", None) or w.name),
                kind=TensorKind.PARAMETER,
                trainable=id(w) in trainable_ids,
                values=np.asarray(w.numpy()),
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


def _variable_tensors(
    variables: Sequence[Any], trainable: Sequence[Any]
) -> tuple[list[FrameworkTensorData], FrameworkTotals]:
    def key(v: Any) -> str:
        return str(getattr(v, "path", None) or v.name).removesuffix(":0")

    trainable_names = {key(v) for v in trainable}
    unique: dict[str, Any] = {}
    for v in variables:
        unique.setdefault(key(v), v)
    # Without layer classes, a scope holding a moving_mean is taken to be a BatchNormalization.
    batchnorm_scopes = {n.rpartition("/")[0] for n in unique if n.endswith("moving_mean")}
    tensors: list[FrameworkTensorData] = []
    for name, v in unique.items():
        scope = name.rpartition("/")[0]
        tensors.append(
            FrameworkTensorData(
                name=name,
                kind=TensorKind.PARAMETER,
                trainable=name in trainable_names,
                values=np.asarray(v.numpy()),
                module="BatchNormalization" if scope in batchnorm_scopes else "",
                layer_hint=scope.rpartition("/")[2],
            )
        )
    total = sum(t.num_elements for t in tensors)
    train = sum(t.num_elements for t in tensors if t.trainable)
    return tensors, FrameworkTotals(total, train, total - train, 0)


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


def _check_memory(tensors: Sequence[FrameworkTensorData], source: str, notes: list[str]) -> None:
    weights = sum(int(t.values.nbytes) for t in tensors)
    needed = weights * _RAM_FACTOR
    available = _available_memory()
    if weights >= _LARGE_MODEL_BYTES:
        notes.append(
            f"large model: tf2onnx needs 10-30x the weights ({weights / 2**30:.2f} GiB) in RAM"
        )
    if available is not None and needed > available:
        raise ConversionError(
            source,
            f"tf2onnx would need about {needed / 2**30:.1f} GiB of RAM for "
            f"{weights / 2**30:.2f} GiB of weights; {available / 2**30:.1f} GiB is available",
        )


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
    out_path: str,
    bindings: dict[str, Any],
    dynamic: list[str],
) -> dict[str, Any]:
    """Load a Keras file or SavedModel, convert it with tf2onnx, record the framework's counts.

    Args:
        kind: ``keras``, ``keras_h5`` or ``saved_model`` (a ``SourceKind`` value).
        location: the file or folder.
        source: the user's argument, for messages.
        out_path: the ONNX file to write.
        bindings: ``bindings_to_json`` of the user's input description.
        dynamic: ``DynamicAxis`` values to keep symbolic.

    Raises:
        SourceError: the model cannot be loaded (a Lambda layer under safe mode, a damaged file).
        ShapeBindingError: the input description does not fit the model.
        ConversionError: tf2onnx failed, or would need more RAM than is available.
    """
    report_progress("importing TensorFlow")
    import tensorflow as tf

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf2onnx

    notes: list[str] = []
    parsed = bindings_from_json(bindings)
    report_progress("loading the model")
    if kind in ("keras", "keras_h5"):
        import keras

        model = _load_keras(location, source)
        framework, version = "keras", keras.__version__
        tensors, totals = _keras_tensors(model)
        try:
            model_inputs = list(model.inputs)
        except (AttributeError, ValueError) as e:
            raise SourceError(
                source, "the Keras model declares no inputs (a subclassed model never built)"
            ) from e
        declared = [
            (
                str(t.name).split(":")[0],
                tuple(None if d is None else int(d) for d in t.shape),
                _onnx_dtype(t.dtype),
            )
            for t in model_inputs
        ]
        specs = _resolve_specs(declared, parsed, dynamic)
        _check_keras_call(model, specs, source, tf)

        def call(*xs: Any) -> Any:
            return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    elif kind == "saved_model":
        try:
            loaded = tf.saved_model.load(location)
            signature = loaded.signatures["serving_default"]
        except KeyError as e:
            raise SourceError(source, "the SavedModel has no serving_default signature") from e
        except Exception as e:
            raise SourceError(source, f"cannot load this SavedModel: {first_line(e)}") from e
        framework, version = "tensorflow", tf.__version__
        # A Keras export records the layers' own trainable split (a frozen layer's variables stay
        # tf.Variable(trainable=True)); other SavedModels only have the variables' flags.
        recorded: Any = getattr(loaded, "trainable_variables", None)
        trainable = list(recorded if recorded is not None else signature.trainable_variables)
        tensors, totals = _variable_tensors(signature.variables, trainable)
        _, kw_specs = signature.structured_input_signature
        declared = [
            (
                name,
                tuple(None if d is None else int(d) for d in spec.shape),
                _onnx_dtype(spec.dtype),
            )
            for name, spec in sorted(kw_specs.items())
        ]
        specs = _resolve_specs(declared, parsed, dynamic)
        names = [s.name for s, _ in specs]

        def call(*xs: Any) -> Any:
            return signature(**dict(zip(names, xs, strict=True)))

    else:
        raise SourceError(source, f"not a TensorFlow source ({kind})")
    _check_memory(tensors, source, notes)
    input_signature = [
        tf.TensorSpec(sig, getattr(tf, _TF_DTYPES[s.dtype]), name=s.name) for s, sig in specs
    ]
    function = tf.function(call, input_signature=input_signature)
    report_progress("converting with tf2onnx")
    try:
        # large_model=True breaks on NumPy 2; models over 2 GiB fail here with a clear message.
        model_proto, _ = tf2onnx.convert.from_function(
            function, input_signature=input_signature, opset=_OPSET
        )
    except Exception as e:
        raise ConversionError(source, f"tf2onnx failed: {first_line(e)}") from e
    exporter = f"tf2onnx {tf2onnx.__version__} from_function (opset {_OPSET})"
    report_progress("recording framework counts")
    out = Path(out_path)
    with tempfile.TemporaryDirectory(
        prefix=f".modelsize-export-{os.getpid()}-", dir=out.parent
    ) as tmp:
        exported = Path(tmp) / "model.onnx"
        exported.write_bytes(model_proto.SerializeToString())
        del model_proto
        return finish_export(
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
