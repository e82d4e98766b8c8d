"""Bad inputs: every one is refused with exit 2 and one line naming the file, nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer.main
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from fixtures import builders
from graph_analysis import analyze
from graph_analysis.dtypes import DataType
from graph_analysis.errors import (
    CorruptTensorError,
    ExternalDataError,
    ModelFormatError,
    ShapeBindingError,
)
from graph_analysis.runtime._feeds import InputSpec, check_inputs_fit, feeds_nbytes, make_feeds

runner = CliRunner()


def _run(path: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["inspect", str(path)])
    return result.exit_code, result.stdout, result.stderr


def _assert_clean_refusal(path: Path, fragment: str) -> None:
    before = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
    code, out, err = _run(path)
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"modelsize: {path}: ")
    assert fragment in lines[0]
    assert "Traceback" not in err
    after = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
    assert before == after


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _graph_with(tensor: TensorProto) -> onnx.ModelProto:
    node = helper.make_node("Identity", [tensor.name], ["y"])
    graph = helper.make_graph(
        [node], "g", [], [helper.make_tensor_value_info("y", tensor.data_type, None)], [tensor]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_random_bytes(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _assert_clean_refusal(_write(tmp_path, "random.onnx", data), "")


def test_empty_file(tmp_path: Path) -> None:
    _assert_clean_refusal(_write(tmp_path, "empty.onnx", b""), "empty file")


def test_text_file(tmp_path: Path) -> None:
    _assert_clean_refusal(_write(tmp_path, "notes.onnx", b"just some notes\n"), "text file")


def test_git_lfs_pointer(tmp_path: Path) -> None:
    pointer = (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 12345\n"
    )
    _assert_clean_refusal(_write(tmp_path, "lfs.onnx", pointer), "Git LFS pointer")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "a_model_dir"
    folder.mkdir()
    _assert_clean_refusal(folder, "a folder that is neither a Hugging Face model")


def test_missing_file(tmp_path: Path) -> None:
    _assert_clean_refusal(tmp_path / "nope.onnx", "no such file")


def test_truncated_file(tmp_path: Path, simple_path: Path) -> None:
    data = simple_path.read_bytes()
    _assert_clean_refusal(_write(tmp_path, "cut.onnx", data[: len(data) // 2]), "truncated")


def test_payload_dims_mismatch(tmp_path: Path) -> None:
    tensor = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    tensor.raw_data = tensor.raw_data[:-4]
    path = tmp_path / "mismatch.onnx"
    onnx.save_model(_graph_with(tensor), path)
    _assert_clean_refusal(path, "stores 60 bytes but dims [4, 4] of FLOAT need 64")


def test_huge_dims_claim_is_refused_before_allocating(tmp_path: Path) -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])
    tensor.raw_data = b"\x00" * 16
    path = tmp_path / "huge.onnx"
    onnx.save_model(_graph_with(tensor), path)
    _assert_clean_refusal(path, "need 4000000000000")


def test_no_data_for_declared_elements(tmp_path: Path) -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**12])
    path = tmp_path / "nodata.onnx"
    onnx.save_model(_graph_with(tensor), path)
    _assert_clean_refusal(path, "stores no data")


def test_unknown_data_type(tmp_path: Path) -> None:
    tensor = TensorProto(name="w", data_type=99, dims=[1])
    path = tmp_path / "dtype.onnx"
    onnx.save_model(_graph_with(tensor), path)
    _assert_clean_refusal(path, "unknown data type 99")


def _external_model(
    tmp_path: Path,
    location: str,
    *,
    offset: int = 0,
    length: int | None = None,
    file_size: int | None = 64,
) -> Path:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    if file_size is not None and not location.startswith("/") and ".." not in location:
        (folder / location).write_bytes(b"\x00" * file_size)
    path = folder / "m.onnx"
    onnx.save_model(_graph_with(tensor), path)
    return path


@pytest.mark.parametrize(
    ("location", "fragment"),
    [("../outside.bin", "leaves the model folder"), ("/etc/passwd", "absolute external path")],
)
def test_external_data_escaping_the_folder(tmp_path: Path, location: str, fragment: str) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\x00" * 64)
    _assert_clean_refusal(_external_model(tmp_path, location), fragment)


def test_external_data_symlink_leaving_the_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 64)
    path = _external_model(tmp_path, "weights.bin", file_size=None)
    os.symlink(secret, path.parent / "weights.bin")
    _assert_clean_refusal(path, "resolves outside the model folder")


def test_external_data_file_too_short(tmp_path: Path) -> None:
    _assert_clean_refusal(_external_model(tmp_path, "w.bin", file_size=32), "too short")


def test_external_data_negative_offset(tmp_path: Path) -> None:
    _assert_clean_refusal(_external_model(tmp_path, "w.bin", offset=-8), "negative external offset")


def test_external_length_disagrees_with_dims(tmp_path: Path) -> None:
    _assert_clean_refusal(_external_model(tmp_path, "w.bin", length=32), "external length 32")


def test_missing_external_file_is_a_warning(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "gone.bin", file_size=None)
    report = analyze(path)
    assert report.parameters.total == 16
    assert report.size.external_data_bytes == 0
    assert any("gone.bin" in w and "missing" in w for w in report.warnings)
    code, out, err = _run(path)
    assert code == 0
    # A warning goes to stderr, one line, never into the table on stdout.
    assert "warning" not in out and "gone.bin" not in out
    assert err.count("\n") == 1 and err.startswith("modelsize: warning: ")
    assert "gone.bin" in err and "missing" in err
    result = runner.invoke(app, ["inspect", str(path), "--format", "json"])
    assert result.exit_code == 0
    assert any("gone.bin" in w for w in json.loads(result.stdout)["warnings"])
    assert result.stderr == err


def _negative_dims(tmp_path: Path) -> Path:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-1])
    path = tmp_path / "neg.onnx"
    onnx.save_model(_graph_with(tensor), path)
    return path


@pytest.mark.parametrize(
    ("exc", "make"),
    [
        (ModelFormatError, lambda p: _write(p, "x.onnx", b"\x08\x07\x3a\xff\xff\xff\x0f")),
        (CorruptTensorError, _negative_dims),
        (ExternalDataError, lambda p: _external_model(p, "../x.bin")),
    ],
)
def test_library_raises_typed_errors(
    tmp_path: Path, exc: type[Exception], make: Callable[[Path], Path]
) -> None:
    with pytest.raises(exc, match=r".+"):
        analyze(make(tmp_path))


def test_input_is_not_modified(zoo_path: Path) -> None:
    before = zoo_path.read_bytes()
    stat = zoo_path.stat()
    assert runner.invoke(app, ["inspect", str(zoo_path), "--deep"]).exit_code == 0
    assert zoo_path.read_bytes() == before
    assert zoo_path.stat().st_mtime_ns == stat.st_mtime_ns


def test_builders_external_model_is_valid(tmp_path: Path) -> None:
    path = builders.external_data_model(tmp_path)
    onnx.checker.check_model(str(path))


# --- The command line: every bad-input class is one line on stderr, exit 2 -----------------------

ROOT = Path(__file__).resolve().parent.parent
MODEL = str(ROOT / "fixtures" / "seed_simple.onnx")
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _one_line_refusal(args: list[str]) -> str:
    """Run the CLI; assert exit 2, nothing on stdout, one line on stderr; return that line."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.stdout, result.stderr)
    assert result.stdout == "", args
    lines = result.stderr.splitlines()
    assert len(lines) == 1, (args, result.stderr)
    assert lines[0].startswith("modelsize: "), lines
    assert "Usage" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["measure", MODEL, "--runs", "0"], "modelsize: --runs: must be at least 1"),
        (["inspect", MODEL, "--depth", "0"], "modelsize: --depth: must be at least 1"),
        (["inspect", MODEL, "--top", "x"], "modelsize: --top: must be a whole number"),
        (
            ["inspect", MODEL, "--format", "bogus"],
            "modelsize: --format: 'bogus' is not one of 'table', 'json', 'csv', 'markdown'",
        ),
        (
            ["memory", MODEL, "--checkpointing", "2"],
            "modelsize: --checkpointing: must be at most 1",
        ),
        (["memory", MODEL, "--batch", "0"], "modelsize: --batch: must be at least 1"),
        (["compare", MODEL, MODEL, "--threads", "0"], "modelsize: --threads: must be at least 1"),
        (["quantize", MODEL], "modelsize: --output: missing (required)"),
        (
            ["quantize", MODEL, "-o", "q.onnx", "--calibration-samples", "0"],
            "modelsize: --calibration-samples: must be at least 1",
        ),
        (["convert", "x.py:M"], "modelsize: --output: missing (required)"),
        (["inspect"], "modelsize: MODEL: missing (required)"),
        (
            ["inspect", MODEL, "--depht", "1"],
            "modelsize: no such option --depht (did you mean --depth, --deep, --weights?)",
        ),
        (["nope"], "modelsize: no such command 'nope'"),
        (
            ["measure", MODEL, "--input-shape"],
            "modelsize: option '--input-shape' requires an argument",
        ),
        (
            ["compare", MODEL],
            "modelsize: MODELS: needs two or more models (the first is the reference)",
        ),
    ],
)
def test_usage_errors_are_one_line(args: list[str], line: str) -> None:
    assert _one_line_refusal(args) == line


def _sweep_cases() -> list[tuple[str, str]]:
    return [
        (name, param.opts[0])
        for name, command in COMMANDS.items()
        for param in command.params
        if param.param_type_name == "option" and not param.is_flag
    ]


@pytest.mark.parametrize(("command", "option"), _sweep_cases())
def test_every_option_of_every_command_refuses_in_one_line(
    tmp_path: Path, command: str, option: str
) -> None:
    """A value no option accepts (or a model that is not there): one line, exit 2, no usage box."""
    missing = str(tmp_path / "missing.onnx")
    args = [command, missing, *([missing] if command == "compare" else [])]
    if command in ("convert", "quantize") and option != "--output":
        args += ["-o", str(tmp_path / "out.onnx")]
    _one_line_refusal([*args, option, "@@bogus@@"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_every_source_command_takes_the_same_input_flags() -> None:
    flags = {"--input-shape", "--input-dtype", "--dim", "--batch"}
    for name, command in COMMANDS.items():
        if name == "scan":  # takes a folder, analysed at default shapes: no model source
            continue
        opts = {o for p in command.params for o in p.opts}
        assert flags <= opts, (name, flags - opts)


def test_input_dtype_contradicting_the_graph_is_refused() -> None:
    line = _one_line_refusal(["compare", MODEL, MODEL, "--input-dtype", "x=INT64"])
    assert line == (
        f"modelsize: {MODEL}: input x is declared FLOAT; --input-dtype INT64 cannot change an "
        "ONNX graph's input type"
    )
    line = _one_line_refusal(["measure", MODEL, "--input-dtype", "y=FLOAT"])
    assert "--input-dtype names y, not an input of the model (inputs: x)" in line


def test_interrupt_during_start_up_is_one_line_exit_130() -> None:
    """Ctrl-C while the entry point imports the commands: no KeyboardInterrupt traceback."""
    probe = (
        "import builtins, os, signal, sys\n"
        "real_import = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'typer':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "sys.argv = ['modelsize', 'inspect', sys.argv[1]]\n"
        "from cli.__main__ import main\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", probe, MODEL],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 130, run.stderr
    assert run.stdout == ""
    assert run.stderr == "modelsize: interrupted\n"


def test_the_entry_point_runs_commands_and_restores_sigint(tmp_path: Path) -> None:
    probe = (
        "import signal, sys\n"
        "sys.argv = ['modelsize', 'inspect', sys.argv[1], '-f', 'csv', '--top', '1']\n"
        "from cli.__main__ import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "    raise\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", probe, MODEL], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("breakdown,key,parameters")
    assert signal.SIGINT  # the probe asserted the handler inside the child


# --- Huge shapes: sized before anything is allocated --------------------------------------------


def _dynamic_matmul(tmp_path: Path) -> Path:
    weights = np.zeros((64, 8), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    path = tmp_path / "dyn.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    "command", [["measure"], ["compare", "SECOND"], ["quantize", "-o", "OUT", "--compare"]]
)
def test_inputs_larger_than_the_machine_are_refused_with_the_figure(
    tmp_path: Path, command: list[str]
) -> None:
    path = _dynamic_matmul(tmp_path)
    args = [
        a.replace("SECOND", str(path)).replace("OUT", str(tmp_path / "q.onnx")) for a in command
    ]
    line = _one_line_refusal([args[0], str(path), *args[1:], "--input-shape", "x=99999999999,64"])
    # 99,999,999,999 x 64 FLOAT = 25,599,999,999,744 bytes: the real size, not float64's double.
    assert line.startswith(f"modelsize: {path}: the generated inputs alone need 23.3 TiB")
    assert "(25,599,999,999,744 bytes: x: FLOAT[99999999999,64])" in line
    assert "available (" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.onnx"]


def test_check_inputs_fit_against_a_given_figure() -> None:
    specs = [InputSpec("ids", DataType.INT64, (4, 128)), InputSpec("x", DataType.FLOAT16, (10,))]
    assert feeds_nbytes(specs) == 4 * 128 * 8 + 10 * 2
    check_inputs_fit("m.onnx", specs, available=4116)
    with pytest.raises(ShapeBindingError, match=r"need 4\.0 KiB \(4,116 bytes.*has 4\.0 KiB"):
        check_inputs_fit("m.onnx", specs, available=4115)


@pytest.mark.parametrize(
    "elem_type", [DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.INT64, DataType.INT8]
)
def test_feeds_are_made_in_their_own_type(elem_type: DataType) -> None:
    """Peak allocation while generating is about the feed's own size (no float64 copy first)."""
    spec = InputSpec("x", elem_type, (1 << 21,))
    tracemalloc.start()
    try:
        feeds = make_feeds([spec])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    value = feeds["x"]
    assert value.nbytes == feeds_nbytes([spec])
    assert peak < value.nbytes + (4 << 20) + 65536  # plus one float32 chunk at most
    again = make_feeds([spec])["x"]
    assert np.array_equal(value, again)  # seeded: the same values every time
    if np.issubdtype(value.dtype, np.floating):
        sample = value.astype(np.float64)
        assert abs(sample.mean()) < 0.01 and abs(sample.std() - 1) < 0.01  # standard normal
    else:
        assert value.min() == 0 and value.max() == 99  # uniform in [0, 100)


@pytest.mark.parametrize("command", ["convert", "inspect", "memory"])
def test_framework_example_inputs_larger_than_the_machine_are_refused(
    tmp_path: Path, command: str
) -> None:
    """Sized from the flags before the framework is imported or the exporter allocates anything."""
    code = tmp_path / "code.py"
    code.write_text("class Model:\n    pass\n")
    args = [command, f"{code}:Model", "--input-shape", "x=99999999999,64"]
    if command == "convert":
        args += ["-o", str(tmp_path / "out.onnx")]
    line = _one_line_refusal([*args, "--input-dtype", "x=INT64"])
    assert line.startswith(f"modelsize: {code}:Model: the generated inputs alone need 46.6 TiB")
    assert "(51,199,999,999,488 bytes: x: INT64[99999999999,64])" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.py"]


def test_an_ignored_sigint_stays_ignored() -> None:
    """A background job of a non-interactive shell ignores SIGINT: the entry point keeps that."""
    probe = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "sys.argv = ['modelsize', 'inspect', sys.argv[1], '-f', 'csv', '--top', '1']\n"
        "from cli.__main__ import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "    print('kept')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", probe, MODEL], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("kept\n")


@pytest.mark.parametrize("command", ["convert", "inspect", "memory", "quantize"])
def test_named_dims_are_refused_for_framework_sources(tmp_path: Path, command: str) -> None:
    """--dim binds a symbolic dim of a graph; before the export there is none: never ignored."""
    code = tmp_path / "code.py"
    code.write_text("class Model:\n    pass\n")
    args = [command, f"{code}:Model", "--dim", "seq=128"]
    if command in ("convert", "quantize"):
        args += ["-o", str(tmp_path / "out.onnx")]
    line = _one_line_refusal(args)
    assert line == (
        f"modelsize: {code}:Model: --dim seq: a framework source has no named dims before its "
        "export; give the example input with --input-shape (and --batch)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.py"]
