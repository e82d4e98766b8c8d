"""Deployment questions answered from the static figures: a gate on limits (``check``) and a scan of a
folder of models (``scan``). Nothing here runs a model: counts are counted, memory is estimated.

Sizes and counts given by people are parsed here once (:func:`parse_size`, :func:`parse_count`,
:func:`parse_fraction`): decimal and binary units as written (``MB`` = 10^6, ``MiB`` = 2^20, ``G`` =
10^9); a malformed value is a :class:`~graph_analysis.errors.UsageError`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph_analysis.bindings import Bindings
from graph_analysis.errors import InputError, ModelsizeError, UsageError

if TYPE_CHECKING:
    from graph_analysis._weights import Reading
    from graph_analysis.memory import MemoryEstimate
    from graph_analysis.report import ModelReport

__all__ = [
    "CheckResult",
    "EstimatorFactory",
    "FitCandidate",
    "FitPrecision",
    "FitResult",
    "LimitResult",
    "Limits",
    "ScanRow",
    "check_model",
    "default_vary",
    "fit_model",
    "parse_count",
    "parse_fraction",
    "parse_size",
    "scan_folder",
    "scan_model",
    "scan_row_to_dict",
    "static_estimator",
    "vary_bindings",
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)(?:e(\d+))?\s*([kKmMgGtTpP]?)([iI]?)([bB]?)\s*$")
_SCALE = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
SIZE_FORMS = "bytes (1048576), decimal (512MB, 1.5G, 2GB) or binary (512MiB, 2GiB) units"
COUNT_FORMS = "a number (7000000, 7e9) or one with k, M, G, T or B (7B = 7 billion)"


def parse_size(text: str, *, option: str = "size") -> int:
    """Bytes from ``512MB``, ``2GiB``, ``1.5G``, ``1048576``: MB = 10^6 bytes, MiB = 2^20.

    Raises:
        UsageError: not one of the accepted forms.
    """
    match = _SIZE.match(text)
    if match is None or (match.group(4) and not match.group(3)):
        raise UsageError(f"{option}: {text!r} is not a size; use {SIZE_FORMS}")
    number = float(match.group(1)) * (10 ** int(match.group(2) or 0))
    prefix, binary = match.group(3), bool(match.group(4))
    base = 1024 if binary else 1000
    return int(number * base ** _SCALE[prefix.upper()] + 0.5)


_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)(?:e(\d+))?\s*([kKMGTB]?)\s*$")
_COUNT_SCALE = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}


def parse_count(text: str, *, option: str = "count") -> int:
    """A count from ``7000000``, ``7e9``, ``25M``, ``7B`` (billion), ``4.1G``.

    Raises:
        UsageError: not one of the accepted forms.
    """
    match = _COUNT.match(text)
    if match is None:
        raise UsageError(f"{option}: {text!r} is not a count; use {COUNT_FORMS}")
    number = float(match.group(1)) * (10 ** int(match.group(2) or 0))
    return int(number * _COUNT_SCALE[match.group(3)] + 0.5)


def parse_fraction(text: str, *, option: str = "fraction") -> float:
    """A fraction from ``5%`` (0.05) or ``0.05``.

    Raises:
        UsageError: not a non-negative number or percentage.
    """
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as e:
        raise UsageError(f"{option}: {text!r} is not a fraction; use 5% or 0.05") from e
    if value < 0 or math.isnan(value):
        raise UsageError(f"{option}: {text!r} must not be negative")
    return value


# ---------------------------------------------------------------------------------------------
# check


@dataclass(frozen=True)
class Limits:
    """The budget a model must hold (None: not checked).

    Attributes:
        max_params: parameters (counted, each tensor once).
        max_disk_bytes: the .onnx file plus its external data, on disk.
        max_memory_bytes: estimated peak inference memory (onnxruntime, CPU).
        max_train_memory_bytes: estimated peak of one training step (Adam, fp32).
        max_macs: counted MACs of one inference at the bound shapes.
        min_int8_saving: the int8 what-if size must save at least this fraction of the disk size.
        max_growth: with a baseline, no figure may grow by more than this fraction.
    """

    max_params: int | None = None
    max_disk_bytes: int | None = None
    max_memory_bytes: int | None = None
    max_train_memory_bytes: int | None = None
    max_macs: int | None = None
    min_int8_saving: float | None = None
    max_growth: float | None = None


@dataclass(frozen=True)
class LimitResult:
    """One limit: the model's value, the limit, whether it holds, and how the value was obtained."""

    name: str
    value: float
    limit: float
    ok: bool
    kind: str  # counted | estimated | what-if | measured
    unit: str  # bytes | parameters | MACs | fraction
    detail: str = ""


@dataclass(frozen=True)
class CheckResult:
    """All limits checked on one model."""

    path: str
    baseline: str | None
    limits: tuple[LimitResult, ...]

    @property
    def ok(self) -> bool:
        """True when every limit holds."""
        return all(r.ok for r in self.limits)


@dataclass(frozen=True)
class _Figures:
    params: int
    disk: int
    int8_bytes: int | None
    weights_bytes: int
    memory: int | None = None
    train_memory: int | None = None
    macs: int | None = None


#: ``factory(path, reading=None)`` returns ``estimate(bindings, **options)``: estimates of one
#: model for any bindings, made from one reading of it (``reading``, when the caller has it;
#: ``options`` as :func:`graph_analysis.memory.estimate_memory` takes them):
#: :func:`static_estimator`, or the ``memory`` command's
#: ``graph_analysis.runtime.optimized.executed_estimator``.
EstimatorFactory = Callable[..., Callable[..., "MemoryEstimate"]]


def static_estimator(
    path: str | os.PathLike[str], *, reading: Reading | None = None
) -> Callable[..., MemoryEstimate]:
    """Estimates of ``path`` from the exported graph (nothing run), all from one reading
    (``reading``, :func:`graph_analysis._weights.weights_and_skeleton`'s, or made here)."""
    from graph_analysis._weights import weights_and_skeleton
    from graph_analysis.memory import estimate_memory

    reading = reading if reading is not None else weights_and_skeleton(path)

    def estimate(bindings: Bindings | None = None, **options: Any) -> MemoryEstimate:
        return estimate_memory(Path(path), bindings, reading=reading, **options)

    return estimate


def _figures(
    path: Path,
    bindings: Bindings | None,
    *,
    memory: bool,
    train: bool,
    macs: bool,
    estimator: EstimatorFactory,
) -> _Figures:
    from graph_analysis._weights import reading_and_report
    from graph_analysis.analysis import analyze

    if not (memory or train or macs):  # the counts alone: no skeleton to make
        return _counted_figures(analyze(path))
    reading, report = reading_and_report(path)  # one reading for every figure
    figures = _counted_figures(report)
    if memory or train:
        estimate = estimator(path, reading=reading)(bindings, train=train)
        figures = _replace(
            figures,
            memory=estimate.inference.peak_bytes,
            train_memory=estimate.training.peak_bytes if estimate.training else None,
        )
    if macs:
        from graph_analysis.compute import count_compute

        counted = count_compute(path, bindings, reading=(reading, report))
        figures = _replace(figures, macs=counted.macs)
    return figures


def _counted_figures(report: ModelReport) -> _Figures:
    from graph_analysis.report import Precision

    int8 = next((p.nbytes for p in report.size.by_precision if p.precision is Precision.INT8), None)
    return _Figures(
        params=report.parameters.total,
        disk=report.size.on_disk_bytes,
        int8_bytes=int8,
        weights_bytes=report.size.weights_bytes,
    )


def _replace(figures: _Figures, **changes: Any) -> _Figures:
    from dataclasses import replace

    return replace(figures, **changes)


def check_model(
    path: str | os.PathLike[str],
    limits: Limits,
    bindings: Bindings | None = None,
    *,
    baseline: str | os.PathLike[str] | None = None,
    estimator: EstimatorFactory | None = None,
) -> CheckResult:
    """Check ``path`` against ``limits`` (and against ``baseline`` with ``limits.max_growth``).

    ``estimator`` makes the memory estimates (:func:`static_estimator` by default; the commands
    pass :func:`graph_analysis.runtime.optimized.executed_estimator`, the ``memory`` command's).

    Raises:
        InputError: a bad model, baseline or binding.
        UsageError: ``max_growth`` without a baseline, or a baseline without ``max_growth``.
    """
    model_path = Path(path)
    if (baseline is None) != (limits.max_growth is None):
        raise UsageError("--baseline and --max-growth go together")
    need_memory = limits.max_memory_bytes is not None or baseline is not None
    need_train = limits.max_train_memory_bytes is not None
    need_macs = limits.max_macs is not None or baseline is not None
    estimator = estimator or static_estimator
    figures = _figures(
        model_path,
        bindings,
        memory=need_memory,
        train=need_train,
        macs=need_macs,
        estimator=estimator,
    )
    results: list[LimitResult] = []
    # (name, value, limit, kind, unit, detail) of every upper bound given.
    upper: list[tuple[str, int | None, int | None, str, str, str]] = [
        ("max_params", figures.params, limits.max_params, "counted", "parameters", ""),
        ("max_disk", figures.disk, limits.max_disk_bytes, "measured", "bytes",
         "the .onnx file and its external data as on disk"),
        ("max_memory", figures.memory, limits.max_memory_bytes, "estimated", "bytes",
         "peak inference memory, onnxruntime CPU, at the bound shapes"),
        ("max_train_memory", figures.train_memory, limits.max_train_memory_bytes, "estimated",
         "bytes", "one training step, Adam, fp32, at the bound shapes"),
        ("max_macs", figures.macs, limits.max_macs, "counted", "MACs",
         "one inference at the bound shapes"),
    ]  # fmt: skip
    for name, value, limit, kind, unit, detail in upper:
        if limit is not None and value is not None:
            results.append(LimitResult(name, value, limit, value <= limit, kind, unit, detail))
    if limits.min_int8_saving is not None:
        saving = _int8_saving(figures)
        results.append(
            LimitResult(
                "min_int8_saving",
                saving,
                limits.min_int8_saving,
                saving >= limits.min_int8_saving,
                "what-if",
                "fraction",
                "1 - (disk with parameters at INT8, per-channel scales) / disk now",
            )
        )
    if baseline is not None and limits.max_growth is not None:
        base = _figures(
            Path(baseline), bindings, memory=True, train=need_train, macs=True, estimator=estimator
        )
        results.extend(_growth(figures, base, limits.max_growth))
    return CheckResult(
        str(model_path), str(baseline) if baseline is not None else None, tuple(results)
    )


def _int8_saving(figures: _Figures) -> float:
    if figures.int8_bytes is None or figures.disk == 0:
        return 0.0
    # The parameters' bytes on disk are replaced by their INT8 what-if size; the rest stays.
    after = figures.disk - figures.weights_bytes + figures.int8_bytes
    return max(0.0, 1.0 - after / figures.disk)


def _growth(now: _Figures, base: _Figures, bound: float) -> list[LimitResult]:
    pairs: list[tuple[str, float | None, float | None, str, str]] = [
        ("growth_params", now.params, base.params, "counted", "parameters"),
        ("growth_disk", now.disk, base.disk, "measured", "bytes"),
        ("growth_memory", now.memory, base.memory, "estimated", "bytes"),
        ("growth_macs", now.macs, base.macs, "counted", "MACs"),
    ]
    if now.train_memory is not None:
        pairs.append(
            ("growth_train_memory", now.train_memory, base.train_memory, "estimated", "bytes")
        )
    out: list[LimitResult] = []
    for name, value, before, kind, unit in pairs:
        if value is None or before is None:
            continue
        growth = (value - before) / before if before else (0.0 if value == before else float("inf"))
        out.append(
            LimitResult(
                name,
                growth,
                bound,
                growth <= bound,
                kind,
                "fraction",
                f"{before:,.0f} -> {value:,.0f} {unit}",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# scan

#: File suffixes a scan picks up: ONNX always; framework files only when asked (they run code).
ONNX_SUFFIXES = (".onnx",)
FRAMEWORK_SUFFIXES = (".keras", ".h5", ".pt", ".pt2")


@dataclass(frozen=True)
class ScanRow:
    """One file of a scan: its figures, or the one-line error that stopped its analysis."""

    path: str
    ok: bool
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def scan_model(path: str, estimate: bool = True) -> ScanRow:
    """Analyse one file for a scan; never raises for a bad model (the row carries the error)."""
    from graph_analysis._weights import reading_and_report
    from graph_analysis.analysis import analyze
    from graph_analysis.report import report_to_dict

    try:
        # One reading for the counts and the estimate.
        reading, report = reading_and_report(path) if estimate else (None, analyze(path))
    except ModelsizeError as e:
        return ScanRow(path, False, str(e))
    data = report_to_dict(report, depth=1)
    summary: dict[str, Any] = {
        "parameters": data["parameters"],
        "size": {k: v for k, v in data["size"].items() if k != "by_precision"},
        "external_data": report.size.external_data_bytes > 0,
        "duplicates": len(report.duplicates),
        "producer": data["producer"],
        "opsets": data["opsets"],
        "graph": data["graph"],
        "warnings": list(report.warnings),
        "estimated_inference_peak_bytes": None,
    }
    if estimate:
        try:
            from graph_analysis.memory import estimate_memory

            summary["estimated_inference_peak_bytes"] = estimate_memory(
                path, reading=reading
            ).inference.peak_bytes
        except InputError as e:
            summary["warnings"].append(f"no memory estimate: {e}")
    return ScanRow(path, True, None, summary)


def _scan_one(path: str, estimate: bool) -> ScanRow:
    try:
        return scan_model(path, estimate)
    except Exception as e:
        return ScanRow(path, False, f"internal error: {type(e).__name__}: {e}")


def find_models(folder: Path, *, recursive: bool, frameworks: bool) -> list[Path]:
    """The model files under ``folder`` (sorted), ONNX and, with ``frameworks``, framework files."""
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    suffixes = ONNX_SUFFIXES + (FRAMEWORK_SUFFIXES if frameworks else ())
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in suffixes and p.is_file())


def scan_folder(
    folder: str | os.PathLike[str],
    *,
    recursive: bool = False,
    workers: int = 1,
    estimate: bool = True,
    on_row: Callable[[int, int, ScanRow], None] | None = None,
) -> Iterator[ScanRow]:
    """Analyse every ``.onnx`` file under ``folder``, ``workers`` processes at a time.

    Rows come in file order whatever the number of workers. A file that fails is one row with its
    error; the scan goes on.

    Raises:
        InputError: ``folder`` is not a folder.
    """
    paths = [str(p) for p in find_models(Path(folder), recursive=recursive, frameworks=False)]
    total = len(paths)
    if workers <= 1 or total <= 1:
        for index, path in enumerate(paths):
            row = _scan_one(path, estimate)
            if on_row:
                on_row(index + 1, total, row)
            yield row
        return
    with ProcessPoolExecutor(max_workers=min(workers, total)) as pool:
        # Chunks amortise the inter-process round trips on folders of many small files.
        chunk = max(1, total // (workers * 8))
        rows = pool.map(_scan_one, paths, [estimate] * total, chunksize=chunk)
        for index, row in enumerate(rows):
            if on_row:
                on_row(index + 1, total, row)
            yield row


def scan_row_to_dict(row: ScanRow) -> dict[str, Any]:
    """One JSONL object: ``path``, ``ok``, ``error`` and the inspect summary keys."""
    return {"path": row.path, "ok": row.ok, "error": row.error, **row.summary}


def count_rows(rows: Sequence[ScanRow]) -> tuple[int, int]:
    """(analysed, failed)."""
    failed = sum(1 for r in rows if not r.ok)
    return len(rows) - failed, failed


# ---------------------------------------------------------------------------------------------
# fit


class FitPrecision(str, Enum):
    """Precisions a fit considers, by what the weights would be stored as."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"


#: Largest value of the varied dim a search tries.
FIT_MAX_VALUE = 1 << 20
#: Ops whose weights int4 weight-only quantization (MatMulNBits / GatherBlockQuantized) reaches.
_INT4_OPS = frozenset({"MatMul", "Gemm", "Gather"})


@dataclass(frozen=True)
class FitCandidate:
    """One precision's answer.

    Attributes:
        precision: the candidate.
        value: the largest value of the varied dim whose estimated peak fits (None: none fits).
        estimated_peak_bytes: the estimated peak at ``value`` (at the start value when none fits).
        disk_bytes: the model on disk at this precision (what-if for other precisions).
        disk_kind: ``measured`` (the file as it is) or ``what-if``.
        fits: whether the start value fits memory (and disk, when a disk budget is given).
        reason: why it does not fit, or why the candidate was not considered.
        headroom_bytes: budget minus the peak at ``value``.
        kv_cache_bytes: the KV cache at ``value`` (decoders with past_key_values inputs).
        measured_peak_bytes: measured peak at ``value`` (``--verify``), else None.
        latency_s: measured median latency at ``value`` (``--latency``), else None.
        notes: how the figure was obtained, one sentence each.
    """

    precision: FitPrecision
    value: int | None
    estimated_peak_bytes: int | None
    disk_bytes: int
    disk_kind: str
    fits: bool
    reason: str | None = None
    headroom_bytes: int | None = None
    kv_cache_bytes: int | None = None
    measured_peak_bytes: int | None = None
    latency_s: float | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitResult:
    """The answer of ``fit``: per precision, the largest value of the varied dim within budget."""

    path: str
    vary: str
    start: int
    memory_budget_bytes: int
    disk_budget_bytes: int | None
    train: bool
    candidates: tuple[FitCandidate, ...]
    evaluated: tuple[tuple[int, int], ...]  # (value, estimated peak at the model's own precision)
    monotonic: bool
    kv_cache_per_token_bytes: int | None = None
    notes: tuple[str, ...] = ()


def vary_bindings(bindings: Bindings, vary: str, value: int) -> Bindings:
    from dataclasses import replace

    from graph_analysis.bindings import ShapeSpec

    if vary == "batch":
        shapes = tuple(
            ShapeSpec(s.name, (value, *s.dims[1:])) if s.dims else s for s in bindings.shapes
        )
        return replace(bindings, shapes=shapes, batch=value)
    return replace(bindings, dims={**bindings.dims, vary: value})


def _past_inputs(model: Any) -> list[Any]:
    return [
        i
        for i in model.graph.input
        if i.name.startswith(("past_key_values", "past_key", "past_value", "past."))
    ]


def _symbols(model: Any) -> set[str]:
    found: set[str] = set()
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param:
                found.add(dim.dim_param)
    return found


def default_vary(path: str | Path) -> str:
    """``batch``, or the past sequence symbol of a decoder exported with a KV cache."""
    from graph_analysis.shapes import load_model_skeleton

    return _default_vary(load_model_skeleton(path))


def _default_vary(model: Any) -> str:
    for value in _past_inputs(model):
        dims = value.type.tensor_type.shape.dim
        if len(dims) >= 3 and dims[-2].HasField("dim_param") and dims[-2].dim_param:
            return str(dims[-2].dim_param)
    return "batch"


def fit_model(
    path: str | Path,
    memory_budget_bytes: int,
    bindings: Bindings | None = None,
    *,
    vary: str | None = None,
    precisions: Sequence[FitPrecision] | None = None,
    disk_budget_bytes: int | None = None,
    train: bool = False,
    optimizer: Any = None,
    max_value: int = FIT_MAX_VALUE,
    estimator: EstimatorFactory | None = None,
) -> FitResult:
    """Find, per precision, the largest value of ``vary`` whose estimated peak memory fits the budget.

    The search doubles the value from its start until the estimate exceeds the budget, then bisects;
    every value evaluated is kept, and the estimate is checked to be non-decreasing over them
    (``monotonic``; when it is not, the answer is the largest fitting value among those evaluated).
    Other precisions than the model's own are what-if: the weights' bytes at that precision replace
    the stored ones (int8: per-channel scales; int4: block 32, MatMul/Gather weights only), and on
    onnxruntime's CPU provider FLOAT16 weights are upcast to float beside the originals (fp16 saves
    disk, not memory: docs/memory.md). Nothing runs here (unless ``estimator``, as
    :func:`check_model`'s, does); ``--verify`` measures (converters).

    Raises:
        InputError: a bad model or binding; UsageError: ``vary`` names no dim of the inputs.
    """
    from graph_analysis._weights import reading_and_report
    from graph_analysis.memory import Optimizer
    from graph_analysis.report import Precision

    bindings = bindings or Bindings()
    reading, report = reading_and_report(path)  # one reading for every figure and value
    model = reading.skeleton
    vary = vary or _default_vary(model)
    if vary != "batch" and vary not in _symbols(model):
        symbols = ", ".join(sorted(_symbols(model))) or "none"
        raise UsageError(
            f"--vary {vary}: no input dim is called that (symbols: {symbols}; or batch)"
        )
    start = _start_value(bindings, vary)
    past = {v.name for v in _past_inputs(model)}
    optimizer = optimizer or Optimizer.ADAM
    evaluated: dict[int, int] = {}
    kv: dict[int, int] = {}

    estimate_at = (estimator or static_estimator)(path, reading=reading)

    def peak(value: int) -> int:
        if value not in evaluated:
            estimate = estimate_at(
                vary_bindings(bindings, vary, value), train=train, optimizer=optimizer
            )
            figure = estimate.training.peak_bytes if train and estimate.training else None
            evaluated[value] = figure if figure is not None else estimate.inference.peak_bytes
            kv[value] = sum(t.nbytes or 0 for t in estimate.shapes.inputs if t.name in past)
        return evaluated[value]

    params_bytes = sum(
        t.nbytes for t in report.tensors if t.role.value in ("parameter", "running_stat")
    )
    float_bytes = sum(
        t.nbytes
        for t in report.tensors
        if t.role.value in ("parameter", "running_stat") and t.data_type == "FLOAT"
    )
    whatif = {p.precision: p.nbytes for p in report.size.by_precision}
    own = _own_precision(report)
    wanted = list(precisions) if precisions else [own, *[p for p in FitPrecision if p is not own]]
    int4_share = _share_read_by(report, _INT4_OPS)
    candidates: list[FitCandidate] = []
    notes: list[str] = []
    for precision in wanted:
        skip = _skip_reason(
            precision, own, train=train, int4_share=int4_share, float_bytes=float_bytes
        )
        disk, disk_kind, delta, how = _precision_figures(
            precision, own, report.size.on_disk_bytes, params_bytes, float_bytes, whatif, Precision
        )
        if skip is not None:
            candidates.append(
                FitCandidate(precision, None, None, disk, disk_kind, False, reason=skip)
            )
            continue
        candidates.append(
            _search(
                precision,
                _shifted(peak, delta),
                start,
                memory_budget_bytes,
                max_value,
                disk,
                disk_kind,
                disk_budget_bytes,
                how,
                kv,
            )
        )
    ordered = sorted(evaluated.items())
    monotonic = all(b[1] >= a[1] for a, b in pairwise(ordered))
    if not monotonic:
        notes.append(
            "the estimate is not monotonic in the varied dim over the values evaluated: the "
            "answer is the largest fitting value evaluated, and a larger one may fit too"
        )
    per_token = None
    if past and len(kv) >= 2:
        (v1, b1), (v2, b2) = sorted(kv.items())[:2]
        per_token = (b2 - b1) // (v2 - v1) if v2 != v1 else None
    return FitResult(
        path=str(path),
        vary=vary,
        start=start,
        memory_budget_bytes=memory_budget_bytes,
        disk_budget_bytes=disk_budget_bytes,
        train=train,
        candidates=tuple(candidates),
        evaluated=tuple(ordered),
        monotonic=monotonic,
        kv_cache_per_token_bytes=per_token,
        notes=tuple(notes),
    )


def _shifted(peak: Callable[[int], int], delta: int) -> Callable[[int], int]:
    return lambda value: peak(value) + delta


def _start_value(bindings: Bindings, vary: str) -> int:
    if vary == "batch":
        leading = [s.dims[0] for s in bindings.shapes if s.dims]
        return bindings.batch or (leading[0] if leading else 1)
    return int(bindings.dims.get(vary, 1))


def _own_precision(report: Any) -> FitPrecision:
    rows = (
        {r.data_type: r.nbytes for r in report.parameters.by_dtype}
        if report.parameters.by_dtype
        else {}
    )
    dominant = max(rows, key=lambda k: rows[k], default="FLOAT")
    return {
        "FLOAT16": FitPrecision.FP16,
        "BFLOAT16": FitPrecision.FP16,
        "INT8": FitPrecision.INT8,
        "UINT8": FitPrecision.INT8,
        "INT4": FitPrecision.INT4,
        "UINT4": FitPrecision.INT4,
    }.get(str(dominant), FitPrecision.FP32)


def _share_read_by(report: Any, ops: frozenset[str]) -> float:
    total = sum(r.num_parameters for r in report.by_op)
    reached = sum(r.num_parameters for r in report.by_op if r.key in ops)
    return reached / total if total else 0.0


def _skip_reason(
    precision: FitPrecision, own: FitPrecision, *, train: bool, int4_share: float, float_bytes: int
) -> str | None:
    if precision is own:
        return None
    if own is not FitPrecision.FP32:
        return f"the model is already {own.value}: only its own precision is estimated"
    if float_bytes == 0:
        return "no float weights to convert"
    if train and precision in (FitPrecision.INT8, FitPrecision.INT4):
        return "training runs in float: int8/int4 are inference precisions"
    if train and precision is FitPrecision.FP16:
        return "use memory --train --precision mixed for mixed-precision training"
    if precision is FitPrecision.INT4 and int4_share < 0.5:
        return (
            f"int4 (MatMulNBits) reaches MatMul/Gather weights only: {int4_share:.0%} of this "
            "graph's parameters"
        )
    return None


def _precision_figures(
    precision: FitPrecision,
    own: FitPrecision,
    disk: int,
    params_bytes: int,
    float_bytes: int,
    whatif: dict[Any, int],
    precision_enum: Any,
) -> tuple[int, str, int, str]:
    """(disk bytes, disk kind, memory delta vs the own precision, how) of a candidate."""
    if precision is own:
        return disk, "measured", 0, "the model as it is"
    if precision is FitPrecision.FP16:
        half = whatif.get(precision_enum.FLOAT16, float_bytes // 2)
        # On the CPU provider the 16-bit weights are kept and a float copy is made for the kernels.
        return (
            disk - params_bytes + half,
            "what-if",
            half,
            "what-if: FLOAT16 weights plus the float copies onnxruntime's CPU provider makes",
        )
    key = precision_enum.INT8 if precision is FitPrecision.INT8 else precision_enum.INT4
    low = whatif.get(key, params_bytes)
    return (
        disk - params_bytes + low,
        "what-if",
        low - params_bytes,
        f"what-if: parameters stored as {key.value} with their scales; activations stay float",
    )


def _search(
    precision: FitPrecision,
    estimate: Callable[[int], int],
    start: int,
    budget: int,
    max_value: int,
    disk: int,
    disk_kind: str,
    disk_budget: int | None,
    how: str,
    kv: dict[int, int],
) -> FitCandidate:
    notes: tuple[str, ...] = (how,)
    disk_ok = disk_budget is None or disk <= disk_budget
    first = estimate(start)
    if first > budget:
        return FitCandidate(
            precision,
            None,
            first,
            disk,
            disk_kind,
            False,
            reason=f"needs {first:,} bytes at the start value {start}, {first - budget:,} over the budget",
            headroom_bytes=budget - first,
            notes=notes,
        )
    good, bad = start, None
    value = start
    while value < max_value:
        value = min(max_value, value * 2)
        if estimate(value) <= budget:
            good = value
        else:
            bad = value
            break
    if bad is not None:
        while bad - good > 1:
            middle = (good + bad) // 2
            if estimate(middle) <= budget:
                good = middle
            else:
                bad = middle
    figure = estimate(good)
    reason = None if disk_ok else f"disk {disk:,} bytes over the disk budget {disk_budget:,}"
    if bad is None:
        notes = (*notes, f"fits up to the search limit {max_value}")
    return FitCandidate(
        precision,
        good,
        figure,
        disk,
        disk_kind,
        disk_ok,
        reason=reason,
        headroom_bytes=budget - figure,
        kv_cache_bytes=kv.get(good) or None,
        notes=notes,
    )
