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
from graph_analysis.analysis import analyze
from graph_analysis.errors import ModelsizeError

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
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.TABLE,
    by: Annotated[Breakdown, typer.Option("--by", help="Breakdown to show.")] = Breakdown.LAYER,
    depth: Annotated[int, typer.Option("--depth", min=1, help="Layer tree depth.")] = 2,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Show only the N first rows.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Hash payloads to find copied tensors.")] = False,
) -> None:
    """Count parameters and size a model: on disk, stored weights, what-if precisions, breakdowns."""
    report = analyze(model, deep=deep)
    text = render_inspect(report, fmt, by=by, depth=depth, top=top, console=_stdout())
    if text is not None:
        sys.stdout.write(text)


def main() -> None:
    """Console-script entry point."""
    app()
