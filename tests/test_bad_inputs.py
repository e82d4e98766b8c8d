"""Bad inputs: every one is refused with exit 2 and one line naming the file, nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from fixtures import builders
from graph_analysis import analyze
from graph_analysis.errors import CorruptTensorError, ExternalDataError, ModelFormatError

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
    code, out, _err = _run(path)
    assert code == 0
    assert "missing" in out


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
