"""Measured inference memory in a child onnxruntime process, checked against the estimate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import MeasurementError, ShapeBindingError
from graph_analysis.memory import estimate_memory
from graph_analysis.runtime.measure import compare_memory, measure_inference, model_input_specs

MiB = 1 << 20

#: Stated tolerance of the inference estimate against onnxruntime's measured peak growth.
TOLERANCE = 0.25


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1024x1024 MatMuls (8 MiB of weights), batch dim symbolic: 1 MiB per activation at 256."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1024, 1024), dtype=np.float32), f"W{k}")
        for k in (1, 2)
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["H"]),
        helper.make_node("Relu", ["H"], ["R"]),
        helper.make_node("MatMul", ["R", "W2"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 1024])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1024])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, tmp_path_factory.mktemp("m") / "mlp.onnx")


@pytest.fixture(scope="module")
def embedding_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """int64 token ids into a Gather over a 4096 x 256 table, then a mean: needs integer inputs."""
    table = numpy_helper.from_array(np.zeros((4096, 256), dtype=np.float32), "table")
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["E"]),
        helper.make_node("ReduceMean", ["E"], ["Y"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "emb",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, tmp_path_factory.mktemp("e") / "emb.onnx")


def test_estimate_within_tolerance_of_measured_peak(mlp_path: Path) -> None:
    bindings = parse_bindings(batch=256)
    measured = measure_inference(mlp_path, bindings, runs=3, repeats=2)
    estimate = estimate_memory(mlp_path, bindings).inference
    assert measured.peak_is_exact
    # Sanity: the session holds at least the weights; the peak at least weights + activations.
    assert measured.session_bytes >= 8 * MiB
    assert measured.peak_bytes >= estimate.weights_bytes + estimate.activations_peak_bytes
    assert measured.peak_bytes < 200 * MiB
    assert abs(estimate.peak_bytes / measured.peak_bytes - 1) <= TOLERANCE
    assert measured.output_bytes == 256 * 1024 * 4
    assert 0 < measured.latency_median_s <= measured.latency_p90_s
    # Two children (different heap layouts), three timed runs each; the peak is their median.
    assert measured.repeats == 2 and measured.runs == 3
    assert measured.peak_min_bytes <= measured.peak_bytes <= measured.peak_max_bytes
    if sys.platform == "linux":  # the file-backed part of the session: onnxruntime's code
        assert measured.session_file_bytes is not None
        assert 0 < measured.session_file_bytes < measured.session_bytes


def test_arena_off_and_activation_growth(mlp_path: Path) -> None:
    small = measure_inference(mlp_path, parse_bindings(batch=1), runs=1, arena=False, repeats=1)
    large = measure_inference(mlp_path, parse_bindings(batch=2048), runs=1, arena=False, repeats=1)
    assert not small.arena
    # 2047 more rows: X, H/R and Y grow by 8 MiB each; at least two of them are live at once.
    assert large.peak_bytes - small.peak_bytes >= 16 * MiB


def test_integer_inputs_are_generated_with_their_dtype(embedding_path: Path) -> None:
    specs = model_input_specs(embedding_path, parse_bindings(dims=["seq=64"], batch=4))
    assert [(s.name, s.elem_type, s.dims) for s in specs] == [("ids", TensorProto.INT64, (4, 64))]
    measured = measure_inference(
        embedding_path, parse_bindings(dims=["seq=64"], batch=4), runs=1, repeats=1
    )
    assert measured.output_bytes == 4 * 256 * 4


def test_failing_child_is_a_measurement_error(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["X"], ["Y"], domain="com.example")],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = _save(model, tmp_path / "bad.onnx")
    with pytest.raises(MeasurementError, match="onnxruntime child failed"):
        measure_inference(path, runs=1, repeats=1)


def test_compare_and_cli_json(mlp_path: Path) -> None:
    comparison = compare_memory(
        mlp_path, parse_bindings(batch=64), runs=1, arenas=(True,), repeats=1
    )
    assert len(comparison.measurements) == 1
    ratio = comparison.ratio(comparison.measurements[0])
    assert abs(ratio - 1) <= TOLERANCE
    result = CliRunner().invoke(
        app,
        ["measure", str(mlp_path), "--batch", "64", "--runs", "1", "--repeats", "1", "-f", "json"],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [m["arena"] for m in data["measured"]] == [True, False]
    assert data["inference"]["peak_bytes"] == comparison.estimate.inference.peak_bytes
    assert all(m["peak_bytes"] > 0 and m["ratio"] > 0 for m in data["measured"])
    assert all(
        m["repeats"] == 1 and m["peak_min_bytes"] == m["peak_bytes"] for m in data["measured"]
    )


_TORCH_SOURCE = """
import torch


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024)
    )
"""


@pytest.mark.torch
@pytest.mark.slow
def test_training_step_estimate_within_30_percent(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from converters.torch_train import measure_training_step
    from graph_analysis.memory import Optimizer
    from graph_analysis.runtime.measure import InputSpec

    source = tmp_path / "arch.py"
    source.write_text(_TORCH_SOURCE)
    namespace: dict[str, object] = {}
    exec(compile(_TORCH_SOURCE, str(source), "exec"), namespace)
    model = namespace["mlp"]().eval()  # type: ignore[operator]
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 1024),),
        str(path),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    inputs = [InputSpec("input", TensorProto.FLOAT, (512, 1024))]
    # A fixed mmap threshold keeps glibc's allocator slack (+-15% run to run) out of the peak.
    measured = measure_training_step(
        f"{source}:mlp", inputs, optimizer=Optimizer.ADAM, malloc_mmap_threshold=128 << 10
    )
    estimate = estimate_memory(
        path, parse_bindings(batch=512), train=True, optimizer=Optimizer.ADAM, pytorch_basis=True
    ).training
    assert estimate is not None
    assert measured.num_parameters == estimate.trainable_parameters
    # Weights + gradients + two Adam buffers are 16 MiB; measured must hold at least those.
    assert measured.peak_bytes >= 4 * measured.param_bytes
    assert abs(estimate.peak_bytes / measured.peak_bytes - 1) <= 0.30


@pytest.mark.torch
@pytest.mark.slow
def test_cli_torch_source_reports_measured_training(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    source = tmp_path / "arch.py"
    source.write_text(_TORCH_SOURCE)
    namespace: dict[str, object] = {}
    exec(compile(_TORCH_SOURCE, str(source), "exec"), namespace)
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(
        namespace["mlp"](),  # type: ignore[operator]
        (torch.randn(2, 1024),),
        str(path),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    args = ["memory", str(path), "--batch", "64", "--train", "--optimizer", "momentum"]
    result = CliRunner().invoke(app, [*args, "--torch-source", f"{source}:mlp", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    measured = data["training_measured"]
    assert measured["num_parameters"] == data["training"]["trainable_parameters"] == 2 * 1025 * 1024
    assert measured["optimizer"] == "momentum"
    # Weights, gradients and the momentum buffer: at least 3 x 8 MiB resident at the peak.
    assert measured["peak_bytes"] >= 3 * measured["param_bytes"]
    # Each estimate is paired with the measurement of the same step.
    assert measured["ratio"] == pytest.approx(
        data["training"]["peak_bytes"] / measured["steady_peak_bytes"], rel=1e-3
    )
    assert measured["first_step_ratio"] == pytest.approx(
        data["training"]["first_step"]["peak_bytes"] / measured["first_step_peak_bytes"], rel=1e-3
    )
    assert measured["loss"] == data["training"]["loss"] == "cross_entropy"  # [64, 1024] of a Gemm
    bad = CliRunner().invoke(app, [*args, "--torch-source", f"{tmp_path}/missing.py:mlp"])
    assert bad.exit_code == 2 and "no such file" in bad.stderr


@pytest.mark.torch
@pytest.mark.slow
def test_measure_on_a_pytorch_code_source_exports_and_trains(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    source = tmp_path / "arch.py"
    source.write_text(_TORCH_SOURCE)
    args = ["measure", f"{source}:mlp", "--input-shape", "32,1024", "--runs", "1", "-f", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["exporter"].startswith("torch.onnx.export")
    assert data["inputs"] == {"input": [32, 1024]}
    assert data["inference"]["weights_bytes"] == 2 * 1025 * 1024 * 4
    assert [m["arena"] for m in data["measured"]] == [True, False]
    assert data["training"]["basis"].startswith("PyTorch")
    assert data["training_measured"]["num_parameters"] == 2 * 1025 * 1024


def test_external_data_model_is_mapped_and_read_at_run(tmp_path: Path) -> None:
    # 16 MiB of external weights read by MatMul (pre-packed) and Add (memory-mapped, read at run).
    # The estimate-vs-measured ratio of this model is a benchmark figure
    # (benchmarks/calibrate_runtime.py, ``ext_matmul_add``); here only bounds that hold under any
    # load: the run makes both weights and the activations resident, and the estimate counts no
    # second copy of external weights at session creation.
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1024, 2048), dtype=np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((1024, 2048), dtype=np.float32), "B"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Add", ["H", "B"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ext",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1024, 1024])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.data")
    measured = measure_inference(path, runs=1, repeats=1)
    estimate = estimate_memory(path).inference
    assert estimate.weights_bytes == 16 * MiB
    # X 4 MiB, H and Y 8 MiB each: the activation peak X + H + Y.
    assert estimate.activations_peak_bytes == 20 * MiB
    # Creation touches only the pre-packed W (its mapping and the packed copy): never 2 x 16 MiB.
    assert estimate.session_creation_bytes < estimate.runtime.session_fixed_bytes + 2 * 16 * MiB
    # W's packed copy, B's pages (read by Add) and the activations are all resident at the peak:
    # X and H at least (onnxruntime may run the Add in place, Y in H's buffer: calibrate_runtime.py).
    assert measured.peak_bytes >= 8 * MiB + 8 * MiB + 12 * MiB


def test_a_model_refusing_the_generated_inputs_is_bad_input(tmp_path: Path) -> None:
    """A Reshape to a fixed [3, 8] runs only at n=3: at the default n=1 onnxruntime refuses the run.
    That is the inputs' fault (exit 2, with the flags that fix it), not an internal error."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])],
        [numpy_helper.from_array(np.array([3, 8], dtype=np.int64), "shape")],
    )
    path = _save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "r.onnx"
    )
    with pytest.raises(ShapeBindingError, match="cannot run the model on the generated inputs"):
        measure_inference(path, runs=1, repeats=1)
    result = CliRunner().invoke(app, ["measure", str(path), "--runs", "1", "--repeats", "1"])
    assert result.exit_code == 2
    assert "--input-shape" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    ok = measure_inference(path, parse_bindings(["x=3,8"]), runs=1, repeats=1)
    assert ok.output_bytes == 3 * 8 * 4


def test_peak_modes_split_only_where_children_differ_by_a_region() -> None:
    from graph_analysis.runtime.measure import peak_modes

    mib = 1 << 20
    # ddddocr's detector: children at 61.0-61.2 or 67.5-67.6 MiB (two modes)
    peaks = [int(x * mib) for x in (67.5, 61.0, 67.6, 61.2, 61.1, 67.5)]
    assert peak_modes(peaks) == (int(61.1 * mib), int(67.5 * mib))
    # layout noise within a mode stays one mode
    assert peak_modes([int(x * mib) for x in (60.7, 61.8, 60.9)]) == (int(60.9 * mib),)
    assert peak_modes([5 * mib]) == (5 * mib,)
