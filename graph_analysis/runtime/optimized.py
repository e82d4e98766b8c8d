"""The graph onnxruntime runs for a model: its own optimized graph, for the memory estimate.

onnxruntime at its default level (``ORT_ENABLE_ALL``) does not run the exported graph: it fuses
Conv with its activation and with a following Add (in place), runs float convolutions in MLAS's
NCHWc layout, with reorder copies at the boundaries and channel counts padded to the block size,
and fuses the decompositions exporters write (LayerNormalization, GELU, MatMul with its bias Add
or scale) into single ops, dropping their intermediate tensors. Its liveness peak and its arena
differ from the exported graph's (docs/memory.md, "Layout transforms").
:func:`executed_graph` has a child process create one session with ``optimized_model_filepath``
in a private temporary folder (removed afterwards, whatever happens) and returns the saved graph
for :func:`graph_analysis.memory.estimate_memory`'s ``executed_graph``; nothing is written
elsewhere. It costs one session creation (every weight read, about 2 x W of memory, seconds), so
it runs only for graphs with inline weights up to a limit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from graph_analysis._weights import ModelWeights, Reading, read_weights, weights_and_skeleton
from graph_analysis.bindings import Bindings
from graph_analysis.errors import ModelsizeError
from graph_analysis.loading import load_skeleton, read_model
from graph_analysis.memory import ExecutedGraph, MemoryEstimate, estimate_memory
from graph_analysis.runtime._child_process import run_json_child
from graph_analysis.shapes import iter_graphs

__all__ = [
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_WEIGHT_BYTES",
    "executed_estimator",
    "executed_graph",
    "executed_graph_reason",
]

#: Largest total weight bytes for which the optimized graph is made (a session creation holds
#: about 2 x W for the time it takes).
DEFAULT_MAX_WEIGHT_BYTES = 256 << 20

#: Most nodes for which the optimized graph is made (onnxruntime's optimizers and the shape
#: inference of the result grow with the graph; convolutional networks have hundreds).
DEFAULT_MAX_NODES = 20_000


def executed_graph_reason(
    stored: ModelWeights, *, max_weight_bytes: int = DEFAULT_MAX_WEIGHT_BYTES
) -> str | None:
    """Why the optimized graph is not made for a model with these stored tensors, or None.

    Models with external data or more than ``max_weight_bytes`` of weights are left to the
    exported graph (the cost of a session creation). Every other graph is made: graphs with
    float convolutions change layout (NCHWc), and the others change too (the fusions of
    LayerNormalization, GELU and MatMul-Add decompositions drop intermediate tensors: GPT-2's
    exported graph over-counted its first run by 16 MiB, docs/memory.md)."""
    if any(t.external for t in stored.tensors):
        return "external data: the optimized graph is not made"
    total = sum(t.nbytes for t in stored.tensors)
    if total > max_weight_bytes:
        return (
            f"{total / (1 << 20):.0f} MiB of weights, over the {max_weight_bytes / (1 << 20):.0f} "
            "MiB limit for making the optimized graph"
        )
    return None


def executed_graph(
    path: str | Path,
    *,
    threads: int | None = 1,
    max_weight_bytes: int = DEFAULT_MAX_WEIGHT_BYTES,
    max_nodes: int = DEFAULT_MAX_NODES,
    timeout_s: float = 300.0,
    reading: Reading | None = None,
) -> tuple[ExecutedGraph | None, str | None]:
    """onnxruntime's optimized graph of the model at ``path`` and None, or None and why not.

    A model outside the limits (:func:`executed_graph_reason`) or one onnxruntime cannot load
    gets the reason instead: the estimate then reads the exported graph, and says so.

    ``reading``: the model's one reading (:func:`graph_analysis._weights.weights_and_skeleton`)
    when the caller has it; read here otherwise.

    Raises:
        ModelFormatError: and the other errors of :func:`graph_analysis.loading.read_model`.
    """
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size > max_weight_bytes + (64 << 20):  # inline weights over the limit, or a huge graph
        return None, (
            f"a {size / (1 << 20):.0f} MiB model file: the optimized graph is made up to "
            f"{max_weight_bytes / (1 << 20):.0f} MiB of weights"
        )
    stored, skeleton, _table = reading if reading is not None else weights_and_skeleton(path)
    nodes = len(skeleton.graph.node)
    if nodes <= max_nodes:
        nodes = sum(len(graph.node) for _path, graph in iter_graphs(skeleton.graph))
    if nodes > max_nodes:
        return None, f"{nodes} nodes: the optimized graph is made up to {max_nodes}"
    reason = executed_graph_reason(stored, max_weight_bytes=max_weight_bytes)
    if reason is not None:
        return None, reason
    with tempfile.TemporaryDirectory(prefix="modelsize-optimized-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        try:
            result = run_json_child(
                "graph_analysis.runtime._optimize_child",
                {"path": str(Path(path).resolve()), "out": str(out), "threads": threads},
                path=path,
                label="onnxruntime optimizing child",
                timeout_s=timeout_s,
            )
            model_file = read_model(out)
            optimized_stored = read_weights(model_file)
            skeleton = load_skeleton(model_file)
        except ModelsizeError as e:
            return None, f"onnxruntime's optimized graph could not be made: {e.message}"
    block = result.get("nchwc_block_size")
    description = (
        f"onnxruntime {result.get('onnxruntime_version')} {result.get('level')} optimized graph"
        + (f", NCHWc block {block}" if block else "")
    )
    code = result.get("session_file_bytes")
    return (
        ExecutedGraph(
            skeleton,
            optimized_stored,
            block,
            description,
            session_code_bytes=int(code) if isinstance(code, int) else None,
        ),
        None,
    )


def executed_estimator(
    path: str | os.PathLike[str], *, executed: bool = True, reading: Reading | None = None
) -> Callable[..., MemoryEstimate]:
    """Estimates of ``path`` as the ``memory`` command makes them, for any bindings.

    One reading of the model, and (with ``executed``, where :func:`executed_graph` applies) one
    optimized graph made in a child; the returned ``estimate(bindings, **options)`` (options as
    :func:`graph_analysis.memory.estimate_memory` takes them) reads the activations from it, or
    from the exported graph with the reason in ``assumptions["executed_graph_not_used"]``. Every
    command that shows an inference estimate (memory, measure, compare, profile, check, fit) uses
    this, so they agree; ``scan`` keeps the static estimate (no child per model). ``reading``:
    the model's one reading (:func:`graph_analysis._weights.weights_and_skeleton`) when the
    caller has it; read here otherwise.

    Raises:
        ModelFormatError: and the other errors of :func:`graph_analysis.loading.read_model`.
    """
    reading = reading if reading is not None else weights_and_skeleton(path)
    made, not_made = (
        executed_graph(Path(path), reading=reading)
        if executed
        else (None, "static estimate asked for")
    )

    def estimate(bindings: Bindings | None = None, **options: Any) -> MemoryEstimate:
        result = estimate_memory(
            Path(path), bindings, executed_graph=made, reading=reading, **options
        )
        if not_made is None:
            return result
        return replace(
            result, assumptions={**result.assumptions, "executed_graph_not_used": not_made}
        )

    return estimate
