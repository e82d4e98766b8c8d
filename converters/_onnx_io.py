"""Reading an exporter's ONNX output and writing the final file with the framework metadata.

Only the converters (in their child process) import this module: the CLI never loads ``onnx``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from converters._common import FrameworkTensorData, InputSpec, find_merged, match_initializers
from converters._output import publish
from graph_analysis.errors import OutputPathError
from graph_analysis.framework import (
    METADATA_KEY,
    FrameworkInfo,
    FrameworkTensor,
    FrameworkTotals,
    write_framework_json,
)

__all__ = ["finish_export", "onnx_initializer_arrays", "write_onnx_with_metadata"]

# Above this many bytes of tensor data, an ONNX file must keep its weights in an external file
# (protobuf's 2 GiB message limit, with margin).
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def write_onnx_with_metadata(
    exported: Path,
    out_path: Path,
    info: FrameworkInfo,
    *,
    external_data_threshold: int = _EXTERNAL_DATA_THRESHOLD,
) -> int:
    """Write the exported model to ``out_path`` with the framework info in its metadata, atomically.

    The model goes to a temporary file in the destination folder and is renamed into place; models
    whose tensors pass ``external_data_threshold`` bytes (default ~1.8 GB, under protobuf's 2 GiB
    limit) keep their weights in ``<out name>.data`` next to it.

    Returns:
        The size in bytes of the written ``.onnx`` file.

    Raises:
        OutputPathError: the destination cannot be written.
    """
    model = onnx.load(str(exported))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=write_framework_json(info))
    data_bytes = sum(t.ByteSize() for t in model.graph.initializer)
    out_path = out_path.resolve()
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".modelsize-write-{os.getpid()}-", suffix=".onnx.tmp", dir=out_path.parent
        )
        os.close(fd)
    except OSError as e:
        raise OutputPathError(out_path, f"cannot write here: {e.strerror or e}") from e
    try:
        if data_bytes > external_data_threshold:
            # onnx appends to an existing data file: the output's old companion goes first.
            out_path.with_name(out_path.name + ".data").unlink(missing_ok=True)
            onnx.save_model(
                model,
                tmp_name,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=out_path.name + ".data",
                size_threshold=0,
            )
        else:
            onnx.save_model(model, tmp_name)
        publish(Path(tmp_name), out_path)  # the umask's mode, not mkstemp's 0600
    except OSError as e:
        raise OutputPathError(out_path, f"cannot write the model: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out_path.stat().st_size


def onnx_initializer_arrays(path: Path) -> list[tuple[str, np.ndarray]]:
    """Every initializer of an exported model as (name, values), main graph only."""
    model = onnx.load(str(path))
    return [(t.name, numpy_helper.to_array(t)) for t in model.graph.initializer]


def finish_export(
    exported: Path,
    out_path: Path,
    tensors: Sequence[FrameworkTensorData],
    *,
    framework: str,
    version: str,
    exporter: str,
    fallback_reason: str | None,
    totals: FrameworkTotals,
    inputs: Sequence[InputSpec],
    notes: list[str],
) -> dict[str, Any]:
    """Match the exported initializers to the framework's tensors, write ``out_path`` with that
    framework info in its metadata (:func:`write_onnx_with_metadata`), and return the conversion
    result the parent process reads (JSON: ``onnx_path``, ``exporter``, ``framework``, ...).

    Raises:
        OutputPathError: the destination cannot be written.
    """
    mapping = match_initializers(onnx_initializer_arrays(exported), tensors)
    merged = find_merged(tensors, mapping)
    info = FrameworkInfo(
        name=framework,
        version=version,
        exporter=exporter,
        fallback_reason=fallback_reason,
        totals=totals,
        tensors=tuple(
            FrameworkTensor(
                t.name,
                t.kind,
                t.trainable,
                t.num_elements,
                t.module,
                bool(t.values.size) and not bool(np.any(t.values)),
                merged.get(t.name, ""),
            )
            for t in tensors
        ),
        initializers=mapping,
    )
    write_onnx_with_metadata(exported, out_path, info)
    return {
        "onnx_path": str(out_path),
        "exporter": exporter,
        "fallback_reason": fallback_reason,
        "framework": {
            "name": framework,
            "version": version,
            "total": totals.total,
            "trainable": totals.trainable,
            "non_trainable": totals.non_trainable,
            "buffers": totals.buffers,
        },
        "inputs": [s.to_json() for s in inputs],
        "notes": notes,
    }
