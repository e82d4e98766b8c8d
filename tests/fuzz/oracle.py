"""The fuzzer's oracle: a reader either succeeds or raises an ``InputError``; nothing else escapes,
nothing outside the case's folder is opened, nothing is written, the inputs are unchanged, and every
input is done within a time bound."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph_analysis import analyze
from graph_analysis.errors import InputError
from graph_analysis.loading import load_skeleton, read_model

__all__ = ["OPTIONAL_TARGETS", "TARGETS", "Finding", "check"]

_REPO = Path(__file__).resolve().parents[2]


def _skeleton(path: Path) -> None:
    """load_skeleton, and every name it hands over is ``str`` (one representation of names)."""
    proto = load_skeleton(path)
    graphs = [proto.graph] + [n for f in proto.functions for n in [f]]
    for graph in graphs:
        for node in graph.node:
            for name in (node.name, node.op_type, node.domain, *node.input, *node.output):
                if not isinstance(name, str):
                    raise AssertionError(f"load_skeleton handed over a {type(name).__name__} name")


def _memory(path: Path) -> None:
    """The ``memory`` command's input path: skeleton, shape inference, liveness (in-process: onnx's
    C++ shape inference on a mutant could crash the campaign, so this target is opt-in)."""
    from graph_analysis.memory import estimate_memory

    estimate_memory(path)


TARGETS: dict[str, Callable[[Path], Any]] = {
    "read_model": read_model,
    "analyze": analyze,
    "analyze_deep": lambda path: analyze(path, deep=True),
    "load_skeleton": _skeleton,
}
OPTIONAL_TARGETS: dict[str, Callable[[Path], Any]] = {"memory": _memory}


@dataclass(frozen=True)
class Finding:
    """One input the oracle rejects: which target, what escaped, where it was raised."""

    target: str
    kind: str  # the exception type, "hang", "touched", "modified"
    detail: str
    where: str

    @property
    def signature(self) -> str:
        """Same signature, same root cause (for de-duplication)."""
        return f"{self.target}:{self.kind}:{self.where}"


class _Hang(BaseException):
    """Raised by the alarm inside a target that ran past its time bound."""


_watch: dict[str, Any] = {"root": None, "touched": []}
_ALLOWED_DIRS = {
    os.path.realpath(sys.prefix),
    os.path.realpath(sys.base_prefix),
    os.path.realpath(sys.exec_prefix),
    str(_REPO),
    "/proc",
    "/sys",
    "/usr/lib",
    "/usr/share",
    "/usr/local/lib",
}
_ALLOWED_PREFIXES = (
    *(d + os.sep for d in _ALLOWED_DIRS),
    "/dev/null",
    "/dev/urandom",
    "/etc/localtime",
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple[Any, ...]) -> None:
    root = _watch["root"]
    if root is None or event != "open":
        return
    path, mode, flags = args
    if path is None or isinstance(path, int):
        return
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    writing = bool(mode and any(c in str(mode) for c in "wax+")) or bool(
        isinstance(flags, int) and flags & _WRITE_FLAGS
    )
    try:
        real = os.path.realpath(text)
    except (OSError, ValueError):
        real = text
    inside = real.startswith(root + os.sep)
    if writing or not (inside or real.startswith(_ALLOWED_PREFIXES)):
        _watch["touched"].append(("write " if writing else "read ") + real[:200])


def _install_hook() -> None:
    # An audit hook cannot be removed: install one for the process, gated by ``_watch["root"]``.
    if not _watch.get("installed"):
        sys.addaudithook(_audit)
        _watch["installed"] = True


@contextmanager
def _time_bound(seconds: float) -> Iterator[None]:
    def alarm(_signum: int, _frame: Any) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if str(_REPO) in f.filename] or frames
    if not ours:
        return "?"
    last = ours[-1]
    return f"{Path(last.filename).name}:{last.name}"


def _digest(folder: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def check(
    path: Path, *, targets: tuple[str, ...] = tuple(TARGETS), time_limit_s: float = 20.0
) -> tuple[Finding | None, bool]:
    """Run each target on the model at ``path``: the first violation of the oracle (or None), and
    whether every target read the input (False when one refused it with an ``InputError``).

    The case's folder is ``path.parent``; a sentinel ``outside.bin`` beside that folder must stay
    unread and unchanged.
    """
    _install_hook()
    folder = path.parent
    before = _digest(folder)
    root = os.path.realpath(folder)
    read = True
    for name in targets:
        _watch["touched"] = []
        _watch["root"] = root
        try:
            with _time_bound(time_limit_s):
                (TARGETS.get(name) or OPTIONAL_TARGETS[name])(path)
        except InputError:
            read = False
        except _Hang:
            return Finding(name, "hang", f"more than {time_limit_s:g} s", "-"), False
        except Exception as e:
            return Finding(name, type(e).__name__, str(e)[:300], _where(e)), False
        finally:
            _watch["root"] = None
        if _watch["touched"]:
            return Finding(name, "touched", "; ".join(_watch["touched"][:3]), "-"), False
    if _digest(folder) != before:
        return Finding(",".join(targets), "modified", "the input folder changed", "-"), False
    return None, read
