"""Liveness of activation tensors over a graph's execution order (private to ``memory``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import onnx

from graph_analysis.shapes import MAIN_GRAPH, node_label

__all__ = [
    "ALIAS_OPS",
    "INPLACE_OPS",
    "GraphLiveness",
    "LiveTensor",
    "analyze_liveness",
    "outer_references",
    "subgraphs_of",
]

#: Ops whose output is a view of their first input in onnxruntime (and in PyTorch): no new buffer,
#: but the input's buffer stays alive as long as the view is used.
ALIAS_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"})

#: ``(domain, op_type) -> (input, output)``: kernels onnxruntime lets write their output into that
#: input's buffer when the input dies there (``KernelDefBuilder::MayInplace``) and that the
#: liveness model follows: the NCHWc ``Conv`` adds its fused ``Sum`` input in place
#: (``contrib_ops/cpu/nchwc_ops.cc``), which only graphs onnxruntime optimized contain.
INPLACE_OPS: Mapping[tuple[str, str], tuple[int, int]] = {("com.microsoft.nchwc", "Conv"): (3, 0)}


#: :attr:`GraphLiveness.buffer_spans` is recorded for graphs of up to this many buffers (beyond,
#: the arena replay that reads them is too slow and they would take ~100 bytes each: 100 MB on a
#: 10^6-node graph); past it the spans are empty.
MAX_SPANS = 200_000


@dataclass(frozen=True)
class LiveTensor:
    """A tensor live at the peak: name, graph path and bytes."""

    name: str
    graph: str
    nbytes: int


@dataclass(frozen=True)
class GraphLiveness:
    """Activation liveness of one graph (subgraphs folded into the node that runs them).

    Attributes:
        peak_bytes: the most activation bytes live at once (buffers, aliases counted once).
        sum_bytes: the naive sum: every activation tensor's bytes, no reuse, aliases included
            (for a node with several subgraphs, the largest subgraph sum: one branch runs).
        largest_tensor_bytes: the largest single activation tensor.
        peak_step: index in the execution order of the node running at the peak (-1: before any).
        peak_nodes: ``label (op_type)`` of the node(s) running at the peak.
        peak_tensors: the buffers live at the peak, largest first.
        subgraph_peak_bytes: the largest peak of a nested subgraph (0 without subgraphs).
        tensor_bytes: bytes of every activation tensor of this graph, by name.
        step_bytes: activation bytes live while each node runs, in execution order (a node with
            subgraphs adds their peak).
        step_labels: the node of each step, ``label`` as :func:`graph_analysis.shapes.node_label`.
        buffer_spans: ``(bytes, first_step, last_step)`` of every buffer in creation order (graph
            inputs first, at step -1; a last step of ``len(step_bytes)``: held to the end), the
            allocation order :func:`graph_analysis._arena.simulate_arena` replays; empty past
            :data:`MAX_SPANS` buffers.
        step_scratch: bytes held only while each step runs (kernel workspaces, subgraph peaks).
    """

    peak_bytes: int
    sum_bytes: int
    largest_tensor_bytes: int
    peak_step: int
    peak_nodes: tuple[str, ...]
    peak_tensors: tuple[LiveTensor, ...]
    subgraph_peak_bytes: int
    tensor_bytes: Mapping[str, int]
    step_bytes: tuple[int, ...] = ()
    step_labels: tuple[str, ...] = ()
    buffer_spans: tuple[tuple[int, int, int], ...] = ()
    step_scratch: tuple[int, ...] = ()


def subgraphs_of(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """``(attribute_suffix, graph)`` for each subgraph attribute of ``node``."""
    found: list[tuple[str, onnx.GraphProto]] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            found.append((attr.name, attr.g))
        elif attr.type == onnx.AttributeProto.GRAPHS:
            found.extend((f"{attr.name}[{k}]", g) for k, g in enumerate(attr.graphs))
    return found


def outer_references(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph uses without defining them: outer-scope values it keeps alive."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(i for i in node.input if i)
        for _suffix, sub in subgraphs_of(node):
            used |= outer_references(sub)
        defined.update(o for o in node.output if o)
    used.update(o.name for o in graph.output)
    return used - defined


def analyze_liveness(
    graph: onnx.GraphProto,
    size_of: Callable[[str, str], int],
    *,
    stored: Callable[[str], frozenset[str]],
    path: str = MAIN_GRAPH,
    weights: frozenset[str] = frozenset(),
    inputs_live_whole_run: bool = True,
    alias_ops: frozenset[str] = ALIAS_OPS,
    inplace_ops: Mapping[tuple[str, str], tuple[int, int]] = INPLACE_OPS,
    workspace_of: Callable[[str, onnx.NodeProto], int] | None = None,
) -> GraphLiveness:
    """Peak and sum of live activation bytes over ``graph``'s node order.

    A tensor lives from the step of its producer to the step of its last consumer (a node using it
    directly or from inside one of its subgraphs); graph outputs live to the end; graph inputs (fed
    by the caller) live for the whole run when ``inputs_live_whole_run``. Outputs of ``alias_ops``
    share their input's buffer. A node with subgraphs adds, at its step, the largest peak of its
    subgraphs (their internal tensors live while the node runs).

    Args:
        graph: the graph, its nodes in execution (topological) order.
        size_of: ``(graph_path, name) -> bytes`` for any activation tensor.
        path: this graph's path (for ``size_of`` and labels).
        stored: ``graph_path -> names`` of the tensors stored in that graph (initializers and
            Constant outputs: ``graph_analysis._weights.ModelWeights.names_in``, the one reading).
        weights: names of weights visible from outer scopes (set by the recursion): not
            activations.
        inputs_live_whole_run: keep graph inputs live throughout (True for the main graph).
        alias_ops: op types whose first output aliases the first input.
        inplace_ops: ``(domain, op_type) -> (input, output)``: the output takes over the input's
            buffer when this node is the input's last reader (an activation of the same size, no
            view of it alive, not a graph input or output).
        workspace_of: ``(graph_path, node) -> bytes`` of scratch the node's kernel holds while it
            runs (beyond its inputs and outputs), added at its step.
    """
    local_weights = set(weights) | stored(path)
    # Frozen for subgraphs only when the set changed since the last freeze: re-freezing after every
    # weight-only node was quadratic on quantized graphs (a DequantizeLinear per weight).
    frozen_weights: frozenset[str] | None = None

    num_steps = len(graph.node)
    end = num_steps  # "after the last node"
    buffer_of: dict[str, str] = {}  # tensor -> root buffer
    start: dict[str, int] = {}  # buffer -> first step live
    last: dict[str, int] = {}  # buffer -> last step live
    tensor_bytes: dict[str, int] = {}

    for value_info in graph.input:
        if value_info.name in local_weights:
            continue
        buffer_of[value_info.name] = value_info.name
        tensor_bytes[value_info.name] = size_of(path, value_info.name)
        start[value_info.name] = -1
        last[value_info.name] = end if inputs_live_whole_run else -1

    # Last direct reader of each name (graph outputs: the end), for in-place outputs: made when
    # the first in-place node is met (only optimized graphs have them; a pass over every node).
    last_read: dict[str, int] = {}

    def last_reads() -> dict[str, int]:
        if not last_read:
            for step, node in enumerate(graph.node):
                for name in node.input:
                    last_read[name] = step
                for _suffix, sub in subgraphs_of(node) if node.attribute else []:
                    for name in outer_references(sub):
                        last_read[name] = step
            for value_info in graph.output:
                last_read[value_info.name] = end
        return last_read

    views: dict[str, int] = {}  # buffer -> views of it made so far

    sub_peaks: list[int] = [0] * num_steps
    scratch: list[int] = [0] * num_steps  # kernel workspaces
    sub_sums: list[int] = [0] * num_steps
    sub_labels: list[str] = [""] * num_steps
    for step, node in enumerate(graph.node):
        inputs = [i for i in node.input if i]
        used = list(inputs)
        subgraphs = subgraphs_of(node) if node.attribute else []
        for suffix, sub in subgraphs:
            if frozen_weights is None:
                frozen_weights = frozenset(local_weights)
            label = node_label(node, step)
            used.extend(sorted(outer_references(sub)))
            sub_result = analyze_liveness(
                sub,
                size_of,
                path=f"{path}/{label}.{suffix}",
                stored=stored,
                weights=frozen_weights,
                inputs_live_whole_run=True,
                alias_ops=alias_ops,
                inplace_ops=inplace_ops,
                workspace_of=workspace_of,
            )
            sub_sums[step] = max(sub_sums[step], sub_result.sum_bytes)
            if sub_result.peak_bytes > sub_peaks[step]:
                sub_peaks[step] = sub_result.peak_bytes
                sub_labels[step] = f"{label}.{suffix}"
        if workspace_of is not None:
            scratch[step] = workspace_of(path, node)
        for name in used:
            root = buffer_of.get(name)
            if root is not None:
                last[root] = max(last[root], step)
        is_alias = node.op_type in alias_ops and node.domain in ("", "ai.onnx")
        if inputs and all(i in local_weights for i in inputs) and not subgraphs:
            # Computed from weights only (Identity of a tied weight, Transpose of a weight in a
            # training-mode export): onnxruntime constant-folds it at session creation.
            local_weights.update(o for o in node.output if o)
            frozen_weights = None
            continue
        for k, out in enumerate(node.output):
            if not out or out in local_weights:
                continue
            tensor_bytes[out] = size_of(path, out)
            source = buffer_of.get(node.input[0]) if is_alias and k == 0 and node.input else None
            inplace = inplace_ops.get((node.domain, node.op_type))
            if source is None and inplace is not None and inplace[1] == k:
                source = _inplace_source(
                    node.input[inplace[0]] if len(node.input) > inplace[0] else "",
                    step,
                    tensor_bytes[out],
                    buffer_of=buffer_of,
                    start=start,
                    last_read=last_reads(),
                    views=views,
                    tensor_bytes=tensor_bytes,
                )
            if source is not None:
                buffer_of[out] = source
                views[source] = views.get(source, 0) + 1
            else:
                buffer_of[out] = out
                start[out] = step
                last[out] = step  # an output nobody reads still exists while its node runs

    for value_info in graph.output:
        root = buffer_of.get(value_info.name)
        if root is not None:
            last[root] = end

    # Sweep: +bytes at start, -bytes after last.
    delta = [0] * (num_steps + 2)
    for root, first in start.items():
        nb = tensor_bytes[root]
        delta[first + 1] += nb
        delta[min(last[root], num_steps - 1) + 2] -= nb
    live = 0
    peak = -1
    peak_step = -1
    steps: list[int] = []
    # Index 0 is "before the first node" (inputs only); index s+1 is node s running.
    for index in range(num_steps + 1):
        live += delta[index]
        total = live + (sub_peaks[index - 1] + scratch[index - 1] if index >= 1 else 0)
        if index >= 1:
            steps.append(total)
        if total > peak:
            peak, peak_step = total, index - 1
    peak = max(peak, 0)

    live_at_peak = [
        LiveTensor(root, path, tensor_bytes[root])
        for root, first in start.items()
        if first <= peak_step <= last[root] and tensor_bytes[root] > 0
    ]
    live_at_peak.sort(key=lambda t: (-t.nbytes, t.name))
    peak_nodes: tuple[str, ...] = ()
    if 0 <= peak_step < num_steps:
        node = graph.node[peak_step]
        peak_nodes = (f"{node_label(node, peak_step)} ({node.op_type})",)
        if sub_labels[peak_step]:
            peak_nodes += (f"{sub_labels[peak_step]} (subgraph peak {sub_peaks[peak_step]} B)",)
        if scratch[peak_step]:
            peak_nodes += (
                f"{node_label(node, peak_step)} (kernel workspace {scratch[peak_step]} B)",
            )
    return GraphLiveness(
        peak_bytes=peak,
        sum_bytes=sum(tensor_bytes.values()) + sum(sub_sums),
        largest_tensor_bytes=max(tensor_bytes.values(), default=0),
        peak_step=peak_step,
        peak_nodes=peak_nodes,
        peak_tensors=tuple(live_at_peak),
        subgraph_peak_bytes=max(sub_peaks, default=0),
        tensor_bytes=tensor_bytes,
        step_bytes=tuple(steps),
        step_labels=tuple(node_label(n, i) for i, n in enumerate(graph.node)),
        buffer_spans=tuple((tensor_bytes[root], first, last[root]) for root, first in start.items())
        if len(start) <= MAX_SPANS
        else (),
        step_scratch=tuple(a + b for a, b in zip(sub_peaks, scratch, strict=True)),
    )


def _inplace_source(
    name: str,
    step: int,
    nbytes: int,
    *,
    buffer_of: Mapping[str, str],
    start: Mapping[str, int],
    last_read: Mapping[str, int],
    views: Mapping[str, int],
    tensor_bytes: Mapping[str, int],
) -> str | None:
    """The buffer an in-place output at ``step`` takes over from input ``name``, or None: the input
    must be its own buffer (no view), made by a node (not a graph input), read last at ``step``,
    without views, and as large as the output."""
    if not name or buffer_of.get(name) != name or start.get(name, -1) < 0:
        return None
    if last_read.get(name) != step or views.get(name, 0) or tensor_bytes.get(name) != nbytes:
        return None
    return name
