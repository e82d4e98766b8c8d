"""Writing outputs: one path check, one atomic writer and one work-folder scheme for every writer.

``convert`` and ``quantize`` (and anything else that writes a file the user named) check the path
with :func:`check_output_path` before any slow step, build the output under a temporary name in
the destination folder and move it into place with :func:`publish`, so that a failure never leaves
a partial file under the final name. Outputs get the permissions the umask gives (``0666 & ~umask``),
not the ``0600`` of :func:`tempfile.mkstemp`.

Work folders are named ``.modelsize-<kind>-<pid>-<random>``: a process killed with ``SIGKILL``
cannot remove its own, so the next run into the same folder removes those whose process is gone
(:func:`remove_stale_work`), never those of a live process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from graph_analysis.errors import OutputPathError

__all__ = [
    "check_output_path",
    "output_mode",
    "publish",
    "remove_stale_work",
    "work_folder",
    "write_text_output",
]

_WORK_PREFIX = ".modelsize-"
_WORK_NAME = re.compile(r"^\.modelsize-[a-z]+-(?P<pid>[0-9]+)-")


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # the portable way: set and restore
    os.umask(mask)
    return mask


def output_mode() -> int:
    """The mode a newly created output gets: ``0666 & ~umask``, as ``open()`` would give it."""
    return 0o666 & ~_umask()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_path(
    out: Path, *, protected: Sequence[Path] = (), companions: Sequence[str] = (".data",)
) -> None:
    """Refuse an output path that cannot or must not be written, before any slow step.

    Args:
        out: the file the user asked for.
        protected: inputs (the model, its external data files, a checkpoint) never to overwrite.
        companions: suffixes of files written next to ``out`` (``<out>.data``), checked as well.

    Raises:
        OutputPathError: ``out`` (or a companion) is an input, a folder, in a missing or
            unwritable folder, or an existing file that cannot be replaced.
    """
    out = Path(out)
    for candidate in (out, *(out.with_name(out.name + suffix) for suffix in companions)):
        for guarded in protected:
            if _same_file(candidate, Path(guarded)):
                raise OutputPathError(
                    out, f"would overwrite the input ({guarded}); choose another -o path"
                )
    if out.is_dir():
        raise OutputPathError(out, "is a directory; give a file name such as model.onnx")
    parent = out.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise OutputPathError(out, f"the folder {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(out, f"the folder {parent} is not writable")
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputPathError(out, "exists and is not writable")
    # os.access does not see read-only mounts for root, quotas or some ACLs: really try.
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{_WORK_PREFIX}probe-{os.getpid()}-", dir=parent)
    except OSError as e:
        raise OutputPathError(out, f"cannot write in {parent}: {e.strerror or e}") from e
    os.close(fd)
    os.unlink(probe)


def publish(built: Path, out: Path) -> None:
    """Move ``built`` (in the destination folder) to ``out`` atomically, with the umask's mode.

    Raises:
        OutputPathError: the move or the mode change failed (``built`` is removed).
    """
    try:
        os.chmod(built, output_mode())
        os.replace(built, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(built)
        raise OutputPathError(out, f"cannot write the output: {e.strerror or e}") from e


def write_text_output(out: Path, text: str) -> None:
    """Write a text output (a report, a scan) atomically: a temporary file in the destination
    folder, then :func:`publish`. Call :func:`check_output_path` before the slow work.

    Raises:
        OutputPathError: the folder cannot be written.
    """
    out = Path(out)
    try:
        fd, built = tempfile.mkstemp(prefix=f"{_WORK_PREFIX}write-{os.getpid()}-", dir=out.parent)
    except OSError as e:
        raise OutputPathError(out, f"cannot write in {out.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(built)
        raise OutputPathError(out, f"cannot write the output: {e.strerror or e}") from e
    publish(Path(built), out)


def _is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a number we cannot ask about): keep it
    return True


def remove_stale_work(folder: Path) -> list[Path]:
    """Remove ``.modelsize-<kind>-<pid>-*`` entries in ``folder`` whose process no longer exists.

    Only entries owned by this user are touched; a live process's work is never removed, and a
    failure to remove is ignored (the next run tries again).

    Returns:
        What was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _WORK_NAME.match(entry.name)
        if match is None or _is_alive(int(match["pid"])):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def work_folder(parent: Path, kind: str) -> Iterator[Path]:
    """A private folder ``.modelsize-<kind>-<pid>-<random>`` in ``parent``, removed on exit.

    It sits in the destination folder so that the final move is a rename on one file system.
    Stale work folders of dead processes in ``parent`` are removed first.

    Raises:
        OutputPathError: the folder cannot be created.
    """
    remove_stale_work(parent)
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{kind}-{os.getpid()}-", dir=parent))
    except OSError as e:
        raise OutputPathError(parent, f"cannot create a work folder: {e.strerror or e}") from e
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
