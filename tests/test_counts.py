"""Exact parameter counts and byte sizes on models whose figures are known independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fixtures import builders
from graph_analysis import Role, analyze
from graph_analysis.dtypes import DataType, nbytes


def test_seed_simple_has_241_parameters(simple_path: Path) -> None:
    report = analyze(simple_path)
    assert report.parameters.total == 241
    assert report.size.weights_bytes == 241 * 4
    assert report.size.on_disk_bytes == simple_path.stat().st_size


def test_seed_complex_has_493298_parameters(complex_path: Path) -> None:
    report = analyze(complex_path)
    assert report.parameters.total == 493_298
    assert report.size.weights_bytes == 493_298 * 4
    # The Reshape target is a constant, not a parameter.
    assert report.by_role[Role.CONSTANT].num_elements == 2
    by_layer = {r.key: r.num_parameters for r in report.layers if r.depth == 1}
    assert by_layer == {"conv1": 448, "fc1": 491_640, "fc2": 1_210}


def test_storage_zoo_counts_every_storage_form(zoo_path: Path) -> None:
    report = analyze(zoo_path)
    assert report.parameters.total == builders.STORAGE_ZOO_TOTAL
    assert report.parameters.learned == builders.STORAGE_ZOO_LEARNED
    assert report.parameters.running_stats == builders.STORAGE_ZOO_RUNNING
    roles = {t.name: t.role for t in report.tensors}
    for name in (
        "emb.weight",
        "const.weight",
        "list.weight",
        "half.weight",
        "bf.weight",
        "q8.weight",
        "q4.weight",
        "then.weight",
        "else.weight",
        "loop.weight",
        "sparse.weight",
        "bn.scale",
    ):
        assert roles[name] == Role.PARAMETER, name
    assert roles["bn.mean"] == roles["bn.var"] == Role.RUNNING_STAT
    for name in ("q8.scale", "q8.zp", "q4.scale", "q4.zp"):
        assert roles[name] == Role.QUANT_META, name
    for name in ("shape", "ids", "axes0", "flag", "trip", "two"):
        assert roles[name] == Role.CONSTANT, name
    assert roles["unused.weight"] == Role.UNUSED
    by_dtype = {r.data_type: r.nbytes for r in report.parameters.by_dtype}
    assert by_dtype["INT4"] == 32  # 64 elements packed two per byte
    assert by_dtype["INT8"] == 64
    assert by_dtype["FLOAT16"] == 128
    assert by_dtype["BFLOAT16"] == 16
    sparse = next(t for t in report.tensors if t.name == "sparse.weight")
    assert sparse.storage == "sparse"
    assert sparse.num_elements == 64
    assert sparse.stored_nbytes == 5 * 4 + 5 * 8  # values + INT64 indices
    then = next(t for t in report.tensors if t.name == "then.weight")
    assert then.graph == "/branch/If.then_branch"
    assert report.num_subgraphs == 3


def test_tied_weight_read_twice_counts_once(zoo_path: Path) -> None:
    report = analyze(zoo_path)
    emb = [t for t in report.tensors if t.name == "emb.weight"]
    assert len(emb) == 1
    assert emb[0].consumers == ("Gather", "Transpose")


def test_external_data_and_aliases(tmp_path: Path) -> None:
    path = builders.external_data_model(tmp_path)
    report = analyze(path)
    assert report.parameters.total == 241
    data_size = (tmp_path / "ext.onnx.data").stat().st_size
    assert report.size.external_data_bytes == data_size
    assert report.size.on_disk_bytes == path.stat().st_size + data_size
    assert report.size.aliased_bytes == 200 * 4
    alias = next(t for t in report.tensors if t.name == "fc1.weight_alias")
    assert alias.duplicate_of == "fc1.weight"
    assert alias.storage == "external"


@pytest.mark.parametrize(
    ("data_type", "numel", "expected"),
    [
        (DataType.FLOAT, 10, 40),
        (DataType.INT4, 7, 4),
        (DataType.UINT4, 8, 4),
        (DataType.FLOAT4E2M1, 1, 1),
        (DataType.INT2, 5, 2),
        (DataType.FLOAT6E2M3, 4, 3),
        (DataType.BFLOAT16, 3, 6),
        (DataType.COMPLEX128, 2, 32),
        (DataType.BOOL, 9, 9),
    ],
)
def test_nbytes_packs_sub_byte_types(data_type: DataType, numel: int, expected: int) -> None:
    assert nbytes(data_type, numel) == expected


def test_typed_fields_and_int4_in_int32_data(tmp_path: Path) -> None:
    # float_data, int32_data holding FLOAT16 bits, int64_data, and INT4 packed two per int32 entry.
    f32 = helper.make_tensor("f32", TensorProto.FLOAT, [3, 4], vals=np.arange(12, dtype=np.float32))
    f16 = helper.make_tensor("f16", TensorProto.FLOAT16, [2, 3], vals=np.ones(6, np.float16))
    i4 = helper.make_tensor("i4", TensorProto.INT4, [5], vals=[1, 2, 3, 4, 5])
    nodes = [
        helper.make_node("Cast", ["f16"], ["f16c"], to=TensorProto.FLOAT),
        helper.make_node("DequantizeLinear", ["i4", "s"], ["i4f"]),
        helper.make_node("Concat", ["f32", "f16c"], ["out"], axis=0),
    ]
    scale = numpy_helper.from_array(np.array(1.0, np.float32), "s")
    graph = helper.make_graph(
        nodes,
        "g",
        [],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i4f", TensorProto.FLOAT, None),
        ],
        [f32, f16, i4, scale],
    )
    path = tmp_path / "typed.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    report = analyze(path)
    sizes = {t.name: (t.num_elements, t.nbytes) for t in report.tensors}
    assert sizes["f32"] == (12, 48)
    assert sizes["f16"] == (6, 12)
    assert sizes["i4"] == (5, 3)
    assert report.parameters.total == 12 + 6 + 5


def test_precision_what_if_sizes(complex_path: Path) -> None:
    report = analyze(complex_path)
    sizes = {p.precision.value: p for p in report.size.by_precision}
    total = 493_298
    assert sizes["FLOAT"].nbytes == 4 * total
    assert sizes["FLOAT16"].nbytes == sizes["BFLOAT16"].nbytes == 2 * total
    # INT8: one FLOAT scale per output channel: conv 16, fc1 120, fc2 10; one per bias tensor (3).
    int8_scales = 16 + 120 + 10 + 3
    assert sizes["INT8"].overhead_nbytes == 4 * int8_scales
    assert sizes["INT8"].nbytes == total + 4 * int8_scales
    # INT4: blocks of 32 along the reduction axes: conv 16 x ceil(27/32), fc1 120 x 128,
    # fc2 10 x ceil(120/32); biases ceil(16/32) + ceil(120/32) + ceil(10/32).
    blocks = 16 * 1 + 120 * 128 + 10 * 4 + 1 + 4 + 1
    assert sizes["INT4"].overhead_nbytes == 4 * blocks
    packed = sum((n + 1) // 2 for n in (432, 16, 491_520, 120, 1_200, 10))
    assert sizes["INT4"].nbytes == packed + 4 * blocks


def test_deep_scan_finds_identical_and_transposed_copies(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((30, 6)).astype(np.float32)
    inits = [
        numpy_helper.from_array(emb, "wte"),
        numpy_helper.from_array(
            emb.T.copy(), "lm_head_t"
        ),  # transposed copy (TorchScript-style tie)
        numpy_helper.from_array(emb.copy(), "wte_copy"),  # identical copy
        numpy_helper.from_array(np.ones((6,), np.float32), "ln1.weight"),  # uniform: never merged
        numpy_helper.from_array(np.ones((6,), np.float32), "ln2.weight"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "lm_head_t"], ["a"]),
        helper.make_node("Gather", ["wte", "ids"], ["b"]),
        helper.make_node("Gather", ["wte_copy", "ids"], ["c"]),
        helper.make_node("Mul", ["b", "ln1.weight"], ["d"]),
        helper.make_node("Mul", ["c", "ln2.weight"], ["e"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "ade"],
        inits,
    )
    path = tmp_path / "tied.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    shallow = analyze(path)
    assert shallow.parameters.total == 3 * 180 + 12
    assert shallow.size.duplicate_bytes == 0
    deep = analyze(path, deep=True)
    assert deep.parameters.total == 180 + 12
    assert deep.size.duplicate_bytes == 2 * 180 * 4
    kinds = {d.kind: d.copies for d in deep.duplicates}
    assert kinds == {"transposed": ("lm_head_t",), "identical": ("wte_copy",)} or set(kinds) == {
        "transposed",
        "identical",
    }
    assert deep.size.weights_bytes == shallow.size.weights_bytes


def test_matmulnbits_counts_logical_parameters(tmp_path: Path) -> None:
    # An int4 MatMulNBits weight of K=64 x N=16 is stored as UINT8 [16, 2 blocks, 16 bytes].
    packed = numpy_helper.from_array(np.zeros((16, 2, 16), np.uint8), "proj.qweight")
    scales = numpy_helper.from_array(np.ones((32,), np.float32), "proj.scales")
    node = helper.make_node(
        "MatMulNBits",
        ["x", "proj.qweight", "proj.scales"],
        ["y"],
        domain="com.microsoft",
        K=64,
        N=16,
        bits=4,
        block_size=32,
        name="/proj/MatMulNBits",
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [packed, scales],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    path = tmp_path / "nbits.onnx"
    onnx.save_model(model, path)
    report = analyze(path)
    assert report.parameters.total == 64 * 16
    assert {r.data_type: (r.num_elements, r.nbytes) for r in report.parameters.by_dtype} == {
        "UINT4": (1024, 512)
    }
    assert report.by_role[Role.QUANT_META].num_elements == 32


def test_common_name_prefix_is_dropped_from_the_layer_tree(tmp_path: Path) -> None:
    names = [
        "StatefulPartitionedCall/model/dense/MatMul/ReadVariableOp:0",
        "StatefulPartitionedCall/model/dense_1/MatMul/ReadVariableOp:0",
    ]
    inits = [
        numpy_helper.from_array(np.ones((4, 4), np.float32) * i, n) for i, n in enumerate(names)
    ]
    nodes = [
        helper.make_node("MatMul", ["x", names[0]], ["h"]),
        helper.make_node("MatMul", ["h", names[1]], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    path = tmp_path / "tf.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    top = {r.key: r.num_parameters for r in analyze(path).layers if r.depth == 1}
    assert top == {"dense": 16, "dense_1": 16}
