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
from graph_analysis import ModelReport, analyze, report_to_dict
from graph_analysis.bindings import Bindings
from graph_analysis.errors import MissingExtraError, OutputPathError, SourceError
from graph_analysis.framework import (
    FrameworkInfo,
    Reconciliation,
    framework_info_to_dict,
    read_framework_info,
    reconcile,
    reconciliation_to_dict,
    trainable_by_layer,
)

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
    """

    onnx_path: Path
    exporter: str
    fallback_reason: str | None
    framework: FrameworkCounts
    inputs: tuple[InputSpec, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceInspection:
    """An analysed source: the graph report; for framework sources, info and reconciliation."""

    report: ModelReport
    framework: FrameworkInfo | None = None
    reconciliation: Reconciliation | None = None
    conversion: ConversionResult | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


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

    Raises:
        SourceError: an ONNX source, an unusable source or checkpoint.
        MissingExtraError: the framework is not installed.
        OutputPathError: the output would overwrite the source or cannot be written.
        ShapeBindingError: no usable input description, or the model rejects it.
        ConversionError: the exporter failed, crashed, ran out of memory or timed out.
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
    out = Path(out_path).resolve()
    if not out.parent.is_dir():
        raise OutputPathError(out_path, "the output folder does not exist")
    if out == Path(source.location).resolve() or (
        weights is not None and out == Path(weights).resolve()
    ):
        raise OutputPathError(out_path, "the output would overwrite the input")
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
        "out_path": str(out),
        "bindings": bindings_to_json(bindings or Bindings()),
        "dynamic": [DynamicAxis(d).value for d in dynamic_axes],
    }
    if source.kind.framework == "torch":
        kwargs["attr"] = source.attr
        kwargs["weights"] = str(Path(weights).resolve()) if weights is not None else None
    data = run_in_child(
        module, kwargs, source=source.text, timeout_s=timeout_s, on_progress=on_progress
    )
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
        inputs=tuple(
            InputSpec(
                i["name"],
                tuple(i["dims"]),
                i["dtype"],
                {int(k): v for k, v in i.get("dynamic", {}).items()},
            )
            for i in data.get("inputs", ())
        ),
        notes=tuple(data.get("notes", ())),
    )


def _analyze(path: Path, deep: bool) -> ModelReport:
    # analyze() reads the converter's record of tied parameters (metadata_props) by default.
    return analyze(path, deep=deep)


def inspect_source(
    arg: str,
    *,
    bindings: Bindings | None = None,
    dynamic_axes: Sequence[DynamicAxis] = (),
    weights: str | Path | None = None,
    deep: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_progress: ProgressCallback | None = None,
) -> SourceInspection:
    """Analyse any source: ONNX files directly, framework sources converted in a temp folder.

    The framework info comes from the ONNX file's metadata (so an ONNX file exported earlier by
    ``modelsize convert`` is reconciled too).

    Raises:
        ModelsizeError: as :func:`detect_source`, :func:`convert_source` and the analysis raise.
    """
    source = detect_source(arg)
    if source.kind is SourceKind.ONNX:
        if weights is not None:
            raise SourceError(str(weights), "--weights goes with a file.py:Name source")
        report = _analyze(Path(source.location), deep)
        info = read_framework_info(report.metadata)
        return SourceInspection(report, info, reconcile(report, info) if info else None)
    with tempfile.TemporaryDirectory(prefix="modelsize-inspect-") as tmp:
        result = convert_source(
            source,
            Path(tmp) / "model.onnx",
            bindings=bindings,
            dynamic_axes=dynamic_axes,
            weights=weights,
            timeout_s=timeout_s,
            on_progress=on_progress,
        )
        if on_progress is not None:
            on_progress("analysing the exported graph")
        report = _analyze(result.onnx_path, deep)
    # The exported file is gone with the temp folder: name the user's source instead.
    report = dataclasses.replace(report, path=f"{arg} (exported to ONNX)")
    info = read_framework_info(report.metadata)
    return SourceInspection(
        report,
        info,
        reconcile(report, info) if info else None,
        result,
        result.notes,
    )


def inspection_to_dict(inspection: SourceInspection, *, depth: int | None = None) -> dict[str, Any]:
    """The JSON object for ``inspect``: the report's JSON (``depth`` limits its layer rows) plus
    ``framework``, ``reconciliation`` and, for converted sources, ``conversion``."""
    data: dict[str, Any] = dict(report_to_dict(inspection.report, depth=depth))
    info = inspection.framework
    if info is not None:
        raw = framework_info_to_dict(info)
        data["framework"] = {
            "name": info.name,
            "version": info.version,
            "exporter": info.exporter,
            "fallback_reason": info.fallback_reason,
            **raw["totals"],
            "layers": [
                {"layer": row.layer, "trainable": row.trainable, "frozen": row.frozen}
                for row in trainable_by_layer(info, depth=depth or 1)
            ],
        }
    if inspection.reconciliation is not None:
        data["reconciliation"] = reconciliation_to_dict(inspection.reconciliation)
    if inspection.conversion is not None:
        data["conversion"] = conversion_to_dict(inspection.conversion)
    return data


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
