"""int8 / fp16 / int4 variants of an ONNX model with onnxruntime's quantization tools.

The pipeline around the quantizer is what makes it work on graphs as exporters write them:
Constant-node weights are lifted into initializers, subgraphs (If/Loop/Scan) are quantized
(``EnableSubgraph``), shapes are inferred when possible, every intermediate file is written with
external data (so models over 2 GB pass), weights the quantizer cannot reach are stored as INT8
behind a DequantizeLinear, and the result is loaded and run once in onnxruntime before it replaces
the output path atomically. When generated inputs cannot run the original model (dynamic dims left
at 1 that the graph cannot take), the methods that need no data (dynamic, fp16, int4) still write
the variant and report it as not verified, with the flags that would verify it; static calibration,
which needs inputs that run, refuses. The input is never written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings as py_warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from converters._graph_prep import (
    FLOAT32_TYPES,
    FloatTensor,
    GraphMakeup,
    bypass_weight_identities,
    dequantize_linear_fallback,
    float_tensors,
    graph_makeup,
    iter_graphs,
    lift_constants,
    prune_unused_initializers,
    quantized_op_counts,
    shared_gathers,
)
from converters._output import check_output_path, publish, work_folder
from converters.sources import SourceKind, convert_source, detect_source
from graph_analysis._weights import ModelWeights, file_bytes, read_weights
from graph_analysis.bindings import Bindings
from graph_analysis.dtypes import DataType
from graph_analysis.errors import (
    AlreadyQuantizedError,
    ConversionError,
    ExternalDataError,
    InputError,
    ModelFormatError,
    OutputPathError,
    ShapeBindingError,
    UnsupportedModelError,
)
from graph_analysis.loading import load_skeleton, read_model, require_external_data
from graph_analysis.runtime._feeds import InputSpec, describe_specs, input_specs, make_feeds

__all__ = [
    "FallbackTensor",
    "FloatTensor",
    "GraphMakeup",
    "QuantMethod",
    "QuantizationResult",
    "Recommendation",
    "quantize_model",
    "quantize_source",
    "recommend_method",
]

_ALL_FLOATS = frozenset({DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16})
# A protobuf message cannot exceed 2 GiB; above this many tensor bytes the output gets external data.
_EXTERNAL_DATA_BYTES = 1800 * 1024 * 1024


class QuantMethod(str, Enum):
    """How the variant is made.

    DYNAMIC: INT8 weights, activations quantized at run time (MatMulInteger/ConvInteger).
    STATIC: INT8 weights and activations in QDQ form, activation ranges from calibration inputs.
    FP16: weights and compute in FLOAT16, graph inputs/outputs kept FLOAT unless asked.
    INT4: 4-bit block-quantized weights for MatMul (MatMulNBits) and embedding Gathers
        (GatherBlockQuantized), weight-only.
    AUTO: pick by what the graph is made of (see :func:`recommend_method`).
    """

    DYNAMIC = "dynamic"
    STATIC = "static"
    FP16 = "fp16"
    INT4 = "int4"
    AUTO = "auto"


@dataclass(frozen=True)
class Recommendation:
    """The method suited to a graph, why, and the counted makeup it was chosen from."""

    method: QuantMethod
    reason: str
    makeup: GraphMakeup


@dataclass(frozen=True)
class FallbackTensor:
    """A weight the quantizer could not reach, stored as INT8 behind a DequantizeLinear.

    ``float_bytes`` is what it took before and what it still takes at run time (transient: it is
    dequantized on every run); ``int8_bytes`` is what it takes in the file and as a resident weight.
    """

    name: str
    num_elements: int
    float_bytes: int
    int8_bytes: int


@dataclass(frozen=True)
class QuantizationResult:
    """What :func:`quantize_model` wrote and what it could not do.

    Attributes:
        source: the input model (never written).
        output: the variant written.
        method: the method used (AUTO resolved).
        per_channel: whether weights were quantized per output channel.
        source_bytes: counted bytes of the input (file plus external data).
        output_bytes: counted bytes of the variant (file plus external data).
        external_data: whether the variant's tensors are in ``<output>.data``.
        lifted_constants: Constant-node weights moved into initializers first.
        bypassed_identities: Identity nodes between a weight and its readers removed first.
        quantized_ops: op-type counts of quantized ops in the variant.
        float_tensors: weights left in a floating type (largest first), with the reason.
        fallback_tensors: weights stored as INT8 behind DequantizeLinear by the fallback.
        recommendation: the method suited to this graph (may differ from ``method``).
        warnings: trade-offs and problems worth telling the user, one sentence each.
        verified: True when the variant ran once in onnxruntime on generated inputs (the original
            ran on them too); False when it was only loaded, because those inputs do not run
            the original model (dynamic dims left at 1 that the graph cannot take, for example).
        verified_reason: what the check ran on, or why it could not run and which flags would
            let it run.
        converted_from: the framework source ``source`` was exported from first, else None.
    """

    source: Path
    output: Path
    method: QuantMethod
    per_channel: bool
    source_bytes: int
    output_bytes: int
    external_data: bool
    lifted_constants: int
    bypassed_identities: int
    quantized_ops: Mapping[str, int]
    float_tensors: tuple[FloatTensor, ...]
    fallback_tensors: tuple[FallbackTensor, ...]
    recommendation: Recommendation
    warnings: tuple[str, ...]
    verified: bool
    verified_reason: str
    converted_from: str | None = None

    @property
    def size_ratio(self) -> float:
        """Output bytes / source bytes."""
        return self.output_bytes / self.source_bytes if self.source_bytes else float("nan")

    @property
    def is_smaller(self) -> bool:
        """True when the variant takes fewer bytes than the source."""
        return self.output_bytes < self.source_bytes


def recommend_method(makeup: GraphMakeup, *, conv_share: float = 0.5) -> Recommendation:
    """Recommend a method from the share of weight bytes each kind of op reads.

    Conv-dominated graphs get STATIC: dynamic int8 turns Conv into ConvInteger, which onnxruntime
    runs several times slower than float Conv (measured 6x on ResNet-50, 2 threads), while QDQ
    keeps float speed. MatMul/Gemm, recurrent and embedding-dominated graphs get DYNAMIC: as small,
    faster than float (BERT-base measured 3x) and no calibration inputs needed.

    Args:
        makeup: counted weight bytes by consumer kind (:func:`converters._graph_prep.graph_makeup`).
        conv_share: the share of float weight bytes read by Conv above which STATIC is recommended.
    """
    total = makeup.total_bytes or 1
    if makeup.conv_bytes / total >= conv_share:
        reason = (
            f"{makeup.conv_bytes / total:.0%} of the weight bytes are Conv weights: dynamic int8 runs "
            "them as ConvInteger, several times slower than float; static QDQ keeps float speed "
            "(needs calibration inputs)"
        )
        return Recommendation(QuantMethod.STATIC, reason, makeup)
    share = (makeup.matmul_bytes + makeup.recurrent_bytes) / total
    reason = (
        f"{share:.0%} of the weight bytes are MatMul/Gemm/recurrent weights: dynamic int8 is about as "
        "small as static and usually faster than float, with no calibration"
    )
    return Recommendation(QuantMethod.DYNAMIC, reason, makeup)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_paths(src: Path, out: Path) -> None:
    check_output_path(out, protected=[src, *read_model(src).external_files])


def _check_not_quantized(src: Path, method: QuantMethod, makeup: GraphMakeup) -> list[str]:
    float32_bytes = makeup.total_bytes - makeup.fp16_bytes
    ops = (
        ", ".join(f"{op} x{n}" for op, n in sorted(makeup.quantized_ops.items()))
        or "no quantized ops"
    )
    if method is QuantMethod.FP16:
        done = makeup.fp16_bytes + makeup.low_bit_bytes
        if done > float32_bytes:
            raise AlreadyQuantizedError(
                src,
                f"already quantized: {done} of {done + float32_bytes} weight bytes are FLOAT16 or lower",
            )
        return []
    if makeup.low_bit_bytes > float32_bytes or (
        makeup.quantized_ops and makeup.low_bit_bytes >= float32_bytes
    ):
        raise AlreadyQuantizedError(
            src,
            f"already quantized: {makeup.low_bit_bytes} of {makeup.low_bit_bytes + makeup.total_bytes} weight "
            f"bytes are stored in 8 bits or fewer ({ops})",
        )
    if method in (QuantMethod.DYNAMIC, QuantMethod.STATIC) and makeup.fp16_bytes > float32_bytes:
        # onnxruntime's int8 quantizers assume FLOAT weights: on a FLOAT16 graph they write a model
        # that fails type checking ("Type 'tensor(float16)' of input ... does not match").
        raise UnsupportedModelError(
            src,
            f"{makeup.fp16_bytes} of {makeup.total_bytes} weight bytes are FLOAT16: onnxruntime's "
            "int8 quantizer needs FLOAT weights; quantize the float32 model, or use --method int4",
        )
    if makeup.quantized_ops:
        return [
            f"the model is already partly quantized ({ops}); only its float weights are quantized"
        ]
    return []


def _load_full(src: Path) -> onnx.ModelProto:
    require_external_data(read_model(src))
    try:
        return onnx.load(str(src))
    except FileNotFoundError as e:
        raise ExternalDataError(src, f"external data missing: {e}") from e
    except Exception as e:
        raise ModelFormatError(
            src, f"cannot load the model's tensors ({type(e).__name__}: {e})"
        ) from e


def _save(model: onnx.ModelProto, path: Path, *, external: bool) -> None:
    data_name = path.name + ".data"
    if external:
        (path.parent / data_name).unlink(missing_ok=True)
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def _tensor_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for graph in iter_graphs(model.graph):
        for tensor in graph.initializer:
            total += len(tensor.raw_data) if tensor.HasField("raw_data") else tensor.ByteSize()
    return total


def _calibration_batches(
    calibration: Path | None, samples: int, src: Path, bindings: Bindings
) -> list[dict[str, np.ndarray]]:
    specs = input_specs(src, bindings)
    if calibration is None:
        return [dict(make_feeds(specs, seed=i)) for i in range(samples)]
    try:
        with np.load(calibration) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:
        raise InputError(calibration, f"not a readable .npz of calibration inputs ({e})") from e
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise ShapeBindingError(
            calibration, f"no calibration data for input(s) {', '.join(missing)}"
        )
    batches: list[dict[str, np.ndarray]] = []
    for spec in specs:
        value = arrays[spec.name]
        # One array per input: (N, *input_shape) holds N samples; an array of the input's rank is one.
        stacked = value if value.ndim == len(spec.dims) + 1 else value[None]
        for index in range(stacked.shape[0]):
            if len(batches) <= index:
                batches.append({})
            batches[index][spec.name] = stacked[index]
    return batches


def _infer_shapes(src: Path, dst: Path, *, warnings: list[str]) -> Path:
    """ONNX shape inference into ``dst`` (external data stays where ``src`` references it).

    onnxruntime's ``quant_pre_process`` would add symbolic shape inference, but importing it imports
    ``onnxruntime.tools``, which imports PyTorch whenever it is installed (seconds, hundreds of MB),
    and its optimizer rewrites the graph; the quantizers only need the types ONNX inference gives.
    """
    try:
        onnx.shape_inference.infer_shapes_path(str(src), str(dst))
        return dst
    except Exception as e:
        first = f"{type(e).__name__}: {e}".splitlines()[0][:160]
        warnings.append(f"shape inference failed ({first}); quantizing without inferred shapes")
        return src


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep onnxruntime's quantization tools from printing: the library never prints.

    They log through the root logger, emit numpy RuntimeWarnings (a zero activation range) and
    create sessions that log from C++.
    """
    import onnxruntime as ort

    logging.disable(logging.WARNING)
    ort.set_default_logger_severity(3)
    try:
        with py_warnings.catch_warnings(), np.errstate(all="ignore"):
            py_warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        ort.set_default_logger_severity(2)


@_quiet()
def _run_quantizer(
    method: QuantMethod,
    src: Path,
    dst: Path,
    *,
    per_channel: bool,
    op_types: Sequence[str] | None,
    batches: list[dict[str, np.ndarray]],
    keep_io_types: bool,
    int4_block_size: int,
    subgraphs: bool,
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    types = list(op_types) if op_types else None
    if method is QuantMethod.DYNAMIC:
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=types,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            use_external_data_format=True,
            extra_options={"EnableSubgraph": subgraphs},
        )
    elif method is QuantMethod.STATIC:

        class _Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._items: Iterator[dict[str, np.ndarray]] = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._items, None)

        quantize_static(
            str(src),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=types,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            use_external_data_format=True,
        )
    elif method is QuantMethod.FP16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(src))
        converted = convert_float_to_float16(
            model, keep_io_types=keep_io_types, disable_shape_infer=True
        )
        _save(converted, dst, external=True)
    elif method is QuantMethod.INT4:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(src))
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=4,
            block_size=int4_block_size,
            is_symmetric=True,
            nodes_to_exclude=shared_gathers(model),
            # Gather: embedding tables as GatherBlockQuantized (4-bit blocks along the hidden axis).
            op_types_to_quantize=tuple(types) if types else ("MatMul", "Gather"),
            quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        quantizer.process()
        _save(quantizer.model.model, dst, external=True)


def _has_subgraphs(model: onnx.ModelProto) -> bool:
    return len(list(iter_graphs(model.graph))) > 1


def _run_once(path: Path, feeds: Mapping[str, np.ndarray] | None) -> tuple[str, str] | None:
    """Load ``path`` in onnxruntime and, with ``feeds``, run it once.

    Returns None when that worked, else ``("load" | "run", first line of the error)``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        return "load", f"{type(e).__name__}: {e}".splitlines()[0][:300]
    if feeds is None:
        return None
    try:
        run_feeds = {}
        for meta in session.get_inputs():
            value = feeds[meta.name]
            run_feeds[meta.name] = (
                value.astype(np.float16) if meta.type == "tensor(float16)" else value
            )
        session.run(None, run_feeds)
    except Exception as e:
        return "run", f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return None


def _refuse_if_source_does_not_load(src: Path) -> None:
    """After a failure: blame the input when onnxruntime cannot load even the original."""
    failure = _run_once(src, None)
    if failure is not None:
        raise UnsupportedModelError(
            src, f"onnxruntime {_onnxruntime_version()} cannot load the model itself: {failure[1]}"
        )


def _onnxruntime_version() -> str:
    """The onnxruntime version the variants are made and checked with."""
    import onnxruntime as ort

    return str(ort.__version__)


_BIND_HINT = "--input-shape NAME=dims, --dim NAME=VALUE or --batch N"


def _verify(path: Path, bindings: Bindings, src: Path) -> tuple[bool, str]:
    """Load the variant and run it once on generated inputs; tell a bad variant from bad inputs.

    Dynamic int8, fp16 and int4 need no data, so inputs that cannot run the *original* model (a
    dim left at 1 that a Reshape cannot take, an input type that cannot be generated) do not stop
    them: the variant is kept, reported as not verified, with the flags that would verify it.

    Returns:
        (verified, what was run or why nothing was).

    Raises:
        ShapeBindingError: bindings the user gave do not fit the model.
        UnsupportedModelError: onnxruntime cannot load even the original model.
        ConversionError: the variant does not load, or fails where the original runs.
    """
    specs: tuple[InputSpec, ...] = ()
    why = ""
    try:
        specs = input_specs(src, bindings)
    except ShapeBindingError as e:
        if not bindings.is_empty:
            raise
        why = f"no inputs could be generated ({e.message})"
    feeds = None if why else make_feeds(specs)
    failure = _run_once(path, feeds)
    if failure is not None and failure[0] == "load":
        _refuse_if_source_does_not_load(src)
        raise ConversionError(src, f"the variant does not load in onnxruntime: {failure[1]}")
    if failure is not None:
        _refuse_if_source_does_not_load(src)
        original = _run_once(src, feeds)
        if original is None:
            raise ConversionError(src, f"the variant does not run in onnxruntime: {failure[1]}")
        why = (
            f"the generated inputs ({describe_specs(specs)}) do not run the original model "
            f"either ({original[1]})"
        )
    if why:
        return False, f"loads in onnxruntime but was not run: {why}; verify it with {_BIND_HINT}"
    return True, f"ran once in onnxruntime on generated inputs ({describe_specs(specs)})"


def _check_calibration_runs(src: Path, batches: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Static calibration runs the original on its inputs: refuse inputs it cannot run on."""
    failure = _run_once(src, batches[0] if batches else None)
    if failure is None:
        return
    _refuse_if_source_does_not_load(src)
    shapes = ", ".join(f"{k}: {list(v.shape)}" for k, v in batches[0].items())
    raise ShapeBindingError(
        src,
        f"static quantization calibrates on inputs that run the model, and these ({shapes}) do "
        f"not ({failure[1]}); give --calibration data or bind the inputs with {_BIND_HINT}",
    )


def _fallback_axes(
    weights: ModelWeights, op_types: Sequence[str] | None, min_elements: int
) -> dict[str, int]:
    """FLOAT weights the fallback should convert, with the axis their scales run along."""
    wanted = set(op_types) if op_types else None
    axes = {}
    for tensor in float_tensors(weights, min_elements=min_elements, data_types=FLOAT32_TYPES):
        if tensor.data_type != "FLOAT" or len(tensor.dims) < 2:
            continue  # vectors (biases, norm scales) are small and sensitive: left in float
        ops = {op.replace(" (in subgraph)", "") for op in tensor.consumers}
        if wanted is None or (ops and ops <= wanted):
            # MatMul's B is (K, N): one scale per output feature N; Conv/Gemm/LSTM/Gather: axis 0.
            axes[tensor.name] = -1 if ops == {"MatMul"} else 0
    return axes


def quantize_model(
    src: Path,
    out: Path,
    *,
    method: QuantMethod = QuantMethod.DYNAMIC,
    per_channel: bool = False,
    op_types: Sequence[str] | None = None,
    calibration: Path | None = None,
    calibration_samples: int = 8,
    bindings: Bindings | None = None,
    keep_io_types: bool = True,
    fallback: bool = True,
    fallback_min_elements: int = 4096,
    report_min_elements: int = 1024,
    int4_block_size: int = 32,
    external_data: bool | None = None,
) -> QuantizationResult:
    """Write a quantized variant of ``src`` to ``out`` and report what it achieved.

    Args:
        src: an ONNX model (with or without external data); never written.
        out: the variant's path; its tensors go to ``<out>.data`` when external data is used.
        method: see :class:`QuantMethod`; AUTO takes :func:`recommend_method`'s choice.
        per_channel: one scale per output channel for weights (better accuracy, bigger metadata).
        op_types: only quantize these op types (the quantizer's default set when None).
        calibration: STATIC only: an ``.npz`` with one array per input, ``(N, *shape)`` for N samples.
        calibration_samples: STATIC without ``calibration``: how many seeded random inputs to use.
        bindings: shapes for symbolic inputs, for calibration and the test run.
        keep_io_types: FP16 only: keep FLOAT graph inputs and outputs (Casts inside).
        fallback: store FLOAT weights the quantizer left (rank 2+, ``fallback_min_elements``+
            elements, and with ``op_types`` only those read by those op types) as INT8 behind
            DequantizeLinear. Not applied to FP16.
        fallback_min_elements: smallest weight the fallback converts.
        report_min_elements: smallest float weight listed in ``float_tensors``.
        int4_block_size: INT4 only: elements per quantization block (a power of 2, >= 16).
        external_data: write ``<out>.data``; None decides by size (over ~1.8 GiB of tensors).

    Returns:
        The result, after the variant was loaded and run once in onnxruntime (``verified``), or
        only loaded when generated inputs do not run the original (``verified`` False, why and
        which flags would verify it in ``verified_reason`` and in ``warnings``).

    Raises:
        ModelFormatError, ExternalDataError: the source cannot be read.
        OutputPathError: ``out`` would overwrite the source (same path, link) or is not writable.
        AlreadyQuantizedError: the weights are already stored at the target precision or lower.
        UnsupportedModelError: int8 (dynamic/static) asked of a model with FLOAT16 weights.
        ShapeBindingError: bindings that do not fit the model; STATIC: calibration inputs that
            cannot be generated or do not run the original model.
        ConversionError: onnxruntime's tools failed, or the variant fails where the original runs.
    """
    src, out = Path(src), Path(out)
    bindings = bindings or Bindings()
    source = read_model(src)  # the one reading: the makeup and the skeleton derive from it
    header = load_skeleton(source)
    _check_paths(src, out)
    makeup = graph_makeup(read_weights(source), quantized_op_counts(header))
    recommendation = recommend_method(makeup)
    if method is QuantMethod.AUTO:
        method = recommendation.method
    warnings = _check_not_quantized(src, method, makeup)
    if calibration is not None and method is not QuantMethod.STATIC:
        warnings.append(
            f"--calibration is only used by --method static; ignored for {method.value}"
        )
    if per_channel and method in (QuantMethod.FP16, QuantMethod.INT4):
        warnings.append(f"--per-channel does not apply to {method.value}; ignored")
    if method is QuantMethod.INT4 and makeup.conv_bytes:
        warnings.append(
            "int4 is weight-only for MatMul and Gather: Conv weights are not 4-bit quantized"
        )
    source_bytes = file_bytes(src)
    model = _load_full(src)
    lifted = lift_constants(model)
    bypassed = bypass_weight_identities(model)
    batches: list[dict[str, np.ndarray]] = []
    if method is QuantMethod.STATIC:
        batches = _calibration_batches(calibration, calibration_samples, src, bindings)
        _check_calibration_runs(src, batches)
    try:
        with work_folder(out.parent, "quantize") as work:
            prepped = work / "prepped.onnx"
            _save(model, prepped, external=True)
            del model
            inferred = _infer_shapes(prepped, work / "inferred.onnx", warnings=warnings)
            quantized = work / "quantized.onnx"
            _quantize_with_retry(
                method,
                inferred,
                quantized,
                src=src,
                has_subgraphs=_has_subgraphs(header),
                warnings=warnings,
                per_channel=per_channel,
                op_types=op_types,
                batches=batches,
                keep_io_types=keep_io_types,
                int4_block_size=int4_block_size,
            )
            variant = onnx.load(str(quantized))
            fallback_done = (
                _apply_fallback(variant, read_weights(quantized), op_types, fallback_min_elements)
                if fallback and method is not QuantMethod.FP16
                else []
            )
            prune_unused_initializers(variant)
            use_external = (
                external_data
                if external_data is not None
                else _tensor_bytes(variant) > _EXTERNAL_DATA_BYTES
            )
            final = work / out.name
            _save(variant, final, external=use_external)
            verified, verified_reason = _verify(final, bindings, src)
            left = float_tensors(
                read_weights(final),
                min_elements=report_min_elements,
                data_types=FLOAT32_TYPES if method is QuantMethod.FP16 else _ALL_FLOATS,
                default_reason=_default_reason(method, op_types),
            )
            if method is not QuantMethod.FP16:
                left = tuple(_note_fallback(t, fallback, fallback_min_elements) for t in left)
            quantized_ops = quantized_op_counts(variant)
            del variant
            data_out = out.with_name(out.name + ".data")
            if use_external:
                publish(work / data_out.name, data_out)
            try:
                publish(final, out)
            except OutputPathError:
                if use_external:
                    data_out.unlink(missing_ok=True)
                raise
    except OSError as e:
        # Disk full, a folder that turned read-only, a quota: nothing was moved into place.
        raise OutputPathError(out, f"cannot write the variant: {e.strerror or e}") from e

    output_bytes = file_bytes(out)
    warnings.extend(
        _size_warnings(method, source_bytes, output_bytes, left, fallback_done, quantized_ops)
    )
    if not verified:
        warnings.append(f"NOT VERIFIED: the variant {verified_reason}")
    return QuantizationResult(
        source=src,
        output=out,
        method=method,
        per_channel=per_channel,
        source_bytes=source_bytes,
        output_bytes=output_bytes,
        external_data=use_external,
        lifted_constants=lifted,
        bypassed_identities=bypassed,
        quantized_ops=quantized_ops,
        float_tensors=left,
        fallback_tensors=tuple(fallback_done),
        recommendation=recommendation,
        warnings=tuple(warnings),
        verified=verified,
        verified_reason=verified_reason,
    )


def _quantize_with_retry(
    method: QuantMethod,
    src_copy: Path,
    dst: Path,
    *,
    src: Path,
    has_subgraphs: bool,
    warnings: list[str],
    **options: Any,
) -> None:
    """Run the quantizer with subgraphs; for dynamic, retry on the main graph only if that fails.

    The subgraph pass trips on ops whose weights sit in an outer scope (an LSTM in an If branch:
    "'NoneType' object has no attribute 'dims'"); without it, the fallback stores the subgraphs'
    weights as INT8.
    """
    try:
        _run_quantizer(method, src_copy, dst, subgraphs=True, **options)
        return
    except Exception as e:
        first = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        _refuse_if_source_does_not_load(src)
        if method is not QuantMethod.DYNAMIC or not has_subgraphs:
            raise ConversionError(
                src, f"onnxruntime's {method.value} quantization failed: {first}"
            ) from e
        warnings.append(
            f"onnxruntime's quantizer failed inside subgraphs ({first}); quantized the main graph only"
        )
    try:
        _run_quantizer(method, src_copy, dst, subgraphs=False, **options)
    except Exception as e:
        first = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        raise ConversionError(
            src, f"onnxruntime's {method.value} quantization failed: {first}"
        ) from e


def _apply_fallback(
    variant: onnx.ModelProto,
    weights: ModelWeights,
    op_types: Sequence[str] | None,
    min_elements: int,
) -> list[FallbackTensor]:
    """Store the FLOAT weights the quantizer left as INT8 behind DequantizeLinear (in place).

    ``weights`` is the reading of the file ``variant`` was loaded from.
    """
    axes = _fallback_axes(weights, op_types, min_elements)
    sizes = {t.name: t for t in float_tensors(weights, min_elements=min_elements)}
    done = []
    for name in dequantize_linear_fallback(variant, set(axes), axes=axes):
        count = sizes[name].num_elements
        done.append(FallbackTensor(name, count, sizes[name].nbytes, count))
    return done


def _note_fallback(tensor: FloatTensor, fallback: bool, min_elements: int) -> FloatTensor:
    """Say why the DequantizeLinear fallback left this weight float too."""
    if not fallback:
        return replace(tensor, reason=f"{tensor.reason}; the fallback was off (--no-fallback)")
    if len(tensor.dims) < 2 or tensor.num_elements < min_elements:
        floor = f"below the fallback's floor (rank 2+, {min_elements}+ elements)"
        return replace(tensor, reason=f"{tensor.reason}; {floor}")
    return tensor


def _default_reason(method: QuantMethod, op_types: Sequence[str] | None) -> str:
    if op_types:
        return f"not read by the op types asked for ({', '.join(op_types)})"
    if method is QuantMethod.FP16:
        return "kept FLOAT by the fp16 converter (an op without a float16 kernel, or an io tensor)"
    if method is QuantMethod.INT4:
        return "int4 covers MatMul and Gather weights only"
    return f"its readers have no {method.value} int8 form in onnxruntime"


def _size_warnings(
    method: QuantMethod,
    source_bytes: int,
    output_bytes: int,
    left: tuple[FloatTensor, ...],
    fallback_done: list[FallbackTensor],
    quantized_ops: Mapping[str, int],
) -> list[str]:
    warnings = []
    if fallback_done:
        float_bytes = sum(t.float_bytes for t in fallback_done)
        warnings.append(
            f"{len(fallback_done)} weight(s) the {method.value} quantizer left in float ({float_bytes} bytes "
            "as FLOAT) are stored as INT8 behind DequantizeLinear: the file and resident weights shrink 4x, "
            "but onnxruntime dequantizes them on every run, so up to "
            f"{float_bytes} bytes of FLOAT copies exist while it runs"
        )
    if method is QuantMethod.DYNAMIC and quantized_ops.get("ConvInteger"):
        warnings.append(
            "dynamic int8 runs Conv as ConvInteger, several times slower than float Conv in onnxruntime "
            "on CPU; --method static keeps float speed"
        )
    if output_bytes >= source_bytes:
        float_bytes = sum(t.nbytes for t in left)
        why = (
            f"{len(left)} weight(s) ({float_bytes} bytes) stayed float"
            if left
            else "the quantization metadata (scales, zero points, Q/DQ nodes) outweighs what was saved"
        )
        warnings.append(
            f"the variant is not smaller than the input ({output_bytes} vs {source_bytes} bytes): {why}"
        )
    if (
        math.isclose(output_bytes, source_bytes, rel_tol=0.02)
        and not quantized_ops
        and method is not QuantMethod.FP16
    ):
        warnings.append("nothing was quantized")
    return warnings


def quantize_source(
    source: str,
    out: Path,
    *,
    bindings: Bindings | None = None,
    on_progress: Callable[[str], None] | None = None,
    **options: Any,
) -> QuantizationResult:
    """Quantize any model source: ``.onnx`` files directly, framework sources converted first.

    A framework source (``file.py:Name``, a Hugging Face folder, ``.keras``, ...) is exported with
    :func:`converters.sources.convert_source` to ``<out stem>.fp32.onnx`` next to ``out`` (kept: it
    is the float reference for ``compare``), then quantized.

    Args:
        source: what the user passed on the command line.
        out: the variant's path.
        bindings: input shapes, for the export, calibration and the test run.
        on_progress: called with the name of each slow step (conversion, quantization).
        **options: passed to :func:`quantize_model`.

    Raises:
        SourceError, MissingExtraError: as :func:`converters.sources.detect_source` and
            ``convert_source``.
        Others: as :func:`quantize_model`.
    """
    say = on_progress or (lambda _step: None)
    detected = detect_source(source)
    if detected.kind is SourceKind.ONNX:
        say(f"quantizing {Path(detected.location).name}")
        return quantize_model(Path(detected.location), out, bindings=bindings, **options)
    out = Path(out)
    converted = out.with_name(out.stem + ".fp32.onnx")
    if _same_file(converted, out):
        raise OutputPathError(out, "name the variant something other than *.fp32.onnx")
    convert_source(detected, converted, bindings=bindings, on_progress=on_progress)
    say(f"quantizing {converted.name}")
    result = quantize_model(converted, out, bindings=bindings, **options)
    return replace(result, converted_from=source)
