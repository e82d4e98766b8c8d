"""Run one conversion step in a child Python process, so a framework crash or hang is a clean error.

The parent sends ``{"func": "module:function", "kwargs": {...}}`` on the child's stdin. The child
moves its own stdout onto stderr (frameworks print freely; that goes to a log the parent keeps) and
writes protocol lines on a private pipe: ``progress <text>`` while working, then one
``result <json>``
or ``error <json>`` line. A :class:`~graph_analysis.errors.ModelsizeError` raised in the child is
raised again in the parent with the same class; anything else becomes a ``ConversionError``.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from graph_analysis import errors
from graph_analysis.runtime._child_process import child_environment

__all__ = ["ProgressCallback", "report_progress", "run_in_child"]

ProgressCallback = Callable[[str], None]

_channel: TextIO | None = None
# Environment for every child: no network, quiet frameworks.
_CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONWARNINGS": "ignore",
}


def report_progress(text: str) -> None:
    """Tell the parent which slow step starts now (no-op outside a child)."""
    if _channel is not None:
        _channel.write(f"progress {text}\n")
        _channel.flush()


def _error_class(name: str) -> type[errors.ModelsizeError]:
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ModelsizeError):
        return cls
    return errors.ConversionError


def _reader(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _tail(log_path: Path, limit: int = 600) -> str:
    try:
        text = log_path.read_text(errors="replace").strip()
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[-limit:]


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_in_child(
    func: str,
    kwargs: dict[str, Any],
    *,
    source: str,
    timeout_s: float = 900.0,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Call ``func`` (``"package.module:function"``) with JSON ``kwargs`` in a child process.

    Args:
        func: the function to run; it returns a JSON-serialisable dict.
        kwargs: its keyword arguments (JSON-serialisable).
        source: the user's source, named in error messages.
        timeout_s: wall-clock limit; the child's whole process group is killed after it.
        on_progress: called with each progress text the child reports.

    Returns:
        The function's result.

    Raises:
        ModelsizeError: the same class the child raised.
        ConversionError: the child crashed, was killed (often: out of memory) or timed out.
    """
    env = child_environment(_CHILD_ENV)
    with tempfile.TemporaryDirectory(prefix="modelsize-child-") as tmp:
        log_path = Path(tmp) / "child.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "converters._child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
                start_new_session=True,
            )
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"func": func, "kwargs": kwargs}))
            proc.stdin.close()
            lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
            deadline = time.monotonic() + timeout_s
            outcome: tuple[str, str] | None = None
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    try:
                        line = lines.get(timeout=max(remaining, 0.01))
                    except queue.Empty:
                        _kill(proc)
                        raise errors.ConversionError(
                            source,
                            f"conversion did not finish within {timeout_s:.0f} s and was stopped",
                        ) from None
                    if line is None:
                        break
                    kind, _, payload = line.partition(" ")
                    if kind == "progress" and on_progress is not None:
                        on_progress(payload)
                    elif kind in ("result", "error"):
                        outcome = (kind, payload)
                try:
                    returncode = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    returncode = proc.returncode
            except BaseException:
                # Interrupted (Ctrl-C) or failed here: the child has its own session, stop it too.
                if proc.poll() is None:
                    _kill(proc)
                raise
        if outcome is None:
            if returncode is not None and returncode < 0:
                sig = signal.Signals(-returncode).name
                hint = " (most likely out of memory)" if sig == "SIGKILL" else ""
                raise errors.ConversionError(
                    source, f"the conversion process was killed by {sig}{hint}"
                )
            detail = _tail(log_path)
            raise errors.ConversionError(
                source,
                f"the conversion process exited with status {returncode}"
                + (f": {detail}" if detail else ""),
            )
    kind, payload = outcome
    data = json.loads(payload)
    if kind == "error":
        raise _error_class(data["class"])(data.get("path") or source, data["message"])
    result: dict[str, Any] = data
    return result


def _main() -> None:
    global _channel  # noqa: PLW0603  (one channel per child process, set once at start)
    # Run as ``python -m``, this module is ``__main__``: register it under its own name too, so the
    # converters' ``report_progress`` writes on this channel.
    sys.modules.setdefault("converters._child", sys.modules[__name__])
    # Keep a private copy of stdout for the protocol; everything printed goes to stderr (the log).
    channel_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _channel = os.fdopen(channel_fd, "w", buffering=1)
    request = json.loads(sys.stdin.read())
    module_name, _, func_name = request["func"].partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        result = func(**request["kwargs"])
        message = "result " + json.dumps(result)
    except errors.ModelsizeError as e:
        message = "error " + json.dumps(
            {"class": type(e).__name__, "path": e.path, "message": e.message}
        )
    except MemoryError:
        message = "error " + json.dumps(
            {"class": "ConversionError", "path": None, "message": "ran out of memory"}
        )
    except Exception as e:  # a framework failure on a valid-looking source
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        message = "error " + json.dumps(
            {
                "class": "ConversionError",
                "path": None,
                "message": f"{type(e).__name__}: {first}"[:500],
            }
        )
    _channel.write(message + "\n")
    _channel.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: framework threads (TensorFlow) can hang or crash in it.
    os._exit(0)


if __name__ == "__main__":
    _main()
