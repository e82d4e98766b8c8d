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

from cli.render import Breakdown, OutputFormat
from cli.render_convert import (
    ConvertFormat,
    progress_reporter,
    render_conversion,
    render_source_inspection,
)
from cli.render_memory import render_source_memory
from cli.render_quant import render_comparison, render_quantization, render_quantized_comparison
from converters.memory_source import source_memory
from converters.quantize import QuantMethod, quantize_source
from converters.sources import DynamicAxis, convert_source, detect_source, inspect_source
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import ModelsizeError
from graph_analysis.memory import Optimizer, TrainingPrecision
from graph_analysis.runtime.compare import compare_models

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


InputShapeOpt = Annotated[
    list[str],
    typer.Option(
        "--input-shape",
        help="Example input shape for framework sources: 1,3,224,224 or NAME=1,3,224,224 "
        "(repeatable).",
    ),
]
InputDtypeOpt = Annotated[
    list[str],
    typer.Option("--input-dtype", help="Input data type where not FLOAT: INT64 or NAME=INT64."),
]
DynamicOpt = Annotated[
    list[DynamicAxis],
    typer.Option("--dynamic", help="Keep this axis symbolic in the exported graph (repeatable)."),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="state_dict checkpoint for a file.py:Name source."),
]


@app.command()
@handle_errors
def inspect(
    model: Annotated[str, typer.Argument(help="An .onnx file or a framework source (`convert`).")],
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
    input_shape: InputShapeOpt = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dynamic: DynamicOpt = [],  # noqa: B006
    weights: WeightsOpt = None,
) -> None:
    """Count parameters and size a model: on disk, stored weights, what-if precisions, breakdowns.

    Framework sources (see `convert`) are exported to ONNX in a temporary folder first; the output
    then also shows the framework's own counts and reconciles them with the graph's.
    """
    bindings = parse_bindings(input_shape, input_dtypes=input_dtype)
    with progress_reporter() as on_progress:
        inspection = inspect_source(
            model,
            bindings=bindings,
            dynamic_axes=dynamic,
            weights=weights,
            deep=deep,
            on_progress=on_progress,
        )
    console = _stdout()
    text = render_source_inspection(inspection, fmt, by=by, depth=depth, top=top, console=console)
    if text is not None:
        sys.stdout.write(text)


@app.command()
@handle_errors
def convert(
    source: Annotated[
        str,
        typer.Argument(
            help="file.py:Name or package.module:Name (nn.Module class or factory), a TorchScript "
            ".pt, a torch.export .pt2, a Hugging Face folder, a .keras/.h5 file or a SavedModel."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write.")],
    fmt: Annotated[
        ConvertFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ConvertFormat.TABLE,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dynamic: DynamicOpt = [],  # noqa: B006
    weights: WeightsOpt = None,
) -> None:
    """Export a PyTorch, Hugging Face or Keras/TensorFlow model to ONNX with the framework's counts."""
    bindings = parse_bindings(input_shape, input_dtypes=input_dtype)
    with progress_reporter() as on_progress:
        result = convert_source(
            detect_source(source),
            output,
            bindings=bindings,
            dynamic_axes=dynamic,
            weights=weights,
            on_progress=on_progress,
        )
    text = render_conversion(result, fmt, _stdout())
    if text is not None:
        sys.stdout.write(text)


BindShapeOpt = Annotated[
    list[str],
    typer.Option("--input-shape", help="NAME=1,3,224,224 (repeatable), or a bare shape."),
]
DimOpt = Annotated[list[str], typer.Option("--dim", help="NAME=VALUE for a named dim (seq=512).")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Leading dim of every input.")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="table or json.")]


ModelArg = Annotated[
    str, typer.Argument(help="An .onnx file or a framework source (see `convert`).")
]


QuantFormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table, json, csv or markdown.")
]
QuantRunsOpt = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per model.")]


@app.command()
@handle_errors
def quantize(
    model: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The variant to write.")],
    method: Annotated[QuantMethod, typer.Option(help="How to quantize.")] = QuantMethod.DYNAMIC,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="Scale per channel.")] = False,
    op_types: Annotated[list[str] | None, typer.Option(help="Only these op types.")] = None,
    calibration: Annotated[Path | None, typer.Option(help="static: .npz of inputs.")] = None,
    calibration_samples: Annotated[int, typer.Option(min=1, help="static: generated.")] = 8,
    no_fallback: Annotated[
        bool, typer.Option("--no-fallback", help="Keep missed weights float.")
    ] = False,
    fp16_io: Annotated[
        bool, typer.Option("--fp16-io", help="fp16: FLOAT16 inputs/outputs.")
    ] = False,
    input_shape: BindShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Then compare input and variant.")
    ] = False,
    runs: QuantRunsOpt = 10,
    fmt: QuantFormatOpt = OutputFormat.TABLE,
) -> None:
    """Write an int8 (dynamic/static), fp16 or int4 variant of a model and report what it achieved."""
    bindings = parse_bindings(input_shape, dim, batch, input_dtype)
    types = [t for item in op_types or () for t in item.split(",") if t]
    with progress_reporter() as say:
        result = quantize_source(
            model, output, method=method, per_channel=per_channel, op_types=types or None,
            calibration=calibration, calibration_samples=calibration_samples, bindings=bindings,
            keep_io_types=not fp16_io, fallback=not no_fallback, on_progress=say,
        )  # fmt: skip
        if compare:
            comparison = compare_models([result.source, output], bindings, runs=runs, progress=say)
    if not compare:
        text = render_quantization(result, fmt, console=_stdout())
    else:
        text = render_quantized_comparison(result, comparison, fmt, console=_stdout())
    if text is not None:
        sys.stdout.write(text)


@app.command("compare")
@handle_errors
def compare_cmd(
    models: Annotated[
        list[Path], typer.Argument(help="Two or more .onnx files; the first is the reference.")
    ],
    runs: QuantRunsOpt = 10,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime intra-op threads.")] = 2,
    input_shape: BindShapeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    fmt: QuantFormatOpt = OutputFormat.TABLE,
) -> None:
    """Compare models side by side: sizes, measured memory and latency, output drift vs the first."""
    bindings = parse_bindings(input_shape, dim, batch)
    with progress_reporter() as say:
        comparison = compare_models(models, bindings, runs=runs, threads=threads, progress=say)
    text = render_comparison(comparison, fmt, console=_stdout())
    if text is not None:
        sys.stdout.write(text)


@app.command()
@handle_errors
def memory(
    model: ModelArg,
    input_shape: BindShapeOpt = [],  # noqa: B006 - typer reads the default, never mutates it
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
        bool, typer.Option("--measure", help="Also measure (onnxruntime; PyTorch training step).")
    ] = False,
    torch_source: Annotated[
        str | None,
        typer.Option(
            "--torch-source",
            help="file.py:Name an ONNX file came from: measure its PyTorch training step.",
        ),
    ] = None,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Estimate inference (and with --train, training) memory; --measure adds measurements."""
    with progress_reporter() as on_progress:
        result = source_memory(
            model,
            parse_bindings(input_shape, dim, batch),
            train=train,
            optimizer=optimizer,
            precision=precision,
            checkpointing=checkpointing,
            measure=measure,
            runs=5,
            torch_source=torch_source,
            on_progress=on_progress,
        )
    render_source_memory(result, fmt, _stdout())


@app.command()
@handle_errors
def measure(
    model: ModelArg,
    input_shape: BindShapeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs after the first.")] = 10,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats", min=1, help="Fresh processes per setting (median and min-max of the peak)."
        ),
    ] = 3,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Measure memory (arena on and off) and latency in onnxruntime, next to the estimate.

    PyTorch code sources (file.py:Name) also get one measured training step (Adam, fp32).
    """
    bindings = parse_bindings(input_shape, dim, batch)
    with progress_reporter() as on_progress:
        result = source_memory(
            model, bindings, measure=True, runs=runs, repeats=repeats, on_progress=on_progress
        )
    render_source_memory(result, fmt, _stdout())


def main() -> None:
    """Console-script entry point."""
    app()
