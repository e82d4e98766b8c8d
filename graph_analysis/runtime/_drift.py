"""Output drift between two runs of (variants of) one model on identical inputs: pure numpy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["OutputDrift", "output_drift", "pair_outputs"]


@dataclass(frozen=True)
class OutputDrift:
    """How far one output of a variant is from the same output of the reference.

    Attributes:
        name: the reference output's name.
        max_abs: largest absolute element difference.
        mean_abs: mean absolute element difference.
        cosine_similarity: cosine of the angle between the two outputs flattened (1.0 = same
            direction; 1.0 as well when both are all zeros).
        argmax_agreement: for classifier-like outputs (floating, rank 2 or 3: batch[, sequence], classes;
            last axis >= 2; a rank-4 map such as a detector's heatmap is not one): the
            fraction of rows whose argmax over the last axis is the same; None otherwise.
        num_elements: elements compared.
    """

    name: str
    max_abs: float
    mean_abs: float
    cosine_similarity: float
    argmax_agreement: float | None
    num_elements: int


def output_drift(name: str, reference: np.ndarray, other: np.ndarray) -> OutputDrift:
    """Compare one output pair (computed in float64; shapes must match).

    Raises:
        ValueError: the shapes differ.
    """
    if reference.shape != other.shape:
        raise ValueError(
            f"output {name}: shape {other.shape} differs from the reference's {reference.shape}"
        )
    ref = np.asarray(reference, dtype=np.float64).ravel()
    oth = np.asarray(other, dtype=np.float64).ravel()
    if ref.size == 0:
        return OutputDrift(name, 0.0, 0.0, 1.0, None, 0)
    diff = np.abs(ref - oth)
    norms = float(np.linalg.norm(ref) * np.linalg.norm(oth))
    if norms == 0.0:
        cosine = 1.0 if float(np.abs(ref).max() + np.abs(oth).max()) == 0.0 else 0.0
    else:
        cosine = float(np.clip(np.dot(ref, oth) / norms, -1.0, 1.0))
    agreement = None
    if (
        np.issubdtype(reference.dtype, np.floating)
        and reference.ndim in (2, 3)
        and reference.shape[-1] >= 2
    ):
        ref_arg = np.argmax(reference.reshape(-1, reference.shape[-1]), axis=-1)
        oth_arg = np.argmax(other.reshape(-1, other.shape[-1]), axis=-1)
        agreement = float(np.mean(ref_arg == oth_arg))
    return OutputDrift(
        name, float(diff.max()), float(diff.mean()), cosine, agreement, int(ref.size)
    )


def pair_outputs(
    reference_names: Sequence[str], other_names: Sequence[str]
) -> list[tuple[str, str]]:
    """Match outputs by name when the two models share all names, else by position."""
    if set(reference_names) == set(other_names):
        return [(n, n) for n in reference_names]
    return list(zip(reference_names, other_names, strict=False))


def drift_all(
    reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]
) -> tuple[OutputDrift, ...]:
    """Drift of every paired output (pairs by name, else by position)."""
    pairs = pair_outputs(list(reference), list(other))
    return tuple(output_drift(r, reference[r], other[o]) for r, o in pairs)
