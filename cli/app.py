"""The ``modelsize`` command line: each command parses, calls one library function, renders, exits."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from cli.render import Breakdown, OutputFormat, render_inspect
from cli.render_memory import render_comparison, render_estimate, render_training_comparison
from converters.torch_train import compare_training
from graph_analysis.analysis import analyze
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import ModelsizeError
from graph_analysis.measure import compare_memory
from graph_analysis.memory import Optimizer, TrainingPrecision, estimate_memory

__all__ = ["app", "main"]

app = typer.Typer(
    name="modelsize",
    help="How big is this model? Exact parameter counts and sizes from ONNX graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """How big is this model? Exact parameter counts and sizes from ONNX graphs."""


P = ParamSpec("P")
R = TypeVar("R")


def _stdout() -> Console:
    return Console(soft_wrap=False, width=int(os.environ.get("COLUMNS", "120")))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn modelsize errors into one stderr line and an exit code (2 bad input, 1 internal)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ModelsizeError as e:
            typer.echo(f"modelsize: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            typer.echo("modelsize: interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as e:
            if os.environ.get("MODELSIZE_DEBUG"):
                traceback.print_exc()
            typer.echo(
                f"modelsize: internal error: {type(e).__name__}: {e} (set MODELSIZE_DEBUG=1 for a traceback)",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@handle_errors
def inspect(
    model: Annotated[Path, typer.Argument(help="An .onnx file.")],
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.TABLE,
    by: Annotated[Breakdown, typer.Option("--by", help="Breakdown to show.")] = Breakdown.LAYER,
    depth: Annotated[int, typer.Option("--depth", min=1, help="Layer tree depth.")] = 2,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Show only the N first rows.")
    ] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Hash payloads to find copied tensors.")
    ] = False,
) -> None:
    """Count parameters and size a model: on disk, stored weights, what-if precisions, breakdowns."""
    report = analyze(model, deep=deep)
    text = render_inspect(report, fmt, by=by, depth=depth, top=top, console=_stdout())
    if text is not None:
        sys.stdout.write(text)


InputShapeOpt = Annotated[
    list[str],
    typer.Option("--input-shape", help="NAME=1,3,224,224 (repeatable), or a bare shape."),
]
DimOpt = Annotated[list[str], typer.Option("--dim", help="NAME=VALUE for a named dim (seq=512).")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Leading dim of every input.")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="table or json.")]


@app.command()
@handle_errors
def memory(
    model: Annotated[Path, typer.Argument(help="An .onnx file.")],
    input_shape: InputShapeOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    train: Annotated[bool, typer.Option("--train", help="Also estimate a training step.")] = False,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer")] = Optimizer.ADAM,
    precision: Annotated[TrainingPrecision, typer.Option("--precision")] = TrainingPrecision.FP32,
    checkpointing: Annotated[
        float,
        typer.Option(
            "--checkpointing", min=0.01, max=1.0, help="Fraction of saved activations kept."
        ),
    ] = 1.0,
    measure: Annotated[
        bool, typer.Option("--measure", help="Also measure in onnxruntime.")
    ] = False,
    torch_source: Annotated[
        str | None,
        typer.Option(
            "--torch-source",
            help="file.py:Name the ONNX came from: measure a PyTorch training step (runs its code).",
        ),
    ] = None,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Estimate inference (and with --train, training) memory; --measure adds measurements."""
    bindings = parse_bindings(input_shape, dim, batch)
    options = {"optimizer": optimizer, "precision": precision, "checkpointing": checkpointing}
    if torch_source is not None:
        result = compare_training(model, torch_source, bindings, **options)  # type: ignore[arg-type]
        render_training_comparison(result, fmt, _stdout())
    elif measure:
        comparison = compare_memory(model, bindings, runs=5, train=train, **options)  # type: ignore[arg-type]
        render_comparison(comparison, fmt, _stdout())
    else:
        estimate = estimate_memory(model, bindings, train=train, **options)  # type: ignore[arg-type]
        render_estimate(estimate, fmt, _stdout())


@app.command()
@handle_errors
def measure(
    model: Annotated[Path, typer.Argument(help="An .onnx file.")],
    input_shape: InputShapeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs after the first.")] = 10,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Measure memory (arena on and off) and latency in onnxruntime, next to the estimate."""
    comparison = compare_memory(model, parse_bindings(input_shape, dim, batch), runs=runs)
    render_comparison(comparison, fmt, _stdout())


def main() -> None:
    """Console-script entry point."""
    app()
