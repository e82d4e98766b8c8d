"""Side-by-side comparison of models (typically one original and its int8/fp16 variants).

Per model: parameters and stored weight bytes by dtype (counted), file size on disk (counted),
inference memory (estimated, when the memory estimator is available), peak memory and latency
(measured, a fresh child process per model and arena setting), and for every model after the first
its output drift against the first on identical generated inputs (measured).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from graph_analysis._weights import weight_census
from graph_analysis.bindings import Bindings
from graph_analysis.errors import ModelFormatError, ShapeBindingError
from graph_analysis.runtime._drift import OutputDrift
from graph_analysis.runtime._feeds import InputSpec, input_specs, make_feeds
from graph_analysis.runtime._runner import estimate_inference_bytes, run_drift
from graph_analysis.runtime.measure import measure_inference

__all__ = [
    "Comparison",
    "LatencyStats",
    "MeasuredRun",
    "ModelComparison",
    "ModelDrift",
    "OutputDrift",
    "compare_models",
    "comparison_to_dict",
]


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of ``runs`` timed ``session.run`` calls after the first (untimed) one."""

    median_ms: float
    p90_ms: float
    runs: int


@dataclass(frozen=True)
class MeasuredRun:
    """One fresh child process (:func:`graph_analysis.runtime.measure.measure_inference`): peak memory and
    latency.

    ``peak_bytes`` is the child's peak resident growth from session creation through the first
    inference, over its baseline with numpy and onnxruntime imported.
    """

    arena: bool
    peak_bytes: int
    latency: LatencyStats


@dataclass(frozen=True)
class ModelDrift:
    """Drift of a variant against the first model; worst values over all outputs.

    Attributes:
        outputs: per-output figures.
        max_abs: largest ``max_abs`` over outputs.
        mean_abs: largest ``mean_abs`` over outputs.
        cosine_similarity: smallest cosine similarity over outputs.
        argmax_agreement: smallest argmax agreement over classifier-like outputs, else None.
    """

    outputs: tuple[OutputDrift, ...]
    max_abs: float
    mean_abs: float
    cosine_similarity: float
    argmax_agreement: float | None


@dataclass(frozen=True)
class ModelComparison:
    """Figures of one model in a comparison.

    Attributes:
        path: the model file.
        parameters: counted parameters.
        weight_bytes_by_dtype: counted stored bytes of the weights, by ONNX data type name.
        on_disk_bytes: counted bytes of the file plus its external data files.
        estimated_inference_bytes: the memory estimator's figure, None when unavailable.
        measured: one entry per arena setting measured (arena on first).
        drift: against the first model; None for the first.
    """

    path: str
    parameters: int
    weight_bytes_by_dtype: Mapping[str, int]
    on_disk_bytes: int
    estimated_inference_bytes: int | None
    measured: tuple[MeasuredRun, ...]
    drift: ModelDrift | None


@dataclass(frozen=True)
class Comparison:
    """The comparison of several models on the same generated inputs.

    Attributes:
        models: in the order given; the first is the reference for drift.
        inputs: the bound inputs every model ran on (generated, seeded).
        runs: timed runs per measurement.
        threads: onnxruntime intra-op threads.
        seed: the seed of the generated inputs.
        notes: figures that could not be obtained, and why.
    """

    models: tuple[ModelComparison, ...]
    inputs: tuple[InputSpec, ...]
    runs: int
    threads: int
    seed: int
    notes: tuple[str, ...] = ()


def _model_drift(raw: list[dict[str, object]]) -> ModelDrift:
    outputs = tuple(OutputDrift(**d) for d in raw)  # type: ignore[arg-type]
    agreements = [o.argmax_agreement for o in outputs if o.argmax_agreement is not None]
    return ModelDrift(
        outputs=outputs,
        max_abs=max((o.max_abs for o in outputs), default=0.0),
        mean_abs=max((o.mean_abs for o in outputs), default=0.0),
        cosine_similarity=min((o.cosine_similarity for o in outputs), default=1.0),
        argmax_agreement=min(agreements) if agreements else None,
    )


def _check_same_inputs(
    first: Path, first_specs: Sequence[InputSpec], path: Path, specs: Sequence[InputSpec]
) -> None:
    """Every model must take the first model's inputs (same count and dims; dtypes may differ)."""
    theirs = [(s.name, s.dims) for s in specs]
    ours = [(s.name, s.dims) for s in first_specs]
    same = len(theirs) == len(ours) and all(a[1] == b[1] for a, b in zip(theirs, ours, strict=True))
    if not same:
        raise ShapeBindingError(
            path, f"its inputs {theirs} differ from those of {first.name} {ours}; cannot compare"
        )


def compare_models(
    paths: Sequence[Path],
    bindings: Bindings | None = None,
    *,
    runs: int = 10,
    arena_settings: Sequence[bool] = (True, False),
    threads: int = 2,
    seed: int = 0,
    measure_timeout_s: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Compare models side by side; the first is the reference for drift.

    Args:
        paths: two or more ONNX files (one is allowed: no drift is computed).
        bindings: shapes for the first model's symbolic inputs; every model gets the same feeds.
        runs: timed runs per measurement (after one warm-up run).
        arena_settings: measure with onnxruntime's CPU memory arena on and/or off.
        threads: onnxruntime intra-op threads in the children.
        seed: seed of the generated inputs.
        measure_timeout_s: time limit of each child process.
        progress: called with a short line before each step (for a progress display).

    Returns:
        The comparison; numbers are labelled counted/estimated/measured in the field docs.

    Raises:
        ModelFormatError: a path is not a readable ONNX file.
        ShapeBindingError: the bindings do not fit the first model's inputs.
        MeasurementError: a child process failed.
    """
    if not paths:
        raise ModelFormatError(None, "compare needs at least one model")
    if runs < 1:
        raise ValueError("runs must be >= 1")
    bindings = bindings or Bindings()
    say = progress or (lambda _line: None)
    censuses = [weight_census(path) for path in paths]  # also rejects unreadable files up front
    specs = input_specs(paths[0], bindings)
    for path in paths[1:]:
        _check_same_inputs(paths[0], specs, path, input_specs(path, bindings))
    feeds = make_feeds(specs, seed=seed)
    drift_raw: list[object] = [None]
    if len(paths) > 1:
        say(f"running all {len(paths)} models on the same inputs for drift")
        drift_raw = run_drift(list(paths), feeds, threads=threads, timeout_s=measure_timeout_s)
    models = []
    notes: list[str] = []
    for index, (path, census) in enumerate(zip(paths, censuses, strict=True)):
        measured = []
        for arena in arena_settings:
            say(f"measuring {path.name} (arena {'on' if arena else 'off'}, {runs} runs)")
            m = measure_inference(
                path,
                bindings,
                runs=runs,
                arena=arena,
                threads=threads,
                timeout_s=measure_timeout_s,
            )
            latency = LatencyStats(m.latency_median_s * 1000.0, m.latency_p90_s * 1000.0, m.runs)
            measured.append(MeasuredRun(arena, m.peak_bytes, latency))
        raw = drift_raw[index]
        estimate, note = estimate_inference_bytes(path, bindings)
        if note:
            notes.append(note)
        models.append(
            ModelComparison(
                path=str(path),
                parameters=census.parameters,
                weight_bytes_by_dtype=dict(census.weight_bytes_by_dtype),
                on_disk_bytes=census.on_disk_bytes,
                estimated_inference_bytes=estimate,
                measured=tuple(measured),
                drift=_model_drift(raw) if isinstance(raw, list) else None,
            )
        )
    return Comparison(tuple(models), specs, runs, threads, seed, tuple(notes))


def comparison_to_dict(comparison: Comparison) -> dict[str, object]:
    """The JSON form: ``{"models": [{"path", "parameters", "size", "measured", "drift"}], ...}``."""
    models = []
    for m in comparison.models:
        arena_on = next((r for r in m.measured if r.arena), m.measured[0] if m.measured else None)
        measured: dict[str, object] | None = None
        if arena_on is not None:
            measured = {
                "peak_bytes": arena_on.peak_bytes,
                "latency_ms": {
                    "median": arena_on.latency.median_ms,
                    "p90": arena_on.latency.p90_ms,
                },
                "runs": arena_on.latency.runs,
                "by_arena": [
                    {
                        "arena": r.arena,
                        "peak_bytes": r.peak_bytes,
                        "latency_ms": {"median": r.latency.median_ms, "p90": r.latency.p90_ms},
                    }
                    for r in m.measured
                ],
            }
        drift = None
        if m.drift is not None:
            drift = {
                "max_abs": m.drift.max_abs,
                "mean_abs": m.drift.mean_abs,
                "cosine_similarity": m.drift.cosine_similarity,
                "argmax_agreement": m.drift.argmax_agreement,
                "outputs": [vars(o) for o in m.drift.outputs],
            }
        models.append(
            {
                "path": m.path,
                "parameters": m.parameters,
                "size": {
                    "on_disk_bytes": m.on_disk_bytes,
                    "weight_bytes_by_dtype": dict(m.weight_bytes_by_dtype),
                    "estimated_inference_bytes": m.estimated_inference_bytes,
                },
                "measured": measured,
                "drift": drift,
            }
        )
    return {
        "models": models,
        "inputs": [
            {"name": s.name, "data_type": s.elem_type.name, "dims": list(s.dims)}
            for s in comparison.inputs
        ],
        "runs": comparison.runs,
        "threads": comparison.threads,
        "seed": comparison.seed,
        "notes": list(comparison.notes),
    }
