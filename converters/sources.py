"""What the user passed (a file, a folder, ``file.py:Name``) and how it becomes an ONNX file.

:func:`detect_source` classifies the argument without importing any framework or running any code;
:func:`convert_source` exports it in a child process (``converters._child``) so that user code,
TorchScript, pickles and SavedModels run isolated, with a timeout; :func:`inspect_source` converts
into a temporary folder, analyses the graph and reconciles its counts with the framework's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from converters._child import ProgressCallback, run_in_child
from converters._common import DynamicAxis, InputSpec, bindings_to_json
from converters._output import check_output_path, remove_stale_work
from graph_analysis import ModelReport, analyze, report_to_dict
from graph_analysis.bindings import Bindings
from graph_analysis.compute import ComputeReport, compute_to_dict, count_compute
from graph_analysis.errors import ConversionError, MissingExtraError, SourceError
from graph_analysis.framework import (
    FrameworkInfo,
    FrameworkLayer,
    FrameworkSummary,
    FrameworkTotals,
    Reconciliation,
    framework_summary_from_dict,
    layers_from_tensors,
    read_framework_info,
    reconcile,
    reconciliation_to_dict,
    rolled_up_layers,
)
from graph_analysis.runtime._feeds import check_inputs_fit, specs_from_bindings

__all__ = [
    "ConversionResult",
    "DynamicAxis",
    "FrameworkCounts",
    "InputSpec",
    "Source",
    "SourceInspection",
    "SourceKind",
    "convert_source",
    "detect_source",
    "inspect_source",
    "inspection_to_dict",
    "onnx_of",
]

DEFAULT_TIMEOUT_S = 1800.0


class SourceKind(str, Enum):
    """The kinds of model source modelsize accepts."""

    ONNX = "onnx"
    TORCH_CODE = "torch_code"
    """``file.py:Name`` or ``package.module:Name``: an nn.Module class or zero-argument factory."""
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"
    """A ``torch.export.save`` program (``.pt2``)."""
    TORCH_CHECKPOINT = "torch_checkpoint"
    """A bare state_dict / pickle: needs code (``file.py:Name --weights ckpt.pt``)."""
    HF_FOLDER = "hf_folder"
    KERAS = "keras"
    KERAS_H5 = "keras_h5"
    SAVED_MODEL = "saved_model"

    @property
    def framework(self) -> str:
        """The framework (extra) the kind needs: ``torch``, ``tensorflow`` or ``onnx``."""
        if self in (SourceKind.KERAS, SourceKind.KERAS_H5, SourceKind.SAVED_MODEL):
            return "tensorflow"
        return "onnx" if self is SourceKind.ONNX else "torch"


@dataclass(frozen=True)
class Source:
    """A classified model source.

    Attributes:
        kind: what it is.
        text: the argument as the user wrote it.
        location: the file, folder, or importable module path (``pkg.mod``).
        attr: the class or factory name for code sources, else None.
    """

    kind: SourceKind
    text: str
    location: str
    attr: str | None = None


@dataclass(frozen=True)
class FrameworkCounts:
    """The framework's own element counts (see ``graph_analysis.framework`` for the definitions)."""

    name: str
    version: str
    total: int
    trainable: int
    non_trainable: int
    buffers: int


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_source` wrote.

    Attributes:
        onnx_path: the ONNX file.
        exporter: the exporter and options that produced it.
        fallback_reason: why the preferred exporter was not used, else None.
        framework: the framework's counts, also stored in the file's metadata.
        inputs: the example inputs the model was exported with.
        notes: choices made for the user (dummy inputs, random initialisation, ...).
        summary: the framework's own answer (totals and per-layer table), when the converter
            gave one.
    """

    onnx_path: Path
    exporter: str
    fallback_reason: str | None
    framework: FrameworkCounts
    inputs: tuple[InputSpec, ...] = ()
    notes: tuple[str, ...] = ()
    summary: FrameworkSummary | None = None


@dataclass(frozen=True)
class SourceInspection:
    """An analysed source: the framework's own answer first (framework sources), then the graph.

    Attributes:
        report: the analysis of the ONNX graph; None when no graph was made (``framework_only``)
            or the export failed (``export_error``).
        framework: the framework record read from the ONNX file's metadata.
        reconciliation: how the graph's count follows from the framework's.
        conversion: how a framework source was exported.
        notes: choices made for the user.
        summary: the framework's answer counted by the framework itself (framework sources).
        export_error: why the export failed; the framework's answer stands without a graph.
        inputs: the example inputs the framework ran (framework sources).
    """

    report: ModelReport | None
    framework: FrameworkInfo | None = None
    reconciliation: Reconciliation | None = None
    conversion: ConversionResult | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    summary: FrameworkSummary | None = None
    export_error: str | None = None
    inputs: tuple[InputSpec, ...] = ()
    compute: ComputeReport | None = None

    @property
    def totals(self) -> FrameworkTotals | None:
        """The framework's totals: counted by the framework now, else read from the record."""
        if self.summary is not None:
            return self.summary.totals
        return self.framework.totals if self.framework is not None else None

    def framework_layers(self, depth: int) -> tuple[FrameworkLayer, ...]:
        """The framework's per-layer table at ``depth`` (:func:`rolled_up_layers`): from the
        framework itself, else rebuilt from the metadata record's tensor names."""
        if self.summary is not None and self.summary.layers:
            return rolled_up_layers(self.summary.layers, depth=depth)
        if self.framework is not None:
            return rolled_up_layers(layers_from_tensors(self.framework), depth=depth)
        return ()


_MODULE_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_ZIP_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".zip", ".ptl", ".jit")


def _zip_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _classify_torch_file(path: Path, text: str) -> SourceKind:
    names = _zip_names(path)
    if names is None:
        if path.suffix.lower() in (".pt2",):
            raise SourceError(text, "not a torch.export archive (not a zip file)")
        # A legacy (non-zip) torch.save pickle: a checkpoint at best.
        return SourceKind.TORCH_CHECKPOINT
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        return SourceKind.TORCHSCRIPT
    if path.suffix.lower() == ".pt2" or any(n.endswith("archive_format") for n in names):
        return SourceKind.TORCH_EXPORT
    if any(n.endswith("data.pkl") for n in names):
        return SourceKind.TORCH_CHECKPOINT
    raise SourceError(
        text, "a zip file that is neither a TorchScript, torch.export nor torch.save archive"
    )


def detect_source(arg: str) -> Source:
    """Classify a source argument: ONNX file, framework file/folder, or ``file.py:Name`` code.

    Reads only file names and archive listings; imports nothing and runs nothing.

    Raises:
        SourceError: no such file, a ``.py`` file without ``:Name``, an unreadable archive.
    """
    path = Path(arg)
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return Source(SourceKind.SAVED_MODEL, arg, str(path))
        if (path / "config.json").exists():
            return Source(SourceKind.HF_FOLDER, arg, str(path))
        raise SourceError(
            arg, "a folder that is neither a Hugging Face model (config.json) nor a SavedModel"
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return Source(SourceKind.ONNX, arg, str(path))
        if suffix == ".keras":
            return Source(SourceKind.KERAS, arg, str(path))
        if suffix in (".h5", ".hdf5"):
            return Source(SourceKind.KERAS_H5, arg, str(path))
        if suffix == ".py":
            raise SourceError(arg, "name the model class or factory: file.py:Name")
        if suffix == ".pt2" or suffix in _ZIP_SUFFIXES:
            return Source(_classify_torch_file(path, arg), arg, str(path))
        # Any other file is read as ONNX: its reader says precisely what is wrong if it is not.
        return Source(SourceKind.ONNX, arg, str(path))
    if path.exists():  # a FIFO or a device: the ONNX reader says what it is, without opening it
        return Source(SourceKind.ONNX, arg, str(path))
    location, sep, attr = arg.rpartition(":")
    if sep and attr:
        if not all(part.isidentifier() for part in attr.split(".")):
            raise SourceError(arg, f"{attr!r} is not a Python name")
        if location.endswith(".py"):
            if not Path(location).is_file():
                raise SourceError(location, "no such file")
            return Source(SourceKind.TORCH_CODE, arg, location, attr)
        if _MODULE_PATH.match(location):
            return Source(SourceKind.TORCH_CODE, arg, location, attr)
    if sep and not attr and location.endswith(".py"):
        raise SourceError(arg, "the model name after ':' is missing")
    raise SourceError(arg, "no such file or folder")


def _require_extra(source: Source) -> None:
    if source.kind.framework == "torch" and importlib.util.find_spec("torch") is None:
        raise MissingExtraError(
            source.text, "PyTorch models need the torch extra: pip install 'modelsize[torch]'"
        )
    if source.kind.framework == "tensorflow" and (
        importlib.util.find_spec("tensorflow") is None
        or importlib.util.find_spec("tf2onnx") is None
    ):
        raise MissingExtraError(
            source.text,
            "TensorFlow/Keras models need the tensorflow extra: "
            "pip install 'modelsize[tensorflow]'",
        )


def convert_source(
    source: Source,
    out_path: str | Path,
    *,
    bindings: Bindings | None = None,
    dynamic_axes: Sequence[DynamicAxis] = (),
    weights: str | Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_progress: ProgressCallback | None = None,
    custom_objects: str | Path | None = None,
) -> ConversionResult:
    """Export a framework source to an ONNX file with the framework's counts in its metadata.

    Runs the framework in a child process; the file is written atomically.

    Args:
        source: from :func:`detect_source`.
        out_path: the ONNX file to write (its folder must exist).
        bindings: input shapes/dtypes (``--input-shape``, ``--input-dtype``, ``--batch``).
        dynamic_axes: axes to keep symbolic in the graph.
        weights: a state_dict checkpoint for a code source (loaded with ``weights_only=True``).
        timeout_s: the child process is stopped after this many seconds.
        on_progress: called with the name of each slow step as it starts.
        custom_objects: for a Keras file, ``my_layers.py`` or ``package.module`` defining its
            custom classes; imported in the child (its code runs: only a module the user names).

    Raises:
        SourceError: an ONNX source, an unusable source or checkpoint, a forward returning None,
            ``--dim`` (named dims exist only in a graph).
        MissingExtraError: the framework is not installed.
        OutputPathError: the output would overwrite the source or cannot be written.
        ShapeBindingError: no usable input description, example inputs larger than the available
            memory, or the model rejects them.
        ConversionError: the exporter failed (the message gives the framework's count), crashed,
            ran out of memory or timed out.
    """
    if source.kind is not SourceKind.ONNX:
        check_output_path(
            Path(out_path),
            protected=[Path(source.location), *([Path(weights)] if weights else [])],
        )
    out = Path(out_path).resolve()
    data = _run_converter(
        source,
        out,
        bindings=bindings,
        dynamic_axes=dynamic_axes,
        weights=weights,
        timeout_s=timeout_s,
        on_progress=on_progress,
        custom_objects=custom_objects,
    )
    summary = _summary_of(data)
    if data.get("export_error"):
        counted = (
            f" (the framework counts {summary.totals.total:,} parameters: "
            "`modelsize inspect --framework-only` reports them)"
            if summary is not None
            else ""
        )
        raise ConversionError(
            source.text, f"the ONNX export failed: {data['export_error']}{counted}"
        )
    return _conversion_result(data)


def _run_converter(
    source: Source,
    out: Path | None,
    *,
    bindings: Bindings | None,
    dynamic_axes: Sequence[DynamicAxis],
    weights: str | Path | None,
    timeout_s: float,
    on_progress: ProgressCallback | None,
    custom_objects: str | Path | None = None,
) -> dict[str, Any]:
    """Run the framework's converter in a child process; ``out`` None counts without exporting.

    Returns the child's JSON: ``summary`` (the framework's answer), ``framework`` (counts),
    ``inputs``, ``notes``; after an export also ``onnx_path``, ``exporter``,
    ``fallback_reason``, or ``export_error`` when the exporter failed.
    """
    if source.kind is SourceKind.ONNX:
        raise SourceError(source.text, "already an ONNX model: nothing to convert")
    if source.kind is SourceKind.TORCH_CHECKPOINT:
        raise SourceError(
            source.text,
            "a checkpoint holds weights but no architecture: pass the code and the weights, "
            "file.py:Name --weights " + source.location,
        )
    if weights is not None and source.kind is not SourceKind.TORCH_CODE:
        raise SourceError(str(weights), "--weights goes with a file.py:Name or module:Name source")
    if weights is not None and not Path(weights).is_file():
        raise SourceError(str(weights), "no such file")
    custom = _custom_objects_argument(custom_objects, source)
    if bindings is not None and bindings.dims:
        raise SourceError(
            source.text,
            f"--dim {', '.join(bindings.dims)}: a framework source has no named dims before its "
            "export; give the example input with --input-shape (and --batch)",
        )
    # The exporter allocates the example inputs first: refuse sizes the machine cannot hold.
    check_inputs_fit(source.text, specs_from_bindings(bindings or Bindings()))
    if out is not None:
        remove_stale_work(out.parent)
    _require_extra(source)
    module = (
        "converters.from_tensorflow:convert_tensorflow"
        if source.kind.framework == "tensorflow"
        else "converters.from_torch:convert_torch"
    )
    location = source.location
    if source.kind is not SourceKind.TORCH_CODE or location.endswith(".py"):
        location = str(Path(location).resolve())
    kwargs: dict[str, Any] = {
        "kind": source.kind.value,
        "location": location,
        "source": source.text,
        "out_path": str(out) if out is not None else None,
        "bindings": bindings_to_json(bindings or Bindings()),
        "dynamic": [DynamicAxis(d).value for d in dynamic_axes],
    }
    if out is None:
        kwargs["export"] = False
    if source.kind.framework == "torch":
        kwargs["attr"] = source.attr
        kwargs["weights"] = str(Path(weights).resolve()) if weights is not None else None
    if custom is not None:
        kwargs["custom_objects"] = custom
    return run_in_child(
        module, kwargs, source=source.text, timeout_s=timeout_s, on_progress=on_progress
    )


def _summary_of(data: dict[str, Any]) -> FrameworkSummary | None:
    raw = data.get("summary")
    return framework_summary_from_dict(raw) if isinstance(raw, dict) else None


def _inputs_of(data: dict[str, Any]) -> tuple[InputSpec, ...]:
    return tuple(
        InputSpec(
            i["name"],
            tuple(i["dims"]),
            i["dtype"],
            {int(k): v for k, v in i.get("dynamic", {}).items()},
        )
        for i in data.get("inputs", ())
    )


def _custom_objects_argument(value: str | Path | None, source: Source) -> str | None:
    """``--custom-objects`` checked in the parent: a ``.py`` file (made absolute) or a module
    path, and only for a Keras file (a SavedModel needs no Python classes)."""
    if value is None:
        return None
    text = str(value)
    if source.kind not in (SourceKind.KERAS, SourceKind.KERAS_H5):
        raise SourceError(text, "--custom-objects goes with a .keras or .h5 source")
    if text.endswith(".py"):
        if not Path(text).is_file():
            raise SourceError(text, "no such file")
        return str(Path(text).resolve())
    if not _MODULE_PATH.match(text):
        raise SourceError(text, "--custom-objects takes a file.py or a package.module")
    return text


def _analyze(path: Path, deep: bool) -> ModelReport:
    # analyze() reads the converter's record of tied parameters (metadata_props) by default.
    return analyze(path, deep=deep)


def onnx_of(
    source: Source,
    folder: Path,
    *,
    bindings: Bindings | None = None,
    on_progress: ProgressCallback | None = None,
    name: str = "model.onnx",
) -> tuple[Path, ConversionResult | None]:
    """The ONNX file a command reads: an ONNX source as it is, a framework source exported into
    ``folder`` (its conversion returned with it).

    Raises:
        As :func:`convert_source`.
    """
    if source.kind is SourceKind.ONNX:
        return Path(source.location), None
    conversion = convert_source(source, folder / name, bindings=bindings, on_progress=on_progress)
    return conversion.onnx_path, conversion


def inspect_source(
    arg: str,
    *,
    bindings: Bindings | None = None,
    dynamic_axes: Sequence[DynamicAxis] = (),
    weights: str | Path | None = None,
    deep: bool = False,
    framework_only: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_progress: ProgressCallback | None = None,
    custom_objects: str | Path | None = None,
) -> SourceInspection:
    """Analyse any source: ONNX files directly, framework sources counted by their framework and
    converted in a temp folder.

    For a framework source the framework's own answer (:attr:`SourceInspection.summary`) comes
    first and stands even when the export fails (then ``report`` is None and ``export_error``
    says why). The framework record comes from the ONNX file's metadata (so an ONNX file exported
    earlier by ``modelsize convert`` is reconciled too).

    Args:
        framework_only: answer from the framework alone, without exporting (``report`` None).

    Raises:
        ModelsizeError: as :func:`detect_source`, :func:`convert_source` and the analysis raise.
    """
    source = detect_source(arg)
    if source.kind is SourceKind.ONNX:
        if weights is not None:
            raise SourceError(str(weights), "--weights goes with a file.py:Name source")
        _custom_objects_argument(custom_objects, source)
        if framework_only:
            raise SourceError(
                arg, "--framework-only needs a framework source (an ONNX file is already a graph)"
            )
        report = _analyze(Path(source.location), deep)
        info = read_framework_info(report.metadata)
        # Shapes bound by the user: the compute at those shapes too (torchinfo's "mult-adds").
        compute = (
            count_compute(Path(source.location), bindings)
            if bindings is not None and not bindings.is_empty
            else None
        )
        return SourceInspection(
            report, info, reconcile(report, info) if info else None, compute=compute
        )
    options: dict[str, Any] = {
        "bindings": bindings,
        "dynamic_axes": dynamic_axes,
        "weights": weights,
        "timeout_s": timeout_s,
        "on_progress": on_progress,
        "custom_objects": custom_objects,
    }
    if framework_only:
        data = _run_converter(source, None, **options)
        return SourceInspection(
            None,
            summary=_summary_of(data),
            notes=tuple(data.get("notes", ())),
            inputs=_inputs_of(data),
        )
    with tempfile.TemporaryDirectory(prefix="modelsize-inspect-") as tmp:
        data = _run_converter(source, Path(tmp) / "model.onnx", **options)
        if data.get("export_error"):
            return SourceInspection(
                None,
                summary=_summary_of(data),
                notes=tuple(data.get("notes", ())),
                export_error=str(data["export_error"]),
                inputs=_inputs_of(data),
            )
        result = _conversion_result(data)
        if on_progress is not None:
            on_progress("analysing the exported graph")
        report = _analyze(result.onnx_path, deep)
        # The export's example input fixes the shapes: count the compute at them.
        compute = count_compute(result.onnx_path, bindings)
    # The exported file is gone with the temp folder: name the user's source instead.
    report = dataclasses.replace(report, path=f"{arg} (exported to ONNX)")
    info = read_framework_info(report.metadata)
    return SourceInspection(
        report,
        info,
        reconcile(report, info) if info else None,
        result,
        result.notes,
        summary=result.summary,
        inputs=result.inputs,
        compute=compute,
    )


def inspection_to_dict(inspection: SourceInspection, *, depth: int | None = None) -> dict[str, Any]:
    """The JSON object for ``inspect``.

    For a framework source (or an ONNX file carrying the framework record), ``framework`` comes
    first: the framework's own counts and per-layer table (``layers`` at ``depth``, default 1),
    then the report's JSON (absent when no graph was made), ``reconciliation``, ``conversion``
    and, when the export failed, ``export_error``.
    """
    data: dict[str, Any] = {}
    totals = inspection.totals
    summary, info = inspection.summary, inspection.framework
    if totals is not None:
        name = summary.name if summary is not None else info.name if info is not None else ""
        version = (
            summary.version if summary is not None else info.version if info is not None else ""
        )
        data["framework"] = {
            "counted_by": f"{name} {version}".strip(),
            "name": name,
            "version": version,
            "model_type": summary.model_type if summary is not None else None,
            "total": totals.total,
            "trainable": totals.trainable,
            "non_trainable": totals.non_trainable,
            "buffers": totals.buffers,
            "exporter": info.exporter if info is not None else None,
            "fallback_reason": info.fallback_reason if info is not None else None,
            "layers": [
                {
                    "name": row.name,
                    "type": row.type,
                    "depth": row.depth,
                    "parameters": row.parameters,
                    "trainable": row.trainable,
                    "non_trainable": row.non_trainable,
                    "frozen": row.frozen,
                    "buffers": row.buffers,
                    "output_shape": row.output_shape or None,
                }
                for row in inspection.framework_layers(depth or 1)
            ],
        }
    if inspection.report is not None:
        data.update(report_to_dict(inspection.report, depth=depth))
    if inspection.reconciliation is not None:
        data["reconciliation"] = reconciliation_to_dict(inspection.reconciliation)
    if inspection.conversion is not None:
        data["conversion"] = conversion_to_dict(inspection.conversion)
        # inspect exports into a temporary folder, gone by now: there is no file to name.
        data["conversion"]["onnx_path"] = None
        data["conversion"]["onnx_path_note"] = (
            "exported to a temporary file, removed after the analysis; modelsize convert keeps one"
        )
    elif totals is not None and inspection.report is None:
        data["conversion"] = {
            "onnx_path": None,
            "exporter": None,
            "fallback_reason": None,
            "framework": None,
            "inputs": [i.to_json() for i in inspection.inputs],
            "notes": list(inspection.notes),
        }
    if inspection.export_error is not None:
        data["export_error"] = inspection.export_error
        data["warnings"] = [f"no graph figures: the ONNX export failed: {inspection.export_error}"]
    if inspection.compute is not None:
        data["compute"] = compute_to_dict(inspection.compute, depth=depth)
    return data


def _conversion_result(data: dict[str, Any]) -> ConversionResult:
    """The :class:`ConversionResult` for a converter child's JSON after a successful export."""
    fw = data["framework"]
    return ConversionResult(
        onnx_path=Path(data["onnx_path"]),
        exporter=data["exporter"],
        fallback_reason=data.get("fallback_reason"),
        framework=FrameworkCounts(
            name=fw["name"],
            version=fw["version"],
            total=int(fw["total"]),
            trainable=int(fw["trainable"]),
            non_trainable=int(fw["non_trainable"]),
            buffers=int(fw["buffers"]),
        ),
        inputs=_inputs_of(data),
        notes=tuple(data.get("notes", ())),
        summary=_summary_of(data),
    )


def conversion_to_dict(result: ConversionResult) -> dict[str, Any]:
    """JSON for a :class:`ConversionResult`."""
    return {
        "onnx_path": str(result.onnx_path),
        "exporter": result.exporter,
        "fallback_reason": result.fallback_reason,
        "framework": {
            "name": result.framework.name,
            "version": result.framework.version,
            "total": result.framework.total,
            "trainable": result.framework.trainable,
            "non_trainable": result.framework.non_trainable,
            "buffers": result.framework.buffers,
        },
        "inputs": [i.to_json() for i in result.inputs],
        "notes": list(result.notes),
    }
