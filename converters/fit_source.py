"""``fit`` for any model source, with the measured parts: ``--verify`` and ``--latency``.

The search itself is static (:func:`graph_analysis.deploy.fit_model`). ``verify`` writes a real
variant for each precision other than the model's own (``quantize``: fp16, dynamic int8, int4) and
measures, in a fresh onnxruntime child, the chosen value and the next one up; ``latency`` measures the
median latency at the chosen value. A measurement the machine cannot hold (estimated peak above the
memory available now) is refused up front, not attempted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from converters.quantize import QuantMethod, quantize_model
from converters.sources import detect_source, onnx_of
from graph_analysis.bindings import Bindings
from graph_analysis.deploy import (
    CheckResult,
    FitCandidate,
    FitPrecision,
    FitResult,
    Limits,
    check_model,
    fit_model,
    vary_bindings,
)
from graph_analysis.runtime.measure import measure_inference
from graph_analysis.runtime.optimized import executed_estimator

__all__ = ["available_memory_bytes", "check_source", "fit_source"]

_METHOD = {
    FitPrecision.FP16: QuantMethod.FP16,
    FitPrecision.INT8: QuantMethod.DYNAMIC,
    FitPrecision.INT4: QuantMethod.INT4,
}


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_source(
    source: str,
    limits: Limits,
    bindings: Bindings | None = None,
    *,
    baseline: str | Path | None = None,
) -> CheckResult:
    """``check`` for an ONNX file or a framework source (exported first; the baseline too).

    Raises:
        InputError: a bad source, baseline, binding or limit combination.
    """
    from dataclasses import replace as replace_result

    with tempfile.TemporaryDirectory(prefix="modelsize-check-") as tmp:
        paths: list[Path] = []
        for index, text in enumerate([source, *([str(baseline)] if baseline is not None else [])]):
            path, _ = onnx_of(
                detect_source(text), Path(tmp), bindings=bindings, name=f"model{index}.onnx"
            )
            paths.append(path)
        result = check_model(
            paths[0],
            limits,
            bindings,
            baseline=paths[1] if baseline else None,
            estimator=executed_estimator,
        )
    return replace_result(result, path=source, baseline=str(baseline) if baseline else None)


def fit_source(
    source: str,
    memory_budget_bytes: int,
    bindings: Bindings | None = None,
    *,
    vary: str | None = None,
    precisions: tuple[FitPrecision, ...] | None = None,
    disk_budget_bytes: int | None = None,
    latency_budget_s: float | None = None,
    train: bool = False,
    verify: bool = False,
    threads: int = 1,
    runs: int = 5,
    on_progress: Callable[[str], None] | None = None,
) -> FitResult:
    """Answer ``fit`` for an ONNX file or a framework source (exported first).

    Raises:
        InputError: a bad source, model, binding or option. InternalError: a step failed.
    """
    say = on_progress or (lambda _line: None)
    bindings = bindings or Bindings()
    detected = detect_source(source)
    with tempfile.TemporaryDirectory(prefix="modelsize-fit-") as tmp:
        onnx_path, _ = onnx_of(detected, Path(tmp), bindings=bindings, on_progress=on_progress)
        result = fit_model(
            onnx_path,
            memory_budget_bytes,
            bindings,
            vary=vary,
            precisions=precisions,
            disk_budget_bytes=disk_budget_bytes,
            train=train,
            estimator=executed_estimator,
        )
        if not (verify or latency_budget_s is not None) or train:
            return replace(result, path=source)
        measured: list[FitCandidate] = []
        for found in result.candidates:
            candidate = found
            if candidate.value is None:
                measured.append(candidate)
                continue
            variant = onnx_path
            own = candidate.disk_kind == "measured"
            if not own:
                if not verify:
                    measured.append(candidate)
                    continue
                say(f"writing the {candidate.precision.value} variant")
                variant = Path(tmp) / f"{candidate.precision.value}.onnx"
                written = quantize_model(
                    onnx_path, variant, method=_METHOD[candidate.precision], bindings=bindings
                )
                candidate = replace(
                    candidate, disk_bytes=written.output_bytes, disk_kind="measured"
                )
            measured.append(
                _measure(
                    candidate,
                    variant,
                    bindings,
                    result,
                    verify,
                    latency_budget_s,
                    threads,
                    runs,
                    say,
                )
            )
    return replace(result, path=source, candidates=tuple(measured))


def _measure(
    candidate: FitCandidate,
    model: Path,
    bindings: Bindings,
    result: FitResult,
    verify: bool,
    latency_budget_s: float | None,
    threads: int,
    runs: int,
    say: Callable[[str], None],
) -> FitCandidate:
    assert candidate.value is not None
    available = available_memory_bytes()
    estimate = candidate.estimated_peak_bytes or 0
    if available is not None and estimate > 0.8 * available:
        note = (
            f"not measured: the estimated peak {estimate:,} bytes is over 80% of the memory "
            f"available now ({available:,} bytes)"
        )
        return replace(candidate, notes=(*candidate.notes, note))
    say(f"measuring {candidate.precision.value} at {result.vary}={candidate.value}")
    at_value = measure_inference(
        model,
        vary_bindings(bindings, result.vary, candidate.value),
        runs=runs,
        threads=threads,
    )
    notes = list(candidate.notes)
    fits = candidate.fits
    reason = candidate.reason
    if verify:
        fits = fits and at_value.peak_bytes <= result.memory_budget_bytes
        if at_value.peak_bytes > result.memory_budget_bytes:
            reason = (
                f"measured {at_value.peak_bytes:,} bytes at {result.vary}={candidate.value}, over the "
                f"budget by {at_value.peak_bytes - result.memory_budget_bytes:,}"
            )
        up = candidate.value + 1
        next_estimate = estimate  # at least as large as the chosen point's
        if available is None or next_estimate <= 0.8 * available:
            above = measure_inference(
                model, vary_bindings(bindings, result.vary, up), runs=1, threads=threads
            )
            notes.append(
                f"measured at {result.vary}={up}: {above.peak_bytes:,} bytes "
                f"({'over' if above.peak_bytes > result.memory_budget_bytes else 'within'} the budget)"
            )
    latency = at_value.latency_median_s
    if latency_budget_s is not None and latency > latency_budget_s:
        fits = False
        reason = f"latency {latency * 1e3:.1f} ms over the budget {latency_budget_s * 1e3:.1f} ms"
    return replace(
        candidate,
        measured_peak_bytes=at_value.peak_bytes if verify else None,
        latency_s=latency,
        fits=fits,
        reason=reason,
        notes=tuple(notes),
    )
