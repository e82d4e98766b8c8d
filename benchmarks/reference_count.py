"""An independent reference parameter count of an ONNX file, written apart from ``graph_analysis``.

It uses the plain ``onnx`` API and one simple rule, so that it can serve as an oracle for
``graph_analysis.analyze`` in the tests and the corpus benchmark:

    every stored floating-point tensor (FLOAT, FLOAT16, BFLOAT16, DOUBLE, the FLOAT8/FLOAT4 types)
    of more than one element is a parameter.

Where tensors are found: graph initializers, sparse initializers (their dense element count), the
value of every ``Constant`` node in all its forms (``value``, ``value_float``, ``value_floats``,
``sparse_value``; the integer and string forms are never floating), tensors held in any other
node's attributes, the subgraphs of any node at any depth, and the bodies of model-local functions.

Identity: a tensor is keyed by the name the graph's edges use (an initializer's name, a ``Constant``
node's *output* name, never the ``name`` field of the tensor inside its attribute) within the graph
that holds it (``main``, ``main/<node>.<attribute>`` for subgraphs, ``fn:<domain>:<name>`` for
function bodies). A function body is stored once whatever the number of its call sites. Tensors
whose external data point at one (file, offset, length) are stored once and counted once.

It does not look at how a tensor is used: an unused weight, a float ``Resize`` scale or a float mask
counts like any other stored float tensor, and integer (quantized) weights never count. Those are the
rule's documented differences from ``analyze`` (see ``docs/corpus.md``).

    python benchmarks/reference_count.py MODEL.onnx [--list]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import AttributeProto, TensorProto

__all__ = ["FLOAT_TYPES", "RefTensor", "reference_count", "reference_tensors"]

FLOAT_TYPES: frozenset[int] = frozenset(
    getattr(TensorProto, name)
    for name in (
        "FLOAT",
        "FLOAT16",
        "BFLOAT16",
        "DOUBLE",
        "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ",
        "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ",
        "FLOAT8E8M0",
        "FLOAT4E2M1",
    )
    if hasattr(TensorProto, name)
)


@dataclass(frozen=True)
class RefTensor:
    """One stored tensor as the reference sees it.

    Attributes:
        graph: the graph that holds it (``main``, ``main/<node>.<attr>``, ``fn:<domain>:<name>``).
        name: the edge name the graph uses for it.
        source: initializer, sparse_initializer, constant, constant_sparse, attribute.
        data_type: the ONNX data type name.
        num_elements: the dense element count.
    """

    graph: str
    name: str
    source: str
    data_type: str
    num_elements: int

    @property
    def is_parameter(self) -> bool:
        """The reference rule: floating point and more than one element."""
        return getattr(TensorProto, self.data_type) in FLOAT_TYPES and self.num_elements > 1


def _numel(dims: list[int] | tuple[int, ...]) -> int:
    return math.prod(int(d) for d in dims)


def _external_key(tensor: TensorProto) -> tuple[str, str, str] | None:
    if tensor.data_location != TensorProto.EXTERNAL:
        return None
    info = {e.key: e.value for e in tensor.external_data}
    return info.get("location", ""), info.get("offset", "0"), info.get("length", "")


def _type_name(data_type: int) -> str:
    return str(TensorProto.DataType.Name(data_type))


def _walk_graph(
    graph: onnx.GraphProto, scope: str, seen_external: set[tuple[str, str, str]]
) -> Iterator[RefTensor]:
    for tensor in graph.initializer:
        key = _external_key(tensor)
        if key is not None:
            if key in seen_external:
                continue
            seen_external.add(key)
        yield RefTensor(
            scope, tensor.name, "initializer", _type_name(tensor.data_type), _numel(tensor.dims)
        )
    for sparse in graph.sparse_initializer:
        yield RefTensor(
            scope,
            sparse.values.name,
            "sparse_initializer",
            _type_name(sparse.values.data_type),
            _numel(sparse.dims),
        )
    for index, node in enumerate(graph.node):
        yield from _walk_node(node, index, scope, seen_external)


def _walk_node(
    node: onnx.NodeProto, index: int, scope: str, seen_external: set[tuple[str, str, str]]
) -> Iterator[RefTensor]:
    node_label = node.name or f"{node.op_type}_{index}"
    is_constant = node.op_type == "Constant" and node.domain in ("", "ai.onnx")
    for attr in node.attribute:
        if is_constant and node.output:
            # A Constant node's tensor is named by the node's output: the attribute tensor's own
            # ``name`` field is free text that tools (onnx.inliner among them) do not keep in step.
            out = node.output[0]
            if attr.type == AttributeProto.TENSOR:
                yield RefTensor(
                    scope, out, "constant", _type_name(attr.t.data_type), _numel(attr.t.dims)
                )
            elif attr.type == AttributeProto.SPARSE_TENSOR:
                values = attr.sparse_tensor.values
                yield RefTensor(
                    scope,
                    out,
                    "constant_sparse",
                    _type_name(values.data_type),
                    _numel(attr.sparse_tensor.dims),
                )
            elif attr.type == AttributeProto.FLOAT:
                yield RefTensor(scope, out, "constant", "FLOAT", 1)
            elif attr.type == AttributeProto.FLOATS:
                yield RefTensor(scope, out, "constant", "FLOAT", len(attr.floats))
            elif attr.type == AttributeProto.INT:
                yield RefTensor(scope, out, "constant", "INT64", 1)
            elif attr.type == AttributeProto.INTS:
                yield RefTensor(scope, out, "constant", "INT64", len(attr.ints))
            elif attr.type == AttributeProto.STRING:
                yield RefTensor(scope, out, "constant", "STRING", 1)
            elif attr.type == AttributeProto.STRINGS:
                yield RefTensor(scope, out, "constant", "STRING", len(attr.strings))
            continue
        label = f"{node_label}#{attr.name}"
        if attr.type == AttributeProto.TENSOR:
            yield RefTensor(
                scope, label, "attribute", _type_name(attr.t.data_type), _numel(attr.t.dims)
            )
        elif attr.type == AttributeProto.TENSORS:
            for k, t in enumerate(attr.tensors):
                yield RefTensor(
                    scope, f"{label}[{k}]", "attribute", _type_name(t.data_type), _numel(t.dims)
                )
        elif attr.type == AttributeProto.GRAPH:
            yield from _walk_graph(attr.g, f"{scope}/{node_label}.{attr.name}", seen_external)
        elif attr.type == AttributeProto.GRAPHS:
            for k, g in enumerate(attr.graphs):
                yield from _walk_graph(g, f"{scope}/{node_label}.{attr.name}[{k}]", seen_external)


def reference_tensors(model: onnx.ModelProto | str | Path) -> list[RefTensor]:
    """Every stored tensor of the model, each once, whatever its type (parameters or not).

    Args:
        model: a loaded model or the path of an ``.onnx`` file (external data is never read: the
            element counts come from the declared dims).

    Returns:
        The tensors in file order: main graph (with its subgraphs), then function bodies.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    seen_external: set[tuple[str, str, str]] = set()
    found: dict[tuple[str, str], RefTensor] = {}
    tensors = list(_walk_graph(model.graph, "main", seen_external))
    for function in model.functions:
        scope = f"fn:{function.domain}:{function.name}"
        for index, node in enumerate(function.node):
            tensors.extend(_walk_node(node, index, scope, seen_external))
    for tensor in tensors:
        found.setdefault((tensor.graph, tensor.name), tensor)
    return list(found.values())


def reference_count(model: onnx.ModelProto | str | Path) -> int:
    """The reference parameter count: elements of every stored floating tensor of more than one element."""
    return sum(t.num_elements for t in reference_tensors(model) if t.is_parameter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Independent reference parameter count of an ONNX file."
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--list", action="store_true", help="list every counted tensor")
    args = parser.parse_args(argv)
    tensors = reference_tensors(args.model)
    if args.list:
        for t in tensors:
            if t.is_parameter:
                print(
                    f"{t.num_elements:>12,d}  {t.data_type:9s} {t.source:18s} {t.graph}  {t.name}"
                )
    print(f"{sum(t.num_elements for t in tensors if t.is_parameter):,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
