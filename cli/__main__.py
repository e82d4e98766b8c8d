"""The ``modelsize`` entry point (also ``python -m cli``): Ctrl-C handling before the heavy imports.

Importing the commands loads typer, rich, numpy and onnx, which takes long enough for a Ctrl-C to
land in the middle of it; Python's default handler would then print a ``KeyboardInterrupt``
traceback. This module imports nothing heavy: it installs a handler that prints one line and exits
130 while the imports run, then gives SIGINT back to Python's handler, so that a command that is
interrupted cleans up (temporary files, child processes) before the command group reports it.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["main"]

_EXIT_INTERRUPTED = 130


def _interrupted_while_starting(_signum: int, _frame: FrameType | None) -> None:
    os.write(2, b"modelsize: interrupted\n")
    os._exit(_EXIT_INTERRUPTED)  # nothing to clean up yet: no file or child exists


def main() -> None:
    """Console-script entry point: run the command line and exit with its code."""
    # Only where Ctrl-C would raise KeyboardInterrupt: a SIGINT the caller ignores (a background
    # job of a non-interactive shell) stays ignored.
    catching = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if catching:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from cli.app import app

    if catching:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    app(prog_name="modelsize")


if __name__ == "__main__":
    sys.argv[0] = "modelsize"
    main()
