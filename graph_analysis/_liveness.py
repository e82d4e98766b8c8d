"""Liveness of activation tensors over a graph's execution order (private to ``memory``)."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import onnx

from graph_analysis._graph import NodeTable
from graph_analysis._weights import enclosing_scopes
from graph_analysis.shapes import MAIN_GRAPH, node_label

__all__ = [
    "ALIAS_OPS",
    "INPLACE_OPS",
    "GraphLiveness",
    "LiveTensor",
    "NodeLabels",
    "TensorSizes",
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

#: :attr:`GraphLiveness.peak_tensors` keeps this many largest buffers live at the peak.
PEAK_TENSORS = 10


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
        peak_tensors: the largest buffers live at the peak (up to :data:`PEAK_TENSORS`), largest
            first.
        subgraph_peak_bytes: the largest peak of a nested subgraph (0 without subgraphs).
        step_bytes: activation bytes live while each node runs, in execution order (a node with
            subgraphs adds their peak).
        step_labels: the node of each step, ``label`` as :func:`graph_analysis.shapes.node_label`.
        buffer_spans: ``(bytes, first_step, last_step)`` of every buffer in creation order (graph
            inputs first, at step -1; a last step of ``len(step_bytes)``: held to the end), the
            allocation order :func:`graph_analysis._arena.simulate_arena` replays; empty past
            :data:`MAX_SPANS` buffers.
        buffer_names: the tensor that makes each buffer of ``buffer_spans`` (its first tensor;
            graph inputs by their names), empty with it.
        step_scratch: bytes held only while each step runs (kernel workspaces, subgraph peaks),
            for the arena replay: empty with ``buffer_spans``.
    """

    peak_bytes: int
    sum_bytes: int
    largest_tensor_bytes: int
    peak_step: int
    peak_nodes: tuple[str, ...]
    peak_tensors: tuple[LiveTensor, ...]
    subgraph_peak_bytes: int
    step_bytes: tuple[int, ...] = ()
    step_labels: Sequence[str] = ()
    buffer_spans: tuple[tuple[int, int, int], ...] = ()
    buffer_names: tuple[str, ...] = ()
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


class TensorSizes:
    """Bytes of every tensor of a model, by graph.

    A graph given with its :class:`~graph_analysis._graph.NodeTable` keeps the bytes of its edges
    in an array indexed by the table's ids (no table of names of its own: the liveness of that
    graph reads the array as it is); any other name of it, and every other graph, by name.

    Calling it, ``sizes(graph_path, name)``, gives the bytes of ``name`` as seen from
    ``graph_path``: the graph's own tensor, else the nearest enclosing graph's (subgraphs see
    outer names), else 0.
    """

    def __init__(self, tables: Mapping[str, NodeTable] | None = None) -> None:
        self._tables: dict[str, NodeTable] = dict(tables or {})
        # table-backed graphs: the bytes by id, and which ids were set
        self._nbytes = {g: array("q", bytes(8 * len(t.names))) for g, t in self._tables.items()}
        self._known = {g: bytearray(len(t.names)) for g, t in self._tables.items()}
        self._by_name: dict[str, dict[str, int]] = {}

    def _id(self, graph: str, name: str) -> int | None:
        table = self._tables.get(graph)
        return table.ids.get(name) if table is not None else None

    def set(self, graph: str, name: str, nbytes: int) -> None:
        """Record (or replace) the bytes of ``name`` in ``graph``."""
        t = self._id(graph, name)
        if t is not None:
            self._nbytes[graph][t] = nbytes
            self._known[graph][t] = 1
        else:
            self._by_name.setdefault(graph, {})[name] = nbytes

    def _own(self, graph: str, name: str) -> int | None:
        t = self._id(graph, name)
        if t is not None and self._known[graph][t]:
            return self._nbytes[graph][t]
        return self._by_name.get(graph, {}).get(name)

    def __call__(self, graph: str, name: str) -> int:
        for scope in enclosing_scopes(graph):
            nbytes = self._own(scope, name)
            if nbytes is not None:
                return nbytes
        return 0

    def of_table(self, graph: str, table: NodeTable) -> array[int]:
        """The bytes of each id of ``table`` (the edges of ``graph``), as seen from ``graph``."""
        if self._tables.get(graph) is not table:
            return array("q", [self(graph, name) for name in table.names])
        nbytes = array("q", self._nbytes[graph])
        known = np.frombuffer(self._known[graph], dtype=np.uint8) if len(nbytes) else None
        if known is not None:
            for t in np.flatnonzero(known == 0).tolist():  # edges without a shape of their own
                nbytes[t] = self(graph, table.names[t])
        return nbytes


#: :attr:`_Tensors.first` of an id not defined (yet) as an activation of the graph.
_UNDEFINED = -2


def analyze_liveness(
    graph: onnx.GraphProto,
    sizes: TensorSizes,
    *,
    stored: Callable[[str], frozenset[str]],
    path: str = MAIN_GRAPH,
    weights: frozenset[str] = frozenset(),
    inputs_live_whole_run: bool = True,
    alias_ops: frozenset[str] = ALIAS_OPS,
    inplace_ops: Mapping[tuple[str, str], tuple[int, int]] = INPLACE_OPS,
    workspace_of: Callable[[str, onnx.NodeProto], int] | None = None,
    table: NodeTable | None = None,
) -> GraphLiveness:
    """Peak and sum of live activation bytes over ``graph``'s node order.

    A tensor lives from the step of its producer to the step of its last consumer (a node using it
    directly or from inside one of its subgraphs); graph outputs live to the end; graph inputs (fed
    by the caller) live for the whole run when ``inputs_live_whole_run``. Outputs of ``alias_ops``
    share their input's buffer. A node with subgraphs adds, at its step, the largest peak of its
    subgraphs (their internal tensors live while the node runs).

    The sweep reads the graph's :class:`~graph_analysis._graph.NodeTable` (integer ids of edges,
    flat arrays of each node's inputs and outputs); each id's buffer and first and last steps are
    kept in flat integer arrays, and the sum over steps runs in numpy. Only nodes with subgraphs
    and, with ``workspace_of``, every node are visited as protobuf (on a 10^6-node graph the
    name-keyed tables, per-step tuples and labels of the former sweep took 330 MB and 8 s).

    Args:
        graph: the graph, its nodes in execution (topological) order.
        sizes: the bytes of every activation tensor.
        path: this graph's path (in ``sizes`` and labels).
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
        table: ``graph``'s node table when the caller has it (made from ``graph`` otherwise).
    """
    table = table if table is not None else NodeTable.of_proto(graph)
    nodes = graph.node
    num_steps = len(table)
    end = num_steps  # "after the last node"
    names, ids = table.names, table.ids
    local_weights = set(weights) | stored(path)
    is_weight = bytearray(len(names))
    for name in local_weights:
        t = ids.get(name)
        if t is not None:
            is_weight[t] = 1
    # Frozen for subgraphs only when the set changed since the last freeze: re-freezing after every
    # weight-only node was quadratic on quantized graphs (a DequantizeLinear per weight).
    frozen_weights: frozenset[str] | None = None

    tensors = _Tensors(table, sizes.of_table(path, table), path)
    root, first, last = tensors.root, tensors.first, tensors.last
    for value_info in graph.input:
        t = ids.get(value_info.name)
        if t is not None and not is_weight[t]:
            tensors.define(t, -1, end if inputs_live_whole_run else -1)

    alias = {
        k
        for k, (domain, op_type) in enumerate(table.op_keys)
        if op_type in alias_ops and domain in ("", "ai.onnx")
    }
    inplace_of = {k: inplace_ops[key] for k, key in enumerate(table.op_keys) if key in inplace_ops}
    # Last direct reader of each id (graph outputs: the end), for in-place outputs: made when the
    # first in-place node is met (only optimized graphs have them).
    last_read: list[np.ndarray] = []

    def last_reads() -> np.ndarray:
        if not last_read:
            reads = np.full(len(names), -1, dtype=np.int64)
            in_ids = table.in_array()
            valid = in_ids >= 0
            np.maximum.at(reads, in_ids[valid], table.readers()[valid])
            for step in table.with_subgraphs:
                for _suffix, sub in subgraphs_of(nodes[step]):
                    for name in outer_references(sub):
                        t = ids.get(name)
                        if t is not None:
                            reads[t] = max(reads[t], step)
            for value_info in graph.output:
                t = ids.get(value_info.name)
                if t is not None:
                    reads[t] = end
            last_read.append(reads)
        return last_read[0]

    views: dict[int, int] = {}  # buffer id -> views of it made so far
    held: dict[int, tuple[int, int]] = {}  # step -> (subgraph peak, kernel workspace), if any
    sub_sums = 0  # per node with subgraphs, its largest subgraph's sum
    sub_labels: dict[int, str] = {}
    with_subgraphs = set(table.with_subgraphs)
    in_ptr, in_ids, out_ptr, out_ids, ops = (
        table.in_ptr,
        table.in_ids,
        table.out_ptr,
        table.out_ids,
        table.op,
    )
    for step in range(num_steps):
        a, b = in_ptr[step], in_ptr[step + 1]
        direct = [t for t in in_ids[a:b] if t >= 0]
        reads = direct
        subgraph_node = step in with_subgraphs
        if subgraph_node:
            reads = list(direct)
            node = nodes[step]
            sub_peak = sub_sum = 0
            for suffix, sub in subgraphs_of(node):
                if frozen_weights is None:
                    frozen_weights = frozenset(local_weights)
                label = node_label(node, step)
                reads.extend(
                    t for t in (ids.get(n) for n in sorted(outer_references(sub))) if t is not None
                )
                sub_result = analyze_liveness(
                    sub,
                    sizes,
                    path=f"{path}/{label}.{suffix}",
                    stored=stored,
                    weights=frozen_weights,
                    inputs_live_whole_run=True,
                    alias_ops=alias_ops,
                    inplace_ops=inplace_ops,
                    workspace_of=workspace_of,
                )
                sub_sum = max(sub_sum, sub_result.sum_bytes)
                if sub_result.peak_bytes > sub_peak:
                    sub_peak = sub_result.peak_bytes
                    sub_labels[step] = f"{label}.{suffix}"
            sub_sums += sub_sum
            if sub_peak:
                held[step] = (sub_peak, 0)
        if workspace_of is not None:
            workspace = workspace_of(path, nodes[step])
            if workspace:
                held[step] = (held.get(step, (0, 0))[0], workspace)
        for t in reads:
            if first[t] != _UNDEFINED:
                r = root[t]
                last[r] = max(last[r], step)
        oa, ob = out_ptr[step], out_ptr[step + 1]
        if direct and not subgraph_node and all(is_weight[t] for t in direct):
            # Computed from weights only (Identity of a tied weight, Transpose of a weight in a
            # training-mode export): onnxruntime constant-folds it at session creation.
            for t in out_ids[oa:ob]:
                if t >= 0:
                    is_weight[t] = 1
                    local_weights.add(names[t])
            frozen_weights = None
            continue
        k = ops[step]
        inplace = inplace_of.get(k)
        for j in range(oa, ob):
            t = out_ids[j]
            if t < 0 or is_weight[t]:
                continue
            source = -1
            if j == oa and k in alias and a < b:
                s0 = in_ids[a]
                if s0 >= 0 and first[s0] != _UNDEFINED:
                    source = root[s0]
            if source < 0 and inplace is not None and inplace[1] == j - oa:
                source = _inplace_source(
                    in_ids[a + inplace[0]] if b - a > inplace[0] else -1,
                    t,
                    step,
                    tensors=tensors,
                    last_read=last_reads(),
                    views=views,
                )
            # an output nobody reads still exists while its node runs
            tensors.define(t, step, step, source)
            if source >= 0:
                views[source] = views.get(source, 0) + 1

    for value_info in graph.output:
        t = ids.get(value_info.name)
        if t is not None and first[t] != _UNDEFINED:
            last[root[t]] = end
    return tensors.sweep(graph, num_steps, held=held, sub_sums=sub_sums, sub_labels=sub_labels)


class _Tensors:
    """The edges of one graph by the ids of its node table: root buffer, bytes, first and last
    step of each (``_UNDEFINED`` until the graph defines it)."""

    def __init__(self, table: NodeTable, nbytes: array[int], path: str) -> None:
        self.names, self.path = table.names, path
        n = len(self.names)
        self.nbytes = nbytes
        self.root = array("q", range(n))
        self.first = array("q", [_UNDEFINED]) * n
        self.last = array("q", [_UNDEFINED]) * n

    def define(self, t: int, first: int, last: int, source: int = -1) -> None:
        """Edge ``t`` defined at ``first``: its own buffer, or a view of buffer ``source``."""
        self.root[t] = t if source < 0 else source
        self.first[t] = first
        self.last[t] = last

    def name(self, t: int) -> str:
        return self.names[t]

    def sweep(
        self,
        graph: onnx.GraphProto,
        num_steps: int,
        *,
        held: Mapping[int, tuple[int, int]],
        sub_sums: int,
        sub_labels: Mapping[int, str],
    ) -> GraphLiveness:
        """The liveness: +bytes at a buffer's first step, -bytes after its last."""
        ids = np.arange(len(self.root), dtype=np.int64)
        nbytes = np.frombuffer(self.nbytes, dtype=np.int64) if len(ids) else ids
        first = np.frombuffer(self.first, dtype=np.int64) if len(ids) else ids
        defined = first != _UNDEFINED
        buffers = ids[
            defined & ((np.frombuffer(self.root, dtype=np.int64) if len(ids) else ids) == ids)
        ]
        starts = first[buffers]
        ends = (np.frombuffer(self.last, dtype=np.int64) if len(ids) else ids)[buffers]
        sizes = nbytes[buffers]
        delta = np.zeros(num_steps + 2, dtype=np.int64)
        np.add.at(delta, starts + 1, sizes)
        np.add.at(delta, np.minimum(ends, num_steps - 1) + 2, -sizes)
        # Index 0 is "before the first node" (inputs only); index s+1 is node s running.
        totals = np.cumsum(delta[: num_steps + 1])
        scratch = np.zeros(num_steps, dtype=np.int64)
        for step, (sub_peak, workspace) in held.items():
            scratch[step] = sub_peak + workspace
        totals[1:] += scratch
        index = int(np.argmax(totals))  # the first step at the peak
        peak, peak_step = max(int(totals[index]), 0), index - 1

        at_peak = buffers[(starts <= peak_step) & (peak_step <= ends) & (sizes > 0)]
        live_at_peak = heapq.nsmallest(
            PEAK_TENSORS,
            (LiveTensor(self.name(t), self.path, int(nbytes[t])) for t in at_peak.tolist()),
            key=lambda live: (-live.nbytes, live.name),
        )
        peak_nodes: tuple[str, ...] = ()
        if 0 <= peak_step < num_steps:
            node = graph.node[peak_step]
            peak_nodes = (f"{node_label(node, peak_step)} ({node.op_type})",)
            sub_peak, workspace = held.get(peak_step, (0, 0))
            if peak_step in sub_labels:
                peak_nodes += (f"{sub_labels[peak_step]} (subgraph peak {sub_peak} B)",)
            if workspace:
                peak_nodes += (f"{node_label(node, peak_step)} (kernel workspace {workspace} B)",)
        spans: tuple[tuple[int, int, int], ...] = ()
        span_names: tuple[str, ...] = ()
        if len(buffers) <= MAX_SPANS:
            spans = tuple(zip(sizes.tolist(), starts.tolist(), ends.tolist(), strict=True))
            span_names = tuple(self.name(t) for t in buffers.tolist())
        return GraphLiveness(
            peak_bytes=peak,
            sum_bytes=int(nbytes[defined].sum()) + sub_sums,
            largest_tensor_bytes=int(nbytes[defined].max()) if defined.any() else 0,
            peak_step=peak_step,
            peak_nodes=peak_nodes,
            peak_tensors=tuple(live_at_peak),
            subgraph_peak_bytes=max((sub_peak for sub_peak, _w in held.values()), default=0),
            step_bytes=tuple(totals[1:].tolist()),
            step_labels=NodeLabels(graph.node),
            buffer_spans=spans,
            buffer_names=span_names,
            step_scratch=tuple(scratch.tolist()) if spans else (),
        )


class NodeLabels(Sequence[str]):
    """The label of each node of a graph (:func:`graph_analysis.shapes.node_label`), made when
    read: a 10^6-node graph's labels took 80 MB as strings."""

    def __init__(self, nodes: Any) -> None:
        self._nodes = nodes

    def __len__(self) -> int:
        return len(self._nodes)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return node_label(self._nodes[index], index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeLabels):
            return tuple(self) == tuple(other)
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"NodeLabels({len(self)} nodes)"


def _inplace_source(
    t: int,
    out: int,
    step: int,
    *,
    tensors: _Tensors,
    last_read: np.ndarray,
    views: Mapping[int, int],
) -> int:
    """The buffer id an in-place output ``out`` at ``step`` takes over from input ``t``, or -1:
    the input must be its own buffer (no view), made by a node (not a graph input), read last at
    ``step``, without views, and as large as the output."""
    if t < 0 or tensors.root[t] != t or tensors.first[t] < 0:
        return -1
    if int(last_read[t]) != step or views.get(t, 0):
        return -1
    return t if tensors.nbytes[t] == tensors.nbytes[out] else -1
