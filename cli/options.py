"""Options shared by every command that takes a model source, defined once.

``inspect``, ``convert``, ``memory``, ``measure``, ``quantize`` and ``compare`` all describe their
inputs with the same four flags (``--input-shape``, ``--input-dtype``, ``--dim``, ``--batch``),
parsed by one function into :class:`graph_analysis.bindings.Bindings`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from graph_analysis.bindings import Bindings, parse_bindings

__all__ = ["BatchOpt", "DimOpt", "InputDtypeOpt", "InputShapeOpt", "input_bindings"]

InputShapeOpt = Annotated[
    list[str],
    typer.Option(
        "--input-shape",
        help="Input shape: NAME=1,3,224,224 (repeatable), or a bare 1,3,224,224 for a "
        "single-input model. Framework sources: the example input of the export.",
    ),
]
InputDtypeOpt = Annotated[
    list[str],
    typer.Option(
        "--input-dtype",
        help="Input data type instead of the declared one (FLOAT for framework sources): "
        "INT64 for every input or NAME=INT64 (repeatable).",
    ),
]
DimOpt = Annotated[
    list[str],
    typer.Option("--dim", help="NAME=VALUE for a named symbolic dim, e.g. seq=512 (repeatable)."),
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch", min=1, help="Leading dim of every input whose first dim is symbolic."),
]


def input_bindings(
    input_shape: list[str], input_dtype: list[str], dim: list[str], batch: int | None
) -> Bindings:
    """The four shared input options as one :class:`Bindings` (raises ``ShapeBindingError``)."""
    return parse_bindings(input_shape, dim, batch, input_dtype)
