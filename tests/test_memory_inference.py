"""Inference memory: the runtime model's formulas against hand-computed numbers, the unknown-shape
fallback, and that estimating writes nothing outside a private temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from graph_analysis.memory import estimate_memory
from graph_analysis.shapes import infer_shapes

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    model.ir_version = 8
    return model


def _vi(name: str, dims: list[object] | None, elem_type: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, dims)


def _stopping_model(path: Path) -> Path:
    """A model on which onnxruntime's symbolic shape inference stops early.

    It guesses an unknown op's output rank from its first input (2 here), and then cannot transpose
    that with a rank-3 ``perm``: its public ``infer_shapes`` then saves ``sym_shape_infer_temp.onnx``
    and a ``<uuid>.data`` file into the working directory.
    """
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Mystery", ["H"], ["M"], domain="com.example"),
        helper.make_node("Transpose", ["M"], ["Y"], perm=[1, 0, 2]),
    ]
    model = _model(nodes, [_vi("X", ["n", 64])], [_vi("Y", None)], [w])
    onnx.save(model, str(path))
    return path


def test_memory_writes_nothing_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _stopping_model(tmp_path / "stops.onnx")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, ["memory", str(model), "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert "stopped early" in result.stdout  # the engine did stop: the case that used to write
    assert os.listdir(work) == []
    assert sorted(os.listdir(tmp_path)) == ["stops.onnx", "work"]


def test_unknown_output_is_sized_from_activation_inputs_never_a_weight() -> None:
    # An unknown op reading a 64 KiB weight and a 256 B activation: its output is assumed as large
    # as the activation. Sized like the weight, two such outputs made a quantized recognizer 1.37x.
    w = numpy_helper.from_array(np.ones((256, 64), np.int8), "Wq")
    nodes = [
        helper.make_node("Relu", ["X"], ["A"]),
        helper.make_node("Mystery", ["A", "Wq"], ["M"], domain="com.example"),
        helper.make_node("Mystery", ["Wq"], ["F"], domain="com.example"),  # weights only: folded
        helper.make_node("Mystery", ["M", "F"], ["Y"], domain="com.example"),
    ]
    model = _model(nodes, [_vi("X", [1, 64])], [_vi("Y", None)], [w])
    shapes = infer_shapes(model, use_symbolic=False)
    unknown = {u.name: u for u in shapes.unknown}
    assert unknown["M"].assumed_nbytes == 256
    assert "activation input" in unknown["M"].treatment
    assert unknown["F"].assumed_nbytes == 256 * 64
    assert "weights only" in unknown["F"].treatment
    assert unknown["Y"].assumed_nbytes == 256  # F is a weight, M an activation
    inf = estimate_memory(model).inference
    # X (256) held throughout; at the last node X, M and Y live (A died after node 1): 768 bytes.
    assert inf.activations_peak_bytes == 3 * 256
