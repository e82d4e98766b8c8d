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

from cli._group import EXIT_INTERRUPTED, ClickException, ModelsizeGroup
from cli.examples import epilog
from cli.options import BatchOpt, DimOpt, InputDtypeOpt, InputShapeOpt, input_bindings
from cli.render import Breakdown, OutputFormat, print_warnings
from cli.render_compute import render_source_profile
from cli.render_convert import (
    ConvertFormat,
    progress_reporter,
    render_conversion,
    render_source_inspection,
)
from cli.render_deploy import (
    ScanFormat,
    render_check,
    render_fit,
    render_scan,
    scan_progress,
)
from cli.render_memory import render_source_memory
from cli.render_quant import render_comparison, render_quantization, render_quantized_comparison
from cli.report_html import (
    compare_html,
    fit_html,
    inspect_source_html,
    memory_html,
    profile_html,
)
from converters._output import check_output_path, write_text_output
from converters.fit_source import check_source, fit_source
from converters.memory_source import source_memory
from converters.profile_source import source_profile
from converters.quantize import QuantMethod, quantize_source
from converters.sources import DynamicAxis, convert_source, detect_source, inspect_source
from graph_analysis.deploy import (
    FitPrecision,
    Limits,
    parse_count,
    parse_fraction,
    parse_size,
    scan_folder,
)
from graph_analysis.errors import ModelsizeError, ShapeBindingError, UsageError
from graph_analysis.memory import Loss, Optimizer, TrainingPrecision
from graph_analysis.runtime.compare import compare_models
from graph_analysis.runtime.profile import OptimizationLevel

__all__ = ["app", "main"]

app = typer.Typer(
    cls=ModelsizeGroup,
    name="modelsize",
    help="How big is this model? Exact parameter counts and sizes from ONNX graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"modelsize {version('modelsize')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("modelsize (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """How big is this model? Exact parameter counts and sizes from ONNX graphs."""


P = ParamSpec("P")
R = TypeVar("R")


def _stdout() -> Console:
    return Console(soft_wrap=False, width=int(os.environ.get("COLUMNS", "120")))


ReportFormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
DepthOpt = Annotated[int, typer.Option("--depth", min=1, help="Layer tree depth.")]
TopOpt = Annotated[int | None, typer.Option("--top", min=1, help="Show only the N first rows.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Intra-op threads.")]
ReportOutOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="The file --format html writes (report.html)."),
]
_HTML_COMMANDS = "inspect, memory, compare, profile and fit"


def _html_target(fmt: OutputFormat, output: Path | None) -> Path | None:
    """Check ``--format html`` and ``-o`` before any work: the report's path, or None to print."""
    if fmt is OutputFormat.HTML:
        if output is None:
            raise UsageError(
                "--format html writes one file: add -o report.html (quantize: --report)"
            )
        check_output_path(output)
        return output
    if output is not None:
        raise UsageError("-o is for --format html; the other formats print on stdout")
    return None


def _write_report(target: Path, page: str) -> None:
    write_text_output(target, page)
    typer.echo(f"wrote {target} ({len(page.encode()) / 1024:.0f} KiB, self-contained HTML)")


def _no_html(fmt: OutputFormat, command: str) -> None:
    if fmt is OutputFormat.HTML:
        raise UsageError(
            f"{command} has no HTML report; --format html is offered by {_HTML_COMMANDS}"
        )


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn modelsize errors into one stderr line and an exit code (2 bad input, 1 internal)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ModelsizeError as e:
            typer.echo(f"modelsize: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except KeyboardInterrupt:
            typer.echo("modelsize: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:
            if os.environ.get("MODELSIZE_DEBUG"):
                traceback.print_exc()
            typer.echo(
                f"modelsize: internal error: {type(e).__name__}: {e} (set MODELSIZE_DEBUG=1 for a traceback)",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


DynamicOpt = Annotated[
    list[DynamicAxis],
    typer.Option("--dynamic", help="Keep this axis symbolic in the exported graph (repeatable)."),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="state_dict checkpoint for a file.py:Name source."),
]
CustomObjectsOpt = Annotated[
    str | None,
    typer.Option(
        "--custom-objects",
        help="my_layers.py or package.module defining a Keras file's custom classes "
        "(imported: its code runs).",
    ),
]


@app.command(epilog=epilog("inspect"))
@handle_errors
def inspect(
    model: Annotated[str, typer.Argument(help="An .onnx file or a framework source (`convert`).")],
    fmt: ReportFormatOpt = OutputFormat.TABLE,
    by: Annotated[Breakdown, typer.Option("--by", help="Breakdown to show.")] = Breakdown.LAYER,
    depth: DepthOpt = 2,
    top: TopOpt = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Hash payloads to find copied tensors.")
    ] = False,
    input_shape: InputShapeOpt = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    dynamic: DynamicOpt = [],  # noqa: B006
    weights: WeightsOpt = None,
    framework_only: Annotated[
        bool,
        typer.Option(
            "--framework-only",
            help="Framework sources: the framework's own counts and layer table, no ONNX export.",
        ),
    ] = False,
    output: ReportOutOpt = None,
    custom_objects: CustomObjectsOpt = None,
) -> None:
    """Count parameters and size a model: on disk, stored weights, what-if precisions, breakdowns.

    Framework sources (see `convert`) show first the framework's own counts (counted by PyTorch or
    Keras), then are exported to ONNX in a temporary folder for the graph's figures, reconciled
    with the framework's. If the export fails, the framework's answer stands (exit 0) and the
    failure is one warning line on stderr.
    """
    target = _html_target(fmt, output)
    bindings = input_bindings(input_shape, input_dtype, dim, batch)
    with progress_reporter() as on_progress:
        inspection = inspect_source(
            model,
            bindings=bindings,
            dynamic_axes=dynamic,
            weights=weights,
            deep=deep,
            framework_only=framework_only,
            on_progress=on_progress,
            custom_objects=custom_objects,
        )
    if inspection.export_error is not None:
        typer.echo(
            f"modelsize: warning: {model}: no graph figures, the ONNX export failed: "
            f"{inspection.export_error}",
            err=True,
        )
    if target is not None:
        _write_report(target, inspect_source_html(inspection, model, depth=depth))
        if inspection.report is not None:
            print_warnings(inspection.report.warnings)
        return
    console = _stdout()
    text = render_source_inspection(inspection, fmt, by=by, depth=depth, top=top, console=console)
    if text is not None:
        sys.stdout.write(text)
    if inspection.report is not None:
        print_warnings(inspection.report.warnings)


@app.command(epilog=epilog("convert"))
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
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    dynamic: DynamicOpt = [],  # noqa: B006
    weights: WeightsOpt = None,
    custom_objects: CustomObjectsOpt = None,
) -> None:
    """Export a PyTorch, Hugging Face or Keras/TensorFlow model to ONNX with the framework's counts."""
    bindings = input_bindings(input_shape, input_dtype, dim, batch)
    with progress_reporter() as on_progress:
        result = convert_source(
            detect_source(source),
            output,
            bindings=bindings,
            dynamic_axes=dynamic,
            weights=weights,
            on_progress=on_progress,
            custom_objects=custom_objects,
        )
    text = render_conversion(result, fmt, _stdout())
    if text is not None:
        sys.stdout.write(text)


FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="table or json.")]


ModelArg = Annotated[
    str, typer.Argument(help="An .onnx file or a framework source (see `convert`).")
]


QuantFormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table, json, csv or markdown.")
]
QuantRunsOpt = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per model.")]


@app.command(epilog=epilog("quantize"))
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
    input_shape: InputShapeOpt = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Then compare input and variant.")
    ] = False,
    runs: QuantRunsOpt = 10,
    fmt: QuantFormatOpt = OutputFormat.TABLE,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="With --compare --format html: the report file to write."),
    ] = None,
) -> None:
    """Write an int8 (dynamic/static), fp16 or int4 variant of a model and report what it achieved.

    The variant is run once on generated inputs to verify it; when those inputs cannot run the
    original model, dynamic/fp16/int4 variants are still written and reported as NOT VERIFIED.
    """
    if fmt is OutputFormat.HTML and not compare:
        raise UsageError(
            "quantize writes an HTML report with --compare (--format html --report FILE)"
        )
    target = _html_target(fmt, report)
    bindings = input_bindings(input_shape, input_dtype, dim, batch)
    types = [t for item in op_types or () for t in item.split(",") if t]
    with progress_reporter() as say:
        result = quantize_source(
            model, output, method=method, per_channel=per_channel, op_types=types or None,
            calibration=calibration, calibration_samples=calibration_samples, bindings=bindings,
            keep_io_types=not fp16_io, fallback=not no_fallback, on_progress=say,
        )  # fmt: skip
        comparison = None
        if compare and result.verified:
            comparison = compare_models([result.source, output], bindings, runs=runs, progress=say)
    if compare and comparison is None:
        print_warnings(result.warnings)
        raise ShapeBindingError(
            model, f"{output} written but not compared: it {result.verified_reason}"
        )
    if target is not None and comparison is not None:
        _write_report(target, compare_html(comparison))
        print_warnings(result.warnings)
        return
    if comparison is None:
        text = render_quantization(result, fmt, console=_stdout())
    else:
        text = render_quantized_comparison(result, comparison, fmt, console=_stdout())
    if text is not None:
        sys.stdout.write(text)
    print_warnings(result.warnings)


@app.command("compare", epilog=epilog("compare"))
@handle_errors
def compare_cmd(
    models: Annotated[
        list[Path], typer.Argument(help="Two or more .onnx files; the first is the reference.")
    ],
    runs: QuantRunsOpt = 10,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime intra-op threads.")] = 2,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    fmt: QuantFormatOpt = OutputFormat.TABLE,
    output: ReportOutOpt = None,
) -> None:
    """Compare models side by side: sizes, measured memory and latency, output drift vs the first."""
    if len(models) < 2:
        raise typer.BadParameter(
            "needs two or more models (the first is the reference)", param_hint="MODELS"
        )
    target = _html_target(fmt, output)
    bindings = input_bindings(input_shape, input_dtype, dim, batch)
    with progress_reporter() as say:
        comparison = compare_models(models, bindings, runs=runs, threads=threads, progress=say)
    if target is not None:
        _write_report(target, compare_html(comparison))
        return
    text = render_comparison(comparison, fmt, console=_stdout())
    if text is not None:
        sys.stdout.write(text)


@app.command(epilog=epilog("memory"))
@handle_errors
def memory(
    model: ModelArg,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
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
    loss: Annotated[
        Loss,
        typer.Option(
            "--loss", help="Loss of the training step (auto: cross-entropy for logits, else mse)."
        ),
    ] = Loss.AUTO,
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
    static: Annotated[
        bool,
        typer.Option(
            "--static",
            help="Activations from the exported graph only: never run onnxruntime for its "
            "optimized graph.",
        ),
    ] = False,
    fmt: FormatOpt = OutputFormat.TABLE,
    output: ReportOutOpt = None,
) -> None:
    """Estimate inference (and with --train, training) memory; --measure adds measurements."""
    target = _html_target(fmt, output)
    with progress_reporter() as on_progress:
        result = source_memory(
            model,
            input_bindings(input_shape, input_dtype, dim, batch),
            train=train,
            optimizer=optimizer,
            precision=precision,
            checkpointing=checkpointing,
            loss=loss,
            measure=measure,
            runs=5,
            torch_source=torch_source,
            on_progress=on_progress,
            executed=not static,
        )
    if target is not None:
        _write_report(target, memory_html(result))
        return
    render_source_memory(result, fmt, _stdout())


@app.command(epilog=epilog("measure"))
@handle_errors
def measure(
    model: ModelArg,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
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
    _no_html(fmt, "measure")
    bindings = input_bindings(input_shape, input_dtype, dim, batch)
    with progress_reporter() as on_progress:
        result = source_memory(
            model, bindings, measure=True, runs=runs, repeats=repeats, on_progress=on_progress
        )
    render_source_memory(result, fmt, _stdout())


@app.command(epilog=epilog("profile"))
@handle_errors
def profile(
    model: ModelArg,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs after the warm-up.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 2,
    threads: ThreadsOpt = 1,
    optimization: Annotated[
        OptimizationLevel,
        typer.Option("--optimization", help="onnxruntime graph optimization level."),
    ] = OptimizationLevel.ALL,
    count_only: Annotated[
        bool, typer.Option("--count-only", help="Only count MACs/FLOPs; run nothing.")
    ] = False,
    depth: DepthOpt = 2,
    top: TopOpt = None,
    fmt: ReportFormatOpt = OutputFormat.TABLE,
    output: ReportOutOpt = None,
) -> None:
    """MACs and FLOPs per layer counted from the graph, and where the time goes, measured."""
    target = _html_target(fmt, output)
    with progress_reporter() as on_progress:
        result = source_profile(
            model,
            input_bindings(input_shape, input_dtype, dim, batch),
            measure=not count_only,
            runs=runs,
            warmup=warmup,
            threads=threads,
            optimization=optimization,
            layer_depth=max(depth, 3),
            on_progress=on_progress,
        )
    if target is not None:
        _write_report(target, profile_html(result))
        return
    render_source_profile(result, fmt, _stdout(), depth=depth, top=top)


def _size_option(value: str | None, option: str) -> int | None:
    return parse_size(value, option=option) if value is not None else None


@app.command(epilog=epilog("fit"))
@handle_errors
def fit(
    model: ModelArg,
    memory_budget: Annotated[
        str, typer.Option("--memory", help="Memory budget: 2GiB, 512MB, 1.5G or bytes.")
    ],
    disk: Annotated[str | None, typer.Option("--disk", help="Disk budget (same forms).")] = None,
    latency: Annotated[
        float | None, typer.Option("--latency", help="Latency budget in ms (measured).")
    ] = None,
    train: Annotated[bool, typer.Option("--train", help="Fit a training step.")] = False,
    precision: Annotated[
        list[FitPrecision], typer.Option("--precision", help="Candidate precision (repeatable).")
    ] = [],  # noqa: B006
    vary: Annotated[
        str | None,
        typer.Option(
            "--vary", help="batch, or a dim name (default: batch; a KV-cache decoder: its context)."
        ),
    ] = None,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Write real variants and measure the chosen points.")
    ] = False,
    threads: ThreadsOpt = 1,
    fmt: ReportFormatOpt = OutputFormat.TABLE,
    output: ReportOutOpt = None,
) -> None:
    """Largest batch (or context) that fits a memory budget, per precision."""
    target = _html_target(fmt, output)
    with progress_reporter() as on_progress:
        result = fit_source(
            model,
            parse_size(memory_budget, option="--memory"),
            input_bindings(input_shape, input_dtype, dim, batch),
            vary=vary,
            precisions=tuple(precision) or None,
            disk_budget_bytes=_size_option(disk, "--disk"),
            latency_budget_s=latency / 1e3 if latency is not None else None,
            train=train,
            verify=verify,
            threads=threads,
            on_progress=on_progress,
        )
    if target is not None:
        _write_report(target, fit_html(result))
    else:
        render_fit(result, fmt, _stdout())
    if (verify or latency is not None) and not any(c.fits for c in result.candidates):
        raise typer.Exit(1)


@app.command(epilog=epilog("check"))
@handle_errors
def check(
    model: ModelArg,
    max_params: Annotated[str | None, typer.Option("--max-params", help="7B, 25M, 1e6.")] = None,
    max_disk: Annotated[str | None, typer.Option("--max-disk", help="500MB, 2GiB.")] = None,
    max_memory: Annotated[
        str | None, typer.Option("--max-memory", help="Estimated inference peak.")
    ] = None,
    max_train_memory: Annotated[
        str | None, typer.Option("--max-train-memory", help="Estimated training step peak.")
    ] = None,
    max_macs: Annotated[str | None, typer.Option("--max-macs", help="Counted MACs: 4.1G.")] = None,
    min_int8_saving: Annotated[
        str | None, typer.Option("--min-int8-saving", help="Fraction of disk int8 must save: 50%.")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="A previous model to compare with.")
    ] = None,
    max_growth: Annotated[
        str | None, typer.Option("--max-growth", help="Allowed growth over the baseline: 5%.")
    ] = None,
    input_shape: InputShapeOpt = [],  # noqa: B006
    input_dtype: InputDtypeOpt = [],  # noqa: B006
    dim: DimOpt = [],  # noqa: B006
    batch: BatchOpt = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table or json.")
    ] = OutputFormat.TABLE,
) -> None:
    """A gate for CI: exit 0 when every limit holds, 1 when one fails, 2 on bad input."""
    _no_html(fmt, "check")
    limits = Limits(
        max_params=parse_count(max_params, option="--max-params") if max_params else None,
        max_disk_bytes=_size_option(max_disk, "--max-disk"),
        max_memory_bytes=_size_option(max_memory, "--max-memory"),
        max_train_memory_bytes=_size_option(max_train_memory, "--max-train-memory"),
        max_macs=parse_count(max_macs, option="--max-macs") if max_macs else None,
        min_int8_saving=parse_fraction(min_int8_saving, option="--min-int8-saving")
        if min_int8_saving
        else None,
        max_growth=parse_fraction(max_growth, option="--max-growth") if max_growth else None,
    )
    result = check_source(
        model, limits, input_bindings(input_shape, input_dtype, dim, batch), baseline=baseline
    )
    render_check(result, fmt, _stdout())
    if not result.ok:
        raise typer.Exit(1)


@app.command(epilog=epilog("scan"))
@handle_errors
def scan(
    folder: Annotated[Path, typer.Argument(help="A folder of .onnx files.")],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into subfolders.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes in parallel.")] = 1,
    fmt: Annotated[
        ScanFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ScanFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """One row per model file in FOLDER: parameters, sizes, estimated memory, or its error."""
    if output is not None:
        check_output_path(output)
    rows = scan_folder(folder, recursive=recursive, workers=workers, on_row=scan_progress())
    chunks = render_scan(rows, fmt, _stdout())
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    else:
        write_text_output(output, "".join(chunks))


def main() -> None:
    """The command line (the console script is ``cli.__main__:main``, which handles Ctrl-C first)."""
    app(prog_name="modelsize")
