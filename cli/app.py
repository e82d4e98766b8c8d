"""The modelsize command line: each command parses, calls one library function, renders, exits."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from cli.render_memory import OutputFormat, render_comparison, render_estimate
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import ModelsizeError
from graph_analysis.measure import compare_memory
from graph_analysis.memory import Optimizer, Precision, estimate_memory

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="How big is this model?")

T = TypeVar("T")

InputShapeOpt = Annotated[
    list[str],
    typer.Option("--input-shape", help="NAME=1,3,224,224 (repeatable) or a bare shape"),
]
DimOpt = Annotated[list[str], typer.Option("--dim", help="NAME=VALUE for a named dim (seq=512)")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="leading dim of every input")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json")]


def _run(action: Callable[[], T]) -> T:
    """Run a library call; a ModelsizeError becomes one stderr line and its exit code."""
    try:
        return action()
    except ModelsizeError as e:
        where = f"{e.path}: " if e.path else ""
        print(f"modelsize: {where}{e.message}", file=sys.stderr)
        raise typer.Exit(e.exit_code) from None


@app.command()
def memory(  # noqa: PLR0917 - typer maps parameters to options
    model: Path,
    input_shape: InputShapeOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    train: Annotated[bool, typer.Option("--train", help="also estimate a training step")] = False,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer")] = Optimizer.ADAM,
    precision: Annotated[Precision, typer.Option("--precision")] = Precision.FP32,
    checkpointing: Annotated[
        float,
        typer.Option(
            "--checkpointing", min=0.01, max=1.0, help="fraction of saved activations kept"
        ),
    ] = 1.0,
    measure: Annotated[bool, typer.Option("--measure", help="also measure in onnxruntime")] = False,
    output_format: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Estimate inference (and with --train, training) memory; --measure adds measurements."""
    bindings = _run(lambda: parse_bindings(input_shape, dim, batch))
    options = {
        "train": train,
        "optimizer": optimizer,
        "precision": precision,
        "checkpointing": checkpointing,
    }
    console = Console()
    if measure:
        comparison = _run(lambda: compare_memory(model, bindings, runs=5, **options))  # type: ignore[arg-type]
        render_comparison(comparison, output_format, console)
    else:
        estimate = _run(lambda: estimate_memory(model, bindings, **options))  # type: ignore[arg-type]
        render_estimate(estimate, output_format, console)


@app.command()
def measure(  # noqa: PLR0917 - typer maps parameters to options
    model: Path,
    input_shape: InputShapeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="timed runs after the first")] = 10,
    output_format: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Measure memory (arena on and off) and latency in onnxruntime, next to the estimate."""
    bindings = _run(lambda: parse_bindings(input_shape, dim, batch))
    comparison = _run(lambda: compare_memory(model, bindings, runs=runs))
    render_comparison(comparison, output_format, Console())


def main() -> None:
    """Entry point of the ``modelsize`` script."""
    app()
