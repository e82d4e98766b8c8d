"""Hostile inputs the loader must refuse cleanly: OS-rejected external locations, special files,
damaged framework records, packed fields cut inside a varint, names that are not UTF-8."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from cli.app import app
from graph_analysis import analyze
from graph_analysis.errors import ExternalDataError, ModelFormatError
from graph_analysis.framework import METADATA_KEY, read_framework_info
from graph_analysis.loading import load_skeleton, read_model

runner = CliRunner()


def _external_model(folder: Path, location: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())  # onnx.save would refuse the odd locations
    return path


def _one_line_refusal(args: list[str], path: Path, fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"modelsize: {path}: ")
    assert fragment in lines[0]


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("w\x00.bin", "contains a NUL byte"),
        ("a" * 300, "File name too long"),
    ],
)
def test_locations_the_os_rejects(tmp_path: Path, location: str, fragment: str) -> None:
    path = _external_model(tmp_path / "m", location)
    with pytest.raises(ExternalDataError, match=fragment):
        read_model(path)
    _one_line_refusal(["inspect", str(path)], path, fragment)


def test_symlink_loop(tmp_path: Path) -> None:
    path = _external_model(tmp_path / "m", "w.bin")
    os.symlink("w.bin", path.parent / "w.bin")
    with pytest.raises(ExternalDataError, match="symbolic link loop"):
        read_model(path)


def _fifo(target: Path) -> None:
    os.mkfifo(target)


def _directory(target: Path) -> None:
    target.mkdir()


def _char_device(target: Path) -> None:
    try:
        os.mknod(target, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs privileges")


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_fifo, "a FIFO"), (_directory, "a directory"), (_char_device, "a character device")],
)
@pytest.mark.parametrize("command", ["inspect", "memory", "measure", "quantize"])
def test_special_files_are_not_regular_files(
    tmp_path: Path, make: object, kind: str, command: str
) -> None:
    path = _external_model(tmp_path / "m", "w.bin")
    make(path.parent / "w.bin")  # type: ignore[operator]
    args = [command, str(path)]
    if command == "quantize":
        args += ["-o", str(tmp_path / "q.onnx")]
    _one_line_refusal(args, path, f"external data file 'w.bin' is {kind}, not a regular file")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("command", ["measure", "quantize"])
def test_missing_external_data_is_bad_input_where_weights_are_needed(
    tmp_path: Path, command: str
) -> None:
    path = _external_model(tmp_path / "m", "gone.bin")
    args = [command, str(path)] + (
        ["-o", str(tmp_path / "q.onnx")] if command == "quantize" else []
    )
    _one_line_refusal(args, path, "external data file 'gone.bin' is missing")


def test_the_model_itself_may_not_be_a_fifo(tmp_path: Path) -> None:
    path = tmp_path / "pipe.onnx"
    os.mkfifo(path)
    with pytest.raises(ModelFormatError, match="is a FIFO, not a regular file"):
        read_model(path)
    for command in ("inspect", "memory"):
        _one_line_refusal([command, str(path)], path, "is a FIFO, not a regular file")


def test_external_tensor_in_training_info_is_validated_by_the_skeleton(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"S" * 16)
    path = _external_model(tmp_path / "m", "w.bin")
    (path.parent / "w.bin").write_bytes(b"\0" * 64)
    model = onnx.load(str(path), load_external_data=False)
    tensor = TensorProto(name="s", data_type=TensorProto.UINT8, dims=[16])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    model.training_info.add().initialization.CopyFrom(helper.make_graph([], "i", [], [], [tensor]))
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ExternalDataError, match="leaves the model folder"):
        load_skeleton(path)


# -- the framework record ------------------------------------------------------------------------

_GOOD = {
    "schema": 1,
    "framework": {"name": "torch", "version": "2"},
    "exporter": "x",
    "fallback_reason": None,
    "totals": {"total": 16, "trainable": 16, "non_trainable": 0, "buffers": 0},
    "tensors": [{"name": "w", "kind": "parameter", "trainable": True, "elements": 16}],
    "initializers": {"w": {"framework_name": "w", "kind": "parameter", "trainable": False}},
}


def _with_record(tmp_path: Path, text: str) -> Path:
    path = _external_model(tmp_path / "m", "w.bin")
    (path.parent / "w.bin").write_bytes(b"\0" * 64)
    model = onnx.load(str(path), load_external_data=False)
    helper.set_model_props(model, {METADATA_KEY: text})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"schema": 1, "totals": {"total": Infinity}}', "Infinity is not a number"),
        (json.dumps(_GOOD).replace('"total": 16', '"total": 1e400'), "totals.total is not a"),
        (json.dumps(_GOOD).replace('"elements": 16', '"elements": 2.5'), "elements is not a"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps({**_GOOD, "tensors": {"a": 1}}), "tensors is not a list"),
        (json.dumps({**_GOOD, "schema": 7}), "schema 7"),
        (json.dumps(_GOOD).replace('"trainable": false', '"trainable": "no"'), "not true or false"),
    ],
)
def test_damaged_record_is_ignored_with_one_warning(tmp_path: Path, text: str, why: str) -> None:
    path = _with_record(tmp_path, text)
    assert read_framework_info({METADATA_KEY: text}) is None
    report = analyze(path)
    assert report.parameters.total == 16
    record_warnings = [w for w in report.warnings if METADATA_KEY in w]
    assert len(record_warnings) == 1
    assert why in record_warnings[0]
    assert all(r.trainable is None for r in report.tensors)


def test_good_record_gives_no_warning(tmp_path: Path) -> None:
    report = analyze(_with_record(tmp_path, json.dumps(_GOOD)))
    assert not [w for w in report.warnings if METADATA_KEY in w]
    assert report.tensors[0].trainable is False


# -- wire-level damage ---------------------------------------------------------------------------


def test_packed_varints_cut_inside_a_varint(tmp_path: Path) -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.INT64, dims=[3], int64_data=[1, 300, 5])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        [tensor],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    packed = bytes([0x3A, 4, 1, 0xAC, 2, 5])
    path = tmp_path / "cut.onnx"
    path.write_bytes(data.replace(packed, packed[:-1] + b"\x85"))
    for read in (read_model, load_skeleton, analyze):
        with pytest.raises(ModelFormatError, match="ends inside a varint"):
            read(path)


@pytest.mark.parametrize(
    ("field", "what", "fragment"),
    [
        ("NAME", "node name", "node name"),
        ("INPX", "graph input", "node input name"),
        ("DOMN", "node domain", "node domain"),
    ],
)
def test_names_that_are_not_utf8_are_refused_everywhere(
    tmp_path: Path, field: str, what: str, fragment: str
) -> None:
    node = helper.make_node("Relu", ["INPX"], ["y"], name="NAME", domain="DOMN")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("INPX", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("DOMN", 1)]
    )
    bad = field[:1].encode() + b"\xff" + field[2:].encode()
    path = tmp_path / "names.onnx"
    path.write_bytes(model.SerializeToString().replace(field.encode(), bad))
    for read in (read_model, load_skeleton):
        with pytest.raises(ModelFormatError, match="is not valid UTF-8"):
            read(path)
    for command in ("inspect", "memory"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2, (what, result.stdout, result.stderr)
        assert "is not valid UTF-8" in result.stderr


def test_doc_strings_that_are_not_utf8_are_ignored(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], doc_string="DOCS")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "docs.onnx"
    path.write_bytes(model.SerializeToString().replace(b"DOCS", b"D\xffCS"))
    assert read_model(path).graph.nodes[0].op_type == "Relu"
    assert load_skeleton(path).graph.node[0].op_type == "Relu"
