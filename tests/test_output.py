"""Writing outputs: one path check, the umask's permissions, atomic moves, stale work folders.

Oracles: the file system itself (``os.stat`` modes under a given umask, folder listings) and
processes whose liveness the test controls (a sleeping child is alive; a child that was waited
for is gone).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from cli.app import app
from converters import _output
from converters._output import check_output_path, output_mode, remove_stale_work
from converters.quantize import quantize_model
from fixtures import quant_models as qm
from graph_analysis.errors import OutputPathError

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed_models.py"


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save_model(qm.mlp(width=64, layers=1), str(path))
    return path


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_output_mode_is_what_the_umask_gives(umask: None, mask: int) -> None:
    os.umask(mask)
    assert output_mode() == 0o666 & ~mask


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_quantized_outputs_get_the_umask_mode(umask: None, tmp_path: Path, mask: int) -> None:
    src = _model(tmp_path)
    os.umask(mask)
    result = quantize_model(src, tmp_path / "q.onnx", external_data=True)
    assert _mode(result.output) == 0o666 & ~mask
    assert _mode(tmp_path / "q.onnx.data") == 0o666 & ~mask


@pytest.mark.torch
def test_converted_outputs_get_the_umask_mode(umask: None, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    os.umask(0o027)
    out = tmp_path / "simple.onnx"
    result = CliRunner().invoke(app, ["convert", f"{SEED}:SimpleModel", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert _mode(out) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simple.onnx"]


def test_check_output_path_refusals(tmp_path: Path) -> None:
    src = _model(tmp_path)
    with pytest.raises(OutputPathError, match="overwrite the input"):
        check_output_path(tmp_path / "sub" / ".." / "m.onnx", protected=[src])
    with pytest.raises(OutputPathError, match="overwrite the input"):
        check_output_path(tmp_path / "m", protected=[tmp_path / "m.data"])
    with pytest.raises(OutputPathError, match="is a directory"):
        check_output_path(tmp_path)
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "q.onnx")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_path(tmp_path / "afile" / "q.onnx")
    check_output_path(tmp_path / "fine.onnx", protected=[src])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m.onnx"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_up_front(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match="is not writable"):
            check_output_path(folder / "q.onnx")
    finally:
        folder.chmod(0o755)


def _refuse_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only mount does, even to root: creating a file fails with EROFS."""

    def read_only(*_args: object, **_kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(_output.tempfile, "mkstemp", read_only)


@pytest.mark.parametrize("command", ["convert", "quantize"])
def test_every_writer_refuses_an_unwritable_folder_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    src = _model(tmp_path)
    (tmp_path / "code.py").write_text("class Model:\n    pass\n")
    source = f"{tmp_path / 'code.py'}:Model" if command == "convert" else str(src)
    out = tmp_path / "out.onnx"
    _refuse_writes(monkeypatch)
    result = CliRunner().invoke(app, [command, source, "-o", str(out)])
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"modelsize: {out}: cannot write in {tmp_path}: Read-only file system\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.py", "m.onnx"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_work_of_dead_processes_is_removed_live_kept(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        stale = tmp_path / f".modelsize-quantize-{dead}-abc123"
        stale.mkdir()
        (stale / "prepped.onnx").write_bytes(b"x" * 100)
        stale_file = tmp_path / f".modelsize-write-{dead}-xyz.onnx.tmp"
        stale_file.write_bytes(b"x")
        running = tmp_path / f".modelsize-quantize-{live.pid}-def456"
        running.mkdir()
        mine = tmp_path / f".modelsize-export-{os.getpid()}-ghi789"
        mine.mkdir()
        unrelated = tmp_path / ".modelsize-notes"
        unrelated.mkdir()
        removed = remove_stale_work(tmp_path)
        assert sorted(removed) == sorted([stale, stale_file])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [running.name, mine.name, unrelated.name]
        )
    finally:
        live.kill()
        live.wait()


def test_quantize_cleans_stale_work_folders_of_killed_runs(tmp_path: Path) -> None:
    """A SIGKILLed quantize leaves its work folder; the next run into that folder removes it."""
    src = _model(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import converters.quantize as q\n"
        "def killed(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "q._run_quantizer = killed\n"
        "q.quantize_model(Path(sys.argv[1]), Path(sys.argv[2]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", script, str(src), str(out_dir / "q.onnx")],
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == -9, run.stderr
    left = [p.name for p in out_dir.iterdir()]
    assert len(left) == 1 and left[0].startswith(".modelsize-quantize-"), left
    result = quantize_model(src, out_dir / "q.onnx")
    assert result.output.exists()
    assert sorted(p.name for p in out_dir.iterdir()) == ["q.onnx"]
