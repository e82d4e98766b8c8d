"""Counted compute: exact MACs/FLOPs for hand-built graphs of every rule, the seed's models, and an
independent count from the real shapes onnxruntime produces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fixtures.builders import seed_complex, seed_simple, write
from graph_analysis.bindings import parse_bindings
from graph_analysis.compute import compute_to_dict, count_compute, count_compute_model

F = TensorProto.FLOAT


def _init(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _model(nodes, inputs, outputs, inits=(), opset: int = 17, domains=()) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=imports)


def _vi(name: str, shape: list[int | str] | None, dtype: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _count(model: onnx.ModelProto, tmp_path: Path, shapes: str = "") -> object:
    path = write(model, tmp_path / "m.onnx")
    bindings = parse_bindings(input_shapes=[shapes] if shapes else [])
    return count_compute(path, bindings)


def test_seed_complex_layers(tmp_path: Path) -> None:
    # The seed's ComplexModel at 1x3x32x32: conv1 16*32*32 outputs x 3*3*3 = 442,368 MACs;
    # fc1 4096 x 120 = 491,520; fc2 120 x 10 = 1,200 (issue 10's reference points).
    compute = _count(seed_complex(), tmp_path)
    by_layer = {row.path: row for row in compute.layers}
    assert by_layer[("conv1",)].macs == 442_368
    assert by_layer[("fc1",)].macs == 491_520
    assert by_layer[("fc2",)].macs == 1_200
    assert compute.macs == 442_368 + 491_520 + 1_200
    # FLOPs: 2 x MACs, plus bias adds (16*32*32 + 120 + 10), ReLU (16,384), MaxPool (4,096 x 4).
    bias = 16 * 32 * 32 + 120 + 10
    assert compute.flops == 2 * compute.macs + bias + 16_384 + 4_096 * 4
    assert compute.unknown_ops == ()
    assert compute.unresolved == ()
    assert compute.training_flops == 3 * compute.flops


def test_seed_complex_batch_scales_linearly(tmp_path: Path) -> None:
    one = _count(seed_complex(), tmp_path)
    eight = _count(seed_complex(), tmp_path, "x=8,3,32,32")
    assert eight.macs == 8 * one.macs
    assert eight.flops == 8 * one.flops


def test_seed_simple(tmp_path: Path) -> None:
    compute = _count(seed_simple(), tmp_path)
    assert compute.macs == 10 * 20 + 20 * 1


@pytest.mark.parametrize(
    ("strides", "dilations", "pads", "group", "expected_out"),
    [
        ((1, 1), (1, 1), (0, 0, 0, 0), 1, (6, 6)),
        ((2, 2), (1, 1), (1, 1, 1, 1), 1, (4, 4)),
        ((1, 1), (2, 2), (0, 0, 0, 0), 1, (4, 4)),
        ((1, 1), (1, 1), (1, 1, 1, 1), 4, (8, 8)),
    ],
)
def test_conv_strides_dilations_groups(
    tmp_path: Path,
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, ...],
    group: int,
    expected_out: tuple[int, int],
) -> None:
    c_in, c_out, k = 8, 16, 3
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], kernel_shape=[k, k], strides=strides, dilations=dilations,
        pads=pads, group=group,
    )  # fmt: skip
    model = _model(
        [node],
        [_vi("x", [2, c_in, 8, 8])],
        [_vi("y", None)],
        [_init("w", (c_out, c_in // group, k, k))],
    )
    compute = _count(model, tmp_path)
    out_numel = 2 * c_out * math.prod(expected_out)
    assert compute.macs == out_numel * (c_in // group) * k * k
    assert compute.flops == 2 * compute.macs  # no bias


def test_conv_transpose(tmp_path: Path) -> None:
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[2, 2], strides=[2, 2]
    )
    model = _model(
        [node],
        [_vi("x", [1, 4, 5, 5])],
        [_vi("y", None)],
        [_init("w", (4, 3, 2, 2)), _init("b", (3,))],
    )
    compute = _count(model, tmp_path)
    assert compute.macs == (4 * 5 * 5) * 3 * 2 * 2
    assert compute.flops == 2 * compute.macs + 3 * 10 * 10


def test_broadcast_batched_matmul(tmp_path: Path) -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = _model([node], [_vi("a", [2, 3, 5, 7]), _vi("b", [7, 11])], [_vi("y", None)])
    assert _count(model, tmp_path).macs == 2 * 3 * 5 * 11 * 7


def test_gemm_transposed(tmp_path: Path) -> None:
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], transA=1, transB=1)
    model = _model(
        [node], [_vi("a", [64, 4])], [_vi("y", None)], [_init("w", (32, 64)), _init("c", (32,))]
    )
    compute = _count(model, tmp_path)
    assert compute.macs == 4 * 32 * 64
    assert compute.flops == 2 * 4 * 32 * 64 + 4 * 32


def test_einsum_contraction(tmp_path: Path) -> None:
    node = helper.make_node("Einsum", ["q", "k"], ["s"], equation="bhid,bhjd->bhij")
    model = _model(
        [node], [_vi("q", [2, 4, 6, 8]), _vi("k", [2, 4, 10, 8])], [_vi("s", [])], opset=12
    )
    assert _count(model, tmp_path).macs == 2 * 4 * 6 * 10 * 8


@pytest.mark.parametrize(("op", "gates"), [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_rnn_directions(tmp_path: Path, op: str, gates: int, direction: str) -> None:
    seq, batch, inp, hidden = 5, 2, 6, 4
    dirs = 2 if direction == "bidirectional" else 1
    node = helper.make_node(op, ["x", "w", "r"], ["y"], hidden_size=hidden, direction=direction)
    model = _model(
        [node],
        [_vi("x", [seq, batch, inp])],
        [_vi("y", None)],
        [_init("w", (dirs, gates * hidden, inp)), _init("r", (dirs, gates * hidden, hidden))],
    )
    compute = _count(model, tmp_path)
    assert compute.macs == seq * dirs * batch * gates * hidden * (inp + hidden)


def test_quantized_ops_are_integer_macs(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMulInteger", ["a", "w"], ["y"]),
    ]
    model = _model(
        nodes,
        [_vi("a", [3, 16], TensorProto.UINT8)],
        [_vi("y", None, TensorProto.INT32)],
        [_init("w", (16, 8), np.uint8)],
    )
    compute = _count(model, tmp_path)
    assert compute.integer_macs == 3 * 16 * 8
    assert compute.macs == 0
    assert compute.flops == 0


def test_qlinear_conv(tmp_path: Path) -> None:
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.uint8), "xz"),
        _init("w", (4, 2, 3, 3), np.uint8),
        numpy_helper.from_array(np.array(0.1, np.float32), "ws"),
        numpy_helper.from_array(np.array(0, np.uint8), "wz"),
        numpy_helper.from_array(np.array(0.1, np.float32), "ys"),
        numpy_helper.from_array(np.array(0, np.uint8), "yz"),
    ]
    node = helper.make_node(
        "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], kernel_shape=[3, 3]
    )
    model = _model(
        [node],
        [_vi("x", [1, 2, 6, 6], TensorProto.UINT8)],
        [_vi("y", None, TensorProto.UINT8)],
        inits,
    )
    compute = _count(model, tmp_path)
    assert compute.integer_macs == 4 * 4 * 4 * 2 * 3 * 3
    assert compute.macs == 0


def test_matmul_nbits(tmp_path: Path) -> None:
    k, n, block = 32, 16, 16
    blob = numpy_helper.from_array(np.zeros((n, k // block, block // 2), np.uint8), "wq")
    scales = numpy_helper.from_array(np.ones((n * k // block,), np.float32), "ws")
    node = helper.make_node(
        "MatMulNBits", ["a", "wq", "ws"], ["y"], domain="com.microsoft", K=k, N=n, bits=4,
        block_size=block,
    )  # fmt: skip
    model = _model(
        [node],
        [_vi("a", [2, 3, k])],
        [_vi("y", [2, 3, n])],
        [blob, scales],
        domains=("com.microsoft",),
    )
    compute = _count(model, tmp_path)
    assert compute.integer_macs == 2 * 3 * k * n


def test_if_counts_heavier_branch(tmp_path: Path) -> None:
    light = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "light", [], [_vi("t", [4, 8])]
    )
    heavy = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["e"])], "heavy", [], [_vi("e", [4, 8])]
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=light, else_branch=heavy, name="if0")
    model = _model(
        [node],
        [_vi("c", [], TensorProto.BOOL), _vi("x", [4, 8])],
        [_vi("y", [4, 8])],
        [_init("w", (8, 8))],
    )
    compute = _count(model, tmp_path)
    assert compute.macs == 4 * 8 * 8
    assert any("heavier branch" in n.note for n in compute.nodes)


def test_loop_with_constant_trip_count(tmp_path: Path) -> None:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["h_in", "w"], ["h_out"]),
        ],
        "body",
        [
            _vi("i", [], TensorProto.INT64),
            _vi("cond_in", [], TensorProto.BOOL),
            _vi("h_in", [2, 8]),
        ],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("h_out", [2, 8])],
    )
    inits = [
        numpy_helper.from_array(np.array(5, np.int64), "trip"),
        numpy_helper.from_array(np.array(True), "cond"),
        _init("w", (8, 8)),
    ]
    node = helper.make_node("Loop", ["trip", "cond", "h"], ["y"], body=body, name="loop0")
    model = _model([node], [_vi("h", [2, 8])], [_vi("y", [2, 8])], inits)
    compute = _count(model, tmp_path)
    assert compute.macs == 5 * 2 * 8 * 8
    assert any("x5 iterations" in n.note for n in compute.nodes)


def test_unknown_op_listed_not_silent(tmp_path: Path) -> None:
    node = helper.make_node("MysteryOp", ["x"], ["y"], domain="example.custom")
    model = _model([node], [_vi("x", [2, 2])], [_vi("y", [2, 2])], domains=("example.custom",))
    compute = _count(model, tmp_path)
    assert compute.unknown_ops == ("example.custom.MysteryOp",)
    assert compute_to_dict(compute)["unknown_ops"] == ["example.custom.MysteryOp"]


def test_attention_score_matmuls_counted(tmp_path: Path) -> None:
    # Q K^T and (softmax) V: both matmuls of attention are counted, once each.
    b, h, s, d = 1, 2, 6, 4
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    model = _model(
        nodes,
        [_vi("q", [b, h, s, d]), _vi("k", [b, h, s, d]), _vi("v", [b, h, s, d])],
        [_vi("y", None)],
    )
    compute = _count(model, tmp_path)
    assert compute.macs == 2 * b * h * s * s * d
    assert compute.flops == 2 * compute.macs + 5 * b * h * s * s


def _independent_macs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> int:
    """MACs of Conv/MatMul/Gemm from the shapes onnxruntime really produces (every tensor exposed)."""
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for out in node.output:
            if out and out not in known:
                exposed.graph.output.append(helper.make_empty_tensor_value_info(out))
                known.add(out)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, feeds), strict=True))
    values.update(feeds)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    shape = {**{k: v.shape for k, v in values.items()}, **{k: v.shape for k, v in inits.items()}}
    total = 0
    for node in model.graph.node:
        out = shape[node.output[0]]
        if node.op_type == "Conv":
            total += int(np.prod(out)) * int(np.prod(shape[node.input[1]][1:]))
        elif node.op_type == "MatMul":
            total += int(np.prod(out)) * shape[node.input[0]][-1]
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            a = shape[node.input[0]]
            total += int(np.prod(out)) * (a[0] if trans_a else a[1])
    return total


def test_against_real_shapes_cnn(tmp_path: Path) -> None:
    model = seed_complex()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    expected = _independent_macs(model, {"x": x})
    compute = _count(model, tmp_path, "x=4,3,32,32")
    assert compute.macs == expected


def test_against_real_shapes_transformer_block(tmp_path: Path) -> None:
    from fixtures.builders import write as write_model

    b, s, d, heads = 2, 7, 16, 2
    hd = d // heads
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q0"]),
        helper.make_node("MatMul", ["x", "wk"], ["k0"]),
        helper.make_node("MatMul", ["x", "wv"], ["v0"]),
        helper.make_node("Reshape", ["q0", "split"], ["q1"]),
        helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["k0", "split"], ["k1"]),
        helper.make_node("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["v0", "split"], ["v1"]),
        helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["q", "kt"], ["sc"]),
        helper.make_node("Softmax", ["sc"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctx1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx1", "merge"], ["ctx2"]),
        helper.make_node("MatMul", ["ctx2", "wo"], ["y"]),
    ]
    inits = [
        _init("wq", (d, d)),
        _init("wk", (d, d)),
        _init("wv", (d, d)),
        _init("wo", (d, d)),
        numpy_helper.from_array(np.array([0, 0, heads, hd], np.int64), "split"),
        numpy_helper.from_array(np.array([0, 0, d], np.int64), "merge"),
    ]
    model = _model(nodes, [_vi("x", ["batch", "seq", d])], [_vi("y", ["batch", "seq", d])], inits)
    x = np.random.default_rng(0).standard_normal((b, s, d), dtype=np.float32)
    expected = _independent_macs(model, {"x": x})
    path = write_model(model, tmp_path / "t.onnx")
    compute = count_compute(path, parse_bindings(input_shapes=[f"x={b},{s},{d}"]))
    assert compute.macs == expected == 4 * b * s * d * d + 2 * b * heads * s * s * hd


def test_compute_model_without_weights_map(tmp_path: Path) -> None:
    compute = count_compute_model(seed_complex())
    assert compute.macs == 442_368 + 491_520 + 1_200


def test_profile_maps_every_kernel_to_the_graph(tmp_path: Path) -> None:
    from graph_analysis.runtime.profile import OptimizationLevel, profile_model, profile_to_dict

    path = write(seed_complex(), tmp_path / "c.onnx")
    exported = profile_model(path, runs=3, warmup=1, optimization=OptimizationLevel.DISABLED)
    # Without graph optimizations every kernel is one node of the exported graph.
    assert {k.mapping for k in exported.kernels} == {"exact"}
    assert {k.node for k in exported.kernels} == {n.name for n in exported.compute.nodes}
    assert exported.runs == 3
    assert exported.kernel_sum_s == pytest.approx(sum(k.time_s for k in exported.kernels))
    assert exported.unattributed_s == pytest.approx(
        exported.latency_median_s - exported.kernel_sum_s
    )
    optimized = profile_model(path, runs=3, warmup=1, optimization=OptimizationLevel.ALL)
    conv = [k for k in optimized.kernels if k.op_type in ("Conv", "FusedConv")]
    # onnxruntime fuses Conv+Relu (and renames it after the Relu's output): still conv1's kernel.
    assert [k.node for k in conv] == ["/conv1/Conv"]
    assert conv[0].macs == 442_368
    assert all(k.mapping != "unmapped" for k in optimized.kernels)
    data = profile_to_dict(optimized)
    measured = data["measured"]
    assert isinstance(measured, dict)
    assert measured["kind"] == "measured"
    assert data["compute"]["macs"] == 935_088  # type: ignore[index]


def test_profile_cli_count_only_json(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli.app import app

    path = write(seed_complex(), tmp_path / "c.onnx")
    result = CliRunner().invoke(
        app, ["profile", str(path), "--count-only", "-f", "json", "--input-shape", "x=2,3,32,32"]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["compute"]["macs"] == 2 * 935_088
    assert "measured" not in data
    assert data["compute"]["kind"] == "counted"


def test_profile_cli_bad_binding_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    path = write(seed_complex(), tmp_path / "c.onnx")
    result = CliRunner().invoke(app, ["profile", str(path), "--input-shape", "nope=1,2"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("modelsize: ")


def test_inspect_shows_macs_when_shapes_are_bound(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli.app import app

    path = write(seed_complex(), tmp_path / "c.onnx")
    runner = CliRunner()
    bound = runner.invoke(app, ["inspect", str(path), "--input-shape", "x=2,3,32,32", "-f", "json"])
    assert bound.exit_code == 0, bound.stderr
    assert json.loads(bound.stdout)["compute"]["macs"] == 2 * 935_088
    unbound = runner.invoke(app, ["inspect", str(path), "-f", "json"])
    assert "compute" not in json.loads(unbound.stdout)
    table = runner.invoke(app, ["inspect", str(path), "--batch", "1"])
    assert "935,088 MACs" in table.stdout


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_against_real_shapes_on_torch_exports(tmp_path: Path, kind: str) -> None:
    """Real exports (TorchScript exporter): the counted MACs equal an independent count from the
    shapes onnxruntime produces."""
    torch = pytest.importorskip("torch")
    if kind == "cnn":
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=2),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
        ).eval()
        example = torch.randn(2, 3, 32, 32)
    else:

        class Block(torch.nn.Module):  # one attention block + MLP, written out
            def __init__(self) -> None:
                super().__init__()
                self.qkv = torch.nn.Linear(32, 96)
                self.out = torch.nn.Linear(32, 32)
                self.mlp = torch.nn.Sequential(
                    torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32)
                )
                self.norm = torch.nn.LayerNorm(32)

            def forward(self, x):  # type: ignore[no-untyped-def]
                b, s, _ = x.shape
                q, k, v = self.qkv(x).reshape(b, s, 3, 4, 8).permute(2, 0, 3, 1, 4)
                p = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
                y = self.out((p @ v).transpose(1, 2).reshape(b, s, 32))
                return self.mlp(self.norm(x + y))

        model = Block().eval()
        example = torch.randn(2, 7, 32)
    path = tmp_path / f"{kind}.onnx"
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["x"])
    exported = onnx.load(str(path))
    expected = _independent_macs(exported, {"x": example.numpy()})
    compute = count_compute(
        path, parse_bindings(input_shapes=[f"x={','.join(map(str, example.shape))}"])
    )
    core = sum(o.macs for o in compute.by_op if o.op_type in ("Conv", "MatMul", "Gemm"))
    assert core == expected > 0
