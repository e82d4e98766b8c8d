"""Memory estimates: exact activation bytes on hand-built graphs, liveness invariants, training."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from graph_analysis.bindings import parse_bindings
from graph_analysis.memory import (
    Loss,
    Optimizer,
    OrtCpuModel,
    StepPhase,
    TrainingPrecision,
    estimate_memory,
    memory_to_dict,
)

F32 = TensorProto.FLOAT


def _make(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _vi(name: str, dims: list[object] | None, elem_type: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, dims)


def test_chain_peak_is_input_plus_two_live_tensors() -> None:
    # X(400 B) -> A -> B -> Y: at node 1, X (held by the caller), A and B are live.
    nodes = [
        helper.make_node("Relu", ["X"], ["A"]),
        helper.make_node("Tanh", ["A"], ["B"]),
        helper.make_node("Sigmoid", ["B"], ["Y"]),
    ]
    est = estimate_memory(_make(nodes, [_vi("X", [10, 10])], [_vi("Y", None)]))
    inf = est.inference
    assert inf.activations_peak_bytes == 3 * 400
    assert inf.activations_sum_bytes == 4 * 400
    assert inf.largest_activation_bytes == 400
    assert inf.inputs_bytes == 400


def test_fan_out_keeps_branches_alive_and_reports_peak_node() -> None:
    nodes = [helper.make_node("Relu", ["X"], [f"B{k}"], name=f"branch{k}") for k in range(3)]
    nodes.append(helper.make_node("Sum", ["B0", "B1", "B2"], ["Y"], name="sum"))
    inf = estimate_memory(_make(nodes, [_vi("X", [2, 50])], [_vi("Y", None)])).inference
    assert inf.activations_peak_bytes == 5 * 400  # X, B0..B2 and Y while Sum runs
    assert inf.peak_nodes == ("sum (Sum)",)
    assert {t.name for t in inf.peak_tensors} == {"X", "B0", "B1", "B2", "Y"}


def test_reshape_is_a_view_and_outputs_live_to_the_end() -> None:
    shape = numpy_helper.from_array(np.array([100], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Relu", ["X"], ["A"]),
        helper.make_node("Reshape", ["A", "shape"], ["R"]),  # shares A's buffer
        helper.make_node("Tanh", ["R"], ["Y1"]),
        helper.make_node("Sigmoid", ["X"], ["Y2"]),
    ]
    model = _make(nodes, [_vi("X", [10, 10])], [_vi("Y1", None), _vi("Y2", None)], [shape])
    inf = estimate_memory(model).inference
    # Node 3: X, Y1 (output, to the end) and Y2; A/R died after Tanh. Node 2: X, A(=R), Y1.
    assert inf.activations_peak_bytes == 3 * 400
    assert inf.weights_bytes == 8


def test_dtype_widths_count_in_activation_bytes() -> None:
    nodes = [
        helper.make_node("Cast", ["X"], ["H"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["H"], ["Y"], to=TensorProto.INT64),
    ]
    inf = estimate_memory(
        _make(nodes, [_vi("X", ["n", 8])], [_vi("Y", None)]), parse_bindings(batch=4)
    ).inference
    # X 4*8*4 = 128, H 4*8*2 = 64, Y 4*8*8 = 256; at node 1: X, H, Y.
    assert inf.activations_peak_bytes == 128 + 64 + 256


def test_subgraph_peak_is_added_while_its_node_runs() -> None:
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4, 25] X, bool c) => (float[4, 25] Y) {
          Y = If(c) <
            then_branch = t () => (float[4, 25] a) { t1 = Relu(X)  t2 = Tanh(t1)  a = Sigmoid(t2) },
            else_branch = e () => (float[4, 25] b) { b = Relu(X) }
          >
        }
        """
    )
    inf = estimate_memory(model, parse_bindings(["c="])).inference
    # Main graph at If: X (400), c (1), Y (400); then-branch peak: two of t1, t2, a (t1 dies
    # after Tanh). The branch output is counted apart from Y: onnxruntime copies it out.
    assert inf.activations_peak_bytes == 400 + 1 + 400 + 2 * 400
    assert any("then_branch" in n for n in inf.peak_nodes)


def test_runtime_model_formula() -> None:
    w = numpy_helper.from_array(np.zeros((64, 64), dtype=np.float32), "W")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"])]
    model = _make(nodes, [_vi("X", [1, 64])], [_vi("Y", None)], [w])
    runtime = OrtCpuModel(
        session_fixed_bytes=1000,
        run_fixed_bytes=100,
        load_factor=2.0,
        resident_factor=1.0,
        prepack_factor=1.0,
        heap_tensor_max_bytes=1024,  # the weight is over glibc's threshold: pre-packed copy
        arena_factor=1.0,
        heap_kept_factor=0.0,  # the heap and fragmentation terms: tests/test_memory_inference.py
        arena_fragmentation_factor=0.0,
        arena_simulation=False,  # the replayed arena: tests/test_arena.py
        session_node_bytes=10,
        session_initializer_bytes=7,
    )
    inf = estimate_memory(model, runtime=runtime).inference
    weights, acts = 64 * 64 * 4, 2 * 64 * 4
    assert inf.prepackable_bytes == weights
    assert inf.graph_state_bytes == 10 * 1 + 7 * 1  # one node, one initializer
    assert inf.peak_bytes == 1000 + 17 + max(2 * weights, weights + weights + acts + 100)
    assert inf.runtime_overhead_bytes == inf.peak_bytes - weights - acts


# --- hypothesis: liveness invariants on random DAGs -------------------------------------------

_UNARY = ["Relu", "Tanh", "Sigmoid", "Neg", "Abs"]


@st.composite
def random_dags(draw: st.DrawFn) -> onnx.ModelProto:
    num_nodes = draw(st.integers(1, 12))
    widths = draw(st.lists(st.integers(1, 6), min_size=num_nodes, max_size=num_nodes))
    names = ["X"]
    nodes = []
    for k in range(num_nodes):
        if draw(st.booleans()) and len(names) >= 2:
            a, b = draw(st.permutations(names))[:2]
            # Broadcasting Add of two rank-2 tensors with a widened last dim via Concat.
            nodes.append(helper.make_node("Concat", [a, b], [f"T{k}"], axis=1))
        else:
            src = draw(st.sampled_from(names))
            nodes.append(helper.make_node(draw(st.sampled_from(_UNARY)), [src], [f"T{k}"]))
            if widths[k] > 3:
                nodes[-1] = helper.make_node("Tile", [src, "reps"], [f"T{k}"])
        names.append(f"T{k}")
    outputs = draw(st.lists(st.sampled_from(names[1:]), min_size=1, max_size=3, unique=True))
    reps = numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "reps")
    return _make(nodes, [_vi("X", [2, 3])], [_vi(o, None) for o in outputs], [reps])


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_peak_between_largest_tensor_and_sum(model: onnx.ModelProto) -> None:
    inf = estimate_memory(model).inference
    assert inf.largest_activation_bytes <= inf.activations_peak_bytes <= inf.activations_sum_bytes
    assert all(t.nbytes <= inf.activations_peak_bytes for t in inf.peak_tensors)


@settings(max_examples=40, deadline=None)
@given(random_dags(), st.integers(1, 10_000))
def test_unused_initializer_changes_no_activation_figure(model: onnx.ModelProto, size: int) -> None:
    before = estimate_memory(model).inference
    extra = onnx.ModelProto()
    extra.CopyFrom(model)
    extra.graph.initializer.append(
        numpy_helper.from_array(np.zeros(size, dtype=np.float32), "unused")
    )
    after = estimate_memory(extra).inference
    assert after.activations_peak_bytes == before.activations_peak_bytes
    assert after.activations_sum_bytes == before.activations_sum_bytes
    assert after.weights_bytes == before.weights_bytes + 4 * size


# --- training --------------------------------------------------------------------------------


def _mlp() -> onnx.ModelProto:
    """X[8,16] -> MatMul W1[16,32] + b1 -> Relu -> MatMul W2[32,4]; plus a BatchNorm with stats."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 32), dtype=np.float32), "W1"),
        numpy_helper.from_array(np.zeros(32, dtype=np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((32, 4), dtype=np.float32), "W2"),
        numpy_helper.from_array(np.ones(4, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.zeros(4, dtype=np.float32), "bias"),
        numpy_helper.from_array(np.zeros(4, dtype=np.float32), "mean"),
        numpy_helper.from_array(np.ones(4, dtype=np.float32), "var"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["H"]),
        helper.make_node("Add", ["H", "b1"], ["Hb"]),
        helper.make_node("Relu", ["Hb"], ["R"]),
        helper.make_node("MatMul", ["R", "W2"], ["O"]),
        helper.make_node("BatchNormalization", ["O", "scale", "bias", "mean", "var"], ["Y"]),
    ]
    return _make(nodes, [_vi("X", [8, 16])], [_vi("Y", None)], inits)


TRAINABLE = 16 * 32 + 32 + 32 * 4 + 4 + 4  # running mean/var excluded


@pytest.mark.parametrize(
    ("optimizer", "precision", "weights", "grads", "state", "master"),
    [
        (Optimizer.SGD, TrainingPrecision.FP32, 4 * TRAINABLE + 32, 4 * TRAINABLE, 0, 0),
        (
            Optimizer.MOMENTUM,
            TrainingPrecision.FP32,
            4 * TRAINABLE + 32,
            4 * TRAINABLE,
            4 * TRAINABLE,
            0,
        ),
        (
            Optimizer.ADAM,
            TrainingPrecision.FP32,
            4 * TRAINABLE + 32,
            4 * TRAINABLE,
            8 * TRAINABLE,
            0,
        ),
        (
            Optimizer.ADAMW,
            TrainingPrecision.BF16,
            2 * TRAINABLE + 32,
            2 * TRAINABLE,
            4 * TRAINABLE,
            0,
        ),
        (
            Optimizer.ADAM,
            TrainingPrecision.MIXED,
            2 * TRAINABLE + 32,
            2 * TRAINABLE,
            8 * TRAINABLE,
            4 * TRAINABLE,
        ),
    ],
)
def test_training_lines(
    optimizer: Optimizer,
    precision: TrainingPrecision,
    weights: int,
    grads: int,
    state: int,
    master: int,
) -> None:
    tr = estimate_memory(_mlp(), train=True, optimizer=optimizer, precision=precision).training
    assert tr is not None
    assert tr.trainable_parameters == TRAINABLE
    assert tr.item("weights") == weights
    assert tr.item("gradients") == grads
    assert tr.item("optimizer_state") == state
    assert tr.item("master_weights") == master
    for phase in StepPhase:
        assert tr.phase_bytes[phase] == sum(i.nbytes for i in tr.items if phase in i.phases)
    assert tr.first_step_peak_bytes == max(
        tr.phase_bytes[StepPhase.FIRST_BACKWARD], tr.phase_bytes[StepPhase.OPTIMIZER_STEP]
    )
    assert tr.peak_bytes == max(
        tr.phase_bytes[StepPhase.BACKWARD], tr.phase_bytes[StepPhase.OPTIMIZER_STEP]
    )
    # The optimizer state is held in every later backward, never in the first one.
    assert tr.phase_bytes[StepPhase.BACKWARD] - tr.phase_bytes[StepPhase.FIRST_BACKWARD] == state


def test_saved_activations_and_checkpointing() -> None:
    full = estimate_memory(_mlp(), train=True).training
    half = estimate_memory(_mlp(), train=True, checkpointing=0.5).training
    assert full is not None and half is not None
    # Saved: X (MatMul input), R (Relu output and MatMul input, once), O (BatchNorm input).
    expected = 4 * (8 * 16 + 8 * 32 + 8 * 4)
    assert full.saved_activations_bytes == expected
    assert half.saved_activations_bytes == expected // 2
    with pytest.raises(ValueError, match="checkpointing"):
        estimate_memory(_mlp(), train=True, checkpointing=0.0)


def _classifier(tail: str | None = None) -> onnx.ModelProto:
    """X[64, 8] -> MatMul W[8, 1000] -> Y[64, 1000] (optionally through a ``tail`` op)."""
    w = numpy_helper.from_array(np.ones((8, 1000), dtype=np.float32), "W")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y" if tail is None else "H"])]
    if tail is not None:
        nodes.append(helper.make_node(tail, ["H"], ["Y"]))
    return _make(nodes, [_vi("X", [64, 8])], [_vi("Y", None)], [w])


@pytest.mark.parametrize(
    ("loss", "factor", "expected"),
    [
        (Loss.AUTO, None, 3 * 256000),  # [batch, classes] logits of a MatMul: cross-entropy
        (Loss.CROSS_ENTROPY, None, 3 * 256000),
        (Loss.MSE, None, 2 * 256000),
        (Loss.MSE, 1.5, 384000),  # a custom factor overrides the loss's own
        (Loss.SUM, None, 0),  # 2048 + 2 x 256000 at the loss < MatMul's backward: 548096
    ],
)
def test_loss_term(loss: Loss, factor: float | None, expected: int) -> None:
    # Before MatMul's backward: saved X (2048 B), the held output Y (256000 B) and the loss's
    # buffers, no parameter gradient yet. At MatMul's backward: X, X again and Y's gradient
    # (live in forward there), the held output and W's gradient (32000 B): 548096 B.
    tr = estimate_memory(
        _classifier(), train=True, loss=loss, loss_output_factor=factor, training_framework_bytes=0
    ).training
    assert tr is not None
    assert tr.loss is (Loss.CROSS_ENTROPY if loss is Loss.AUTO else loss)
    assert tr.item("loss") == expected
    assert tr.item("saved_activations") == 2048
    at_node = 2048 + 2 * 256000
    assert tr.item("activation_gradients") == (256000 if expected else at_node)
    assert tr.item("gradients_so_far") == (0 if expected else 32000)


def test_auto_loss_follows_the_output() -> None:
    regression = estimate_memory(_classifier("Relu"), train=True).training
    assert regression is not None and regression.loss is Loss.MSE
    # An LM head: logits whose last dim is the row count of a gathered embedding table.
    table = numpy_helper.from_array(np.ones((50, 8), dtype=np.float32), "E")
    head = numpy_helper.from_array(np.ones((8, 50), dtype=np.float32), "H")
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "H"], ["logits"]),
    ]
    ids = _vi("ids", [2, 5], TensorProto.INT64)
    lm = estimate_memory(_make(nodes, [ids], [_vi("logits", None)], [table, head]), train=True)
    assert lm.training is not None and lm.training.loss is Loss.CROSS_ENTROPY
    assert "vocabulary" in lm.training.loss_reason


def test_backward_walk_frees_saved_tensors_in_reverse() -> None:
    # X[1,256] -> MatMul W1 -> H -> Relu -> R -> MatMul W2[256,4] -> Y[1,4]; 1 KiB tensors.
    # Saved: X (first saver node 0), R (Relu, node 1). At Relu's backward both are held, with the
    # gradients of H and R (forward live set at step 1) and the held output Y: 2048 + 2048 + 16.
    inits = [
        numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), "W1"),
        numpy_helper.from_array(np.ones((256, 4), dtype=np.float32), "W2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["H"]),
        helper.make_node("Relu", ["H"], ["R"]),
        helper.make_node("MatMul", ["R", "W2"], ["Y"]),
    ]
    model = _make(nodes, [_vi("X", [1, 256])], [_vi("Y", None)], inits)
    tr = estimate_memory(model, train=True, loss=Loss.SUM, training_framework_bytes=0).training
    assert tr is not None
    assert tr.saved_activations_bytes == 2048
    # Node by node (reverse): MatMul2: X, R saved + R, Y grads + held Y + W2's gradient = 7200;
    # Relu: 2048 + 2064 + 4096 = 8208; MatMul1: X saved + X, H + held Y + both gradients.
    w1, w2 = 256 * 256 * 4, 256 * 4 * 4
    assert tr.item("saved_activations") == 1024
    assert tr.item("activation_gradients") == 2048 + 16
    assert tr.item("gradients_so_far") == w1 + w2
    assert tr.item("loss") == 0 and tr.item("backward_buffers") == 0
    backward = 1024 + 2064 + w1 + w2
    weights = w1 + w2
    assert tr.phase_bytes[StepPhase.FIRST_BACKWARD] == weights + backward
    assert tr.phase_bytes[StepPhase.BACKWARD] == weights + 2 * weights + backward
    # Adam's update: weights, gradients, two state buffers and 3 x the largest tensor.
    assert tr.phase_bytes[StepPhase.OPTIMIZER_STEP] == 4 * weights + 3 * w1
    assert tr.first_step_peak_bytes == tr.peak_bytes == tr.phase_bytes[StepPhase.OPTIMIZER_STEP]
    assert tr.steady_peak_phase is StepPhase.OPTIMIZER_STEP


@pytest.mark.parametrize(("kernel", "buffers"), [(3, 2048), (1, 0)])
def test_convolution_buffers(kernel: int, buffers: int) -> None:
    # X[1,4,8,8] -> Conv(4 -> 4, kernel k, same padding) -> Y: 1 KiB each. oneDNN's backward of a
    # kernel above 1x1 holds the conv's input + output again.
    w = numpy_helper.from_array(np.ones((4, 4, kernel, kernel), dtype=np.float32), "W")
    pad = kernel // 2
    node = helper.make_node("Conv", ["X", "W"], ["Y"], pads=[pad] * 4)
    model = _make([node], [_vi("X", [1, 4, 8, 8])], [_vi("Y", None)], [w])
    tr = estimate_memory(model, train=True, loss=Loss.SUM, training_framework_bytes=0).training
    assert tr is not None
    assert tr.item("backward_buffers") == buffers
    # oneDNN's persistent scratchpad after a stride-1 conv above 1x1: 16 x a tiny output.
    assert tr.item("convolution_scratchpad") == (16 * 1024 if kernel > 1 else 0)
    zero = estimate_memory(
        model, train=True, loss=Loss.SUM, training_framework_bytes=0, conv_backward_factor=0.0
    ).training
    assert zero is not None and zero.item("backward_buffers") == 0


def test_json_keys() -> None:
    data = memory_to_dict(estimate_memory(_mlp(), train=True))
    text = json.dumps(data)
    inference = data["inference"]
    assert isinstance(inference, dict)
    for key in ("weights_bytes", "activations_peak_bytes", "runtime_overhead_bytes", "peak_bytes"):
        assert isinstance(inference[key], int)
    training = data["training"]
    assert isinstance(training, dict) and isinstance(training["peak_bytes"], int)
    assert "formulas" in training and '"gradients_bytes"' in text


@pytest.mark.torch
def test_trainable_parameters_match_torch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(
        torch.nn.Linear(12, 24), torch.nn.ReLU(), torch.nn.Linear(24, 3)
    ).eval()
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 12),),
        str(path),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
    )
    tr = estimate_memory(path, parse_bindings(batch=2), train=True).training
    assert tr is not None
    assert tr.trainable_parameters == sum(p.numel() for p in model.parameters())


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def mlp_file(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(path))
    return path


def test_cli_memory_json_matches_library(mlp_file) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cli.app import app

    args = ["memory", str(mlp_file), "--static", "--train", "--optimizer", "sgd"]
    args += ["--precision", "mixed"]  # --static: the library call reads the exported graph too
    result = CliRunner().invoke(app, [*args, "--checkpointing", "0.5", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    library = memory_to_dict(
        estimate_memory(
            mlp_file,
            train=True,
            optimizer=Optimizer.SGD,
            precision=TrainingPrecision.MIXED,
            checkpointing=0.5,
        )
    )
    assert data["inference"] == library["inference"]
    assert data["training"]["peak_bytes"] == library["training"]["peak_bytes"]  # type: ignore[index]
    assert data["training"]["master_weights_bytes"] == 4 * TRAINABLE
    assert data["training"]["optimizer"] == "sgd" and data["training"]["checkpointing"] == 0.5


def test_cli_memory_table_labels_estimates(mlp_file) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cli.app import app

    result = CliRunner().invoke(app, ["memory", str(mlp_file), "--train"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    for text in ("weights", "counted", "peak (process growth)", "estimated", "optimizer state"):
        assert text in result.stdout
    result = CliRunner().invoke(app, ["memory", str(mlp_file), "--optimizer", "lion"])
    assert result.exit_code == 2


def test_memory_command_imports_no_framework(mlp_file) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from cli.app import app; "
        f"r = CliRunner().invoke(app, ['memory', {str(mlp_file)!r}, '--train']); "
        "assert r.exit_code == 0, r.stderr; "
        "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_half_weights_and_activations_are_upcast_on_cpu() -> None:
    w = numpy_helper.from_array(np.zeros((32, 32), dtype=np.float16), "W")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"])]
    model = _make(
        nodes, [_vi("X", [4, 32], TensorProto.FLOAT16)], [_vi("Y", None, TensorProto.FLOAT16)], [w]
    )
    runtime = OrtCpuModel(
        session_fixed_bytes=0,
        run_fixed_bytes=0,
        prepack_factor=1.0,
        heap_tensor_max_bytes=1024,  # the weight is over glibc's threshold: pre-packed copy
        heap_kept_factor=0.0,
        arena_fragmentation_factor=0.0,
        arena_simulation=False,
        session_node_bytes=0,
        session_initializer_bytes=0,
    )
    inf = estimate_memory(model, runtime=runtime).inference
    weights, acts = 32 * 32 * 2, 2 * 4 * 32 * 2
    assert inf.weights_bytes == weights
    assert inf.activations_peak_bytes == acts  # the graph's own figure stays 16-bit
    assert inf.half_upcast_bytes == 2 * weights
    # float copy of the weight, pre-packed copy, activations computed in float
    assert inf.peak_bytes == weights + 2 * weights + weights + 2 * acts


def test_prepacked_weight_slot_follows_the_op() -> None:
    inits = [
        numpy_helper.from_array(np.zeros((16, 16), dtype=np.int8), "Wq"),
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "z"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "yz"),
    ]
    nodes = [
        helper.make_node("QLinearMatMul", ["X", "s", "yz", "Wq", "s", "z", "s", "yz"], ["Y"]),
    ]
    model = _make(nodes, [_vi("X", [2, 16], TensorProto.UINT8)], [_vi("Y", None)], inits)
    assert estimate_memory(model).inference.prepackable_bytes == 16 * 16


def test_saved_activations_follow_derivative_formulas() -> None:
    # Y = MatMul(Relu(X) * 0.5, Transpose(W)): the scaling by a constant keeps nothing, the
    # transposed weight is a view of a parameter; saved are Relu's output and MatMul's left input.
    inits = [
        numpy_helper.from_array(np.ones((8, 8), dtype=np.float32), "W"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
    ]
    nodes = [
        helper.make_node("Relu", ["X"], ["R"]),
        helper.make_node("Mul", ["R", "half"], ["H"]),
        helper.make_node("Transpose", ["W"], ["Wt"]),
        helper.make_node("MatMul", ["H", "Wt"], ["Y"]),
    ]
    model = _make(nodes, [_vi("X", [4, 8])], [_vi("Y", None)], inits)
    tr = estimate_memory(model, train=True).training
    assert tr is not None
    assert tr.item("saved_activations") == 2 * 4 * 8 * 4  # R and H, not X, not Wt
    # The scalar 0.5 is a constant (docs/counting.md), for an in-memory model as for a file.
    assert tr.trainable_parameters == 8 * 8


@pytest.mark.parametrize(
    ("fmt", "golden"),
    [("table", "memory_seed_simple.table.txt"), ("json", "memory_seed_simple.json")],
)
def test_cli_memory_golden(fmt: str, golden: str, update_golden: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from typer.testing import CliRunner

    from cli.app import app

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLUMNS", "120")
    # --static: the exported graph only (onnxruntime's optimized graph, made for every model,
    # depends on its version and the CPU; tests/test_memory_executed.py covers it).
    args = ["memory", "fixtures/seed_simple.onnx", "--batch", "4", "--train", "--static", "-f", fmt]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    path = root / "tests" / "golden" / golden
    if update_golden:
        path.write_text(result.stdout)
    assert path.exists(), f"run pytest --update-golden to create {path}"
    assert result.stdout == path.read_text()
    if fmt == "json":
        training = json.loads(result.stdout)["training"]
        phase = training["peak_phase"]
        held = [k for k, phases in training["held_during"].items() if phase in phases]
        assert sum(training[f"{k}_bytes"] for k in held) == training["peak_bytes"]
        assert training["phases"][phase] == training["peak_bytes"]


def test_external_weights_are_mapped_not_copied(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = numpy_helper.from_array(np.zeros((64, 64), dtype=np.float32), "W")
    v = numpy_helper.from_array(np.zeros((32, 64), dtype=np.float32), "V")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Gather", ["V", "I"], ["G"]),
        helper.make_node("Add", ["H", "G"], ["Y"]),
    ]
    inputs = [_vi("X", [1, 64]), _vi("I", [1], TensorProto.INT64)]
    model = _make(nodes, inputs, [_vi("Y", None)], [w, v])
    runtime = OrtCpuModel(
        session_fixed_bytes=0,
        run_fixed_bytes=0,
        prepack_factor=1.0,
        heap_kept_factor=0.0,
        arena_fragmentation_factor=0.0,
        session_node_bytes=0,
        session_initializer_bytes=0,
    )
    inline_path = tmp_path / "inline.onnx"
    onnx.save(model, str(inline_path))
    external_path = tmp_path / "external.onnx"
    onnx.save(model, str(external_path), save_as_external_data=True, size_threshold=0)
    inline = estimate_memory(inline_path, runtime=runtime).inference
    external = estimate_memory(external_path, runtime=runtime).inference
    weights, packed, acts = (64 * 64 + 32 * 64) * 4, 64 * 64 * 4, inline.activations_peak_bytes
    assert inline.weights_bytes == external.weights_bytes == weights
    # glibc's heap keeps load-time copies of inline weights only: external ones are mapped.
    assert estimate_memory(inline_path).inference.heap_kept_bytes == weights
    assert estimate_memory(external_path).inference.heap_kept_bytes == 0
    # inline: creation 2 x W dominates; external: every weight once, no original beside the copy
    assert inline.peak_bytes == max(2 * weights, weights + packed + acts)
    assert external.peak_bytes == max(packed + packed, weights + acts)


def test_lstm_keeps_its_workspace() -> None:
    # X[4, 2, 8] -> LSTM(hidden 4) -> Y[4, 1, 2, 4] (128 B). Saved: X (256 B), Y, and oneDNN's
    # workspace, 5 x Y; at its backward the LSTM's scratch holds 13 x Y.
    w = numpy_helper.from_array(np.ones((1, 16, 8), dtype=np.float32), "W")
    r = numpy_helper.from_array(np.ones((1, 16, 4), dtype=np.float32), "R")
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4)
    model = _make([node], [_vi("X", [4, 2, 8])], [_vi("Y", None)], [w, r])
    tr = estimate_memory(model, train=True, loss=Loss.SUM, training_framework_bytes=0).training
    assert tr is not None
    assert tr.saved_activations_bytes == 256 + 128 + 5 * 128
    assert tr.item("backward_buffers") == 13 * 128


@pytest.mark.torch
def test_measured_losses_follow_pytorch_conventions() -> None:
    # The training child's losses: cross-entropy over the last dim for rank 2-3 outputs, over dim 1
    # above (PyTorch's [batch, classes, d1, ...]); mse against a target of the output's shape.
    torch = pytest.importorskip("torch")
    from converters._torch_train_child import _loss, _target

    for shape, target_shape in [
        ((4, 10), (4,)),
        ((2, 5, 7), (10,)),
        ((2, 3, 4, 4), (2, 4, 4)),
    ]:
        out = torch.randn(shape, requires_grad=True)
        target = _target(torch, "cross_entropy", out)
        assert tuple(target.shape) == target_shape and target.dtype == torch.int64
        loss = _loss(torch, "cross_entropy", out, target)
        classes = shape[1] if len(shape) > 3 else shape[-1]
        # Zero logits: cross-entropy is log(classes) whatever the target.
        zero = _loss(torch, "cross_entropy", torch.zeros(shape), target)
        assert float(zero) == pytest.approx(np.log(classes), rel=1e-6)
        loss.backward()
        assert out.grad is not None and out.grad.shape == out.shape
    out = torch.ones(3, 2)
    target = _target(torch, "mse", out)
    assert target.shape == out.shape
    assert float(_loss(torch, "mse", out, target)) == pytest.approx(
        float(((out - target) ** 2).mean()), rel=1e-6
    )
    assert float(_loss(torch, "sum", out, None)) == 6.0
