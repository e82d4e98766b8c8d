"""The exception tree of modelsize: every error the library raises on purpose.

All errors derive from :class:`ModelsizeError`. The CLI catches that base class only, prints
``modelsize: <file>: <message>`` to stderr and exits with :attr:`ModelsizeError.exit_code`
(2 for bad input, 1 for internal failures). Anything else that escapes is a bug and exits 1.

Tree::

    ModelsizeError
    ├── InputError                 bad input from the user (exit 2)
    │   ├── ModelFormatError       not a readable ONNX file (truncated, random bytes, LFS pointer, ...)
    │   ├── CorruptTensorError     a tensor's stored payload does not match its dims x dtype
    │   ├── ExternalDataError      external data escaping the model folder, missing or too short
    │   ├── ShapeBindingError      a --input-shape / --dim / --batch that does not fit the graph
    │   ├── SourceError            a framework source (code, checkpoint, folder) that cannot be used
    │   ├── MissingExtraError      the source needs an optional extra (torch, tensorflow)
    │   ├── OutputPathError        an output path that would overwrite the input or cannot be written
    │   ├── AlreadyQuantizedError  asked to quantize a model whose weights are already low-bit
    │   ├── UnsupportedModelError  a valid model this operation cannot handle (FLOAT16 weights to int8)
    │   └── UsageError             an option value that cannot be used (a malformed size, a lone flag)
    └── InternalError              a step of ours or of a framework failed unexpectedly (exit 1)
        ├── ConversionError        an exporter crashed on a valid source
        └── MeasurementError       the measuring child process failed
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AlreadyQuantizedError",
    "ConversionError",
    "CorruptTensorError",
    "ExternalDataError",
    "InputError",
    "InternalError",
    "MeasurementError",
    "MissingExtraError",
    "ModelFormatError",
    "ModelsizeError",
    "OutputPathError",
    "ShapeBindingError",
    "SourceError",
    "UnsupportedModelError",
    "UsageError",
]


class ModelsizeError(Exception):
    """Base of every error modelsize raises on purpose.

    Args:
        path: the file or source the error is about (shown first in the CLI's one-line message).
        message: what is wrong, one line, no trailing period needed.
    """

    exit_code = 1

    def __init__(self, path: str | Path | None, message: str) -> None:
        self.path = str(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(ModelsizeError):
    """The user's input cannot be used; nothing was written (exit 2)."""

    exit_code = 2


class ModelFormatError(InputError):
    """The file is not a readable ONNX model."""


class CorruptTensorError(InputError):
    """A tensor's stored payload does not match what its dims and data type need."""


class ExternalDataError(InputError):
    """External tensor data is unsafe (outside the model folder), missing or too short."""


class ShapeBindingError(InputError):
    """An input shape or dim binding does not fit the graph."""


class SourceError(InputError):
    """A framework source (Python code, checkpoint, model folder) cannot be used."""


class MissingExtraError(InputError):
    """The source needs an optional dependency that is not installed."""


class OutputPathError(InputError):
    """An output path would overwrite the input or cannot be written."""


class AlreadyQuantizedError(InputError):
    """The model's weights are already stored in the target (or a lower) precision."""


class UnsupportedModelError(InputError):
    """A valid model that this operation cannot handle; the message says what to do instead."""


class UsageError(InputError):
    """An option value that cannot be used: a malformed size, an option missing its companion."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class InternalError(ModelsizeError):
    """A step failed unexpectedly on valid input (exit 1)."""


class ConversionError(InternalError):
    """An exporter failed on a source that looked valid."""


class MeasurementError(InternalError):
    """The child process that measures a model failed."""
