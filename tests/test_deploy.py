"""Deployment planning: sizes as people write them, fit against the estimator, the check gate, scan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli.app import app
from fixtures.builders import seed_complex, storage_zoo, write
from graph_analysis.bindings import parse_bindings
from graph_analysis.deploy import (
    FitPrecision,
    Limits,
    check_model,
    fit_model,
    parse_count,
    parse_fraction,
    parse_size,
    scan_folder,
    vary_bindings,
)
from graph_analysis.errors import UsageError
from graph_analysis.memory import estimate_memory

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1.5G", 1_500_000_000),
        ("1048576", 1_048_576),
        ("64 MiB", 64 * 2**20),
        ("3kib", 3 * 1024),
        ("1e9", 10**9),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "5MBB", "1i", "-3MB", "2 GiBs"])
def test_parse_size_refuses_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError, match="512MiB"):
        parse_size(text, option="--memory")


def test_parse_count_and_fraction() -> None:
    assert parse_count("7B") == 7 * 10**9
    assert parse_count("25M") == 25 * 10**6
    assert parse_count("4.1G") == 4_100_000_000
    assert parse_fraction("5%") == pytest.approx(0.05)
    assert parse_fraction("0.25") == pytest.approx(0.25)
    with pytest.raises(UsageError):
        parse_count("lots")
    with pytest.raises(UsageError):
        parse_fraction("-1%")


def _matmul_chain(tmp_path: Path, width: int = 256, layers: int = 3) -> Path:
    nodes = []
    inits = []
    previous = "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(np.ones((width, width), np.float32), f"w{i}"))
        nodes.append(
            helper.make_node("MatMul", [previous, f"w{i}"], [f"h{i}"], name=f"/l{i}/MatMul")
        )
        previous = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    return write(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        tmp_path / "chain.onnx",
    )


def _peak(path: Path, vary: str, value: int) -> int:
    return estimate_memory(path, vary_bindings(parse_bindings(), vary, value)).inference.peak_bytes


def test_fit_is_the_largest_batch_within_budget(tmp_path: Path) -> None:
    path = _matmul_chain(tmp_path)
    budget = _peak(path, "batch", 1000) + 1
    result = fit_model(path, budget, precisions=[FitPrecision.FP32])
    (candidate,) = result.candidates
    assert candidate.value is not None
    # Exactly the largest that fits by the estimate: it fits, the next one up does not.
    assert (
        _peak(path, "batch", candidate.value) <= budget < _peak(path, "batch", candidate.value + 1)
    )
    assert candidate.value >= 1000
    assert candidate.estimated_peak_bytes == _peak(path, "batch", candidate.value)
    assert result.monotonic
    assert dict(result.evaluated)[candidate.value] == candidate.estimated_peak_bytes


def test_fit_start_value_too_big_says_by_how_much(tmp_path: Path) -> None:
    path = _matmul_chain(tmp_path)
    result = fit_model(path, 1024, precisions=[FitPrecision.FP32])
    (candidate,) = result.candidates
    assert candidate.value is None and not candidate.fits
    assert candidate.reason is not None and "over the budget" in candidate.reason


def test_fit_other_precisions_are_what_if_and_int4_skipped_for_conv(tmp_path: Path) -> None:
    path = _matmul_chain(tmp_path)
    result = fit_model(path, 64 * 2**20)
    by = {c.precision: c for c in result.candidates}
    assert by[FitPrecision.FP32].disk_kind == "measured"
    assert by[FitPrecision.INT8].disk_kind == "what-if"
    assert by[FitPrecision.INT8].disk_bytes < by[FitPrecision.FP32].disk_bytes
    # fp16 on the CPU provider keeps the 16-bit weights and float copies: more memory, not less.
    assert (by[FitPrecision.FP16].value or 0) <= (by[FitPrecision.FP32].value or 0)
    conv = write(seed_complex(), tmp_path / "cnn.onnx")
    # seed_complex's weights sit mostly in Gemm: int4 applies; a pure conv graph would be skipped.
    assert fit_model(conv, 64 * 2**20).candidates[-1].reason is None


def _kv_decoder(
    tmp_path: Path, layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 8
) -> Path:
    """A decoder exported with a KV cache: past_key_values.* in, present.* out (grouped-query)."""
    hidden = heads * head_dim
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["h0"])]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    outputs = []
    inits = [
        numpy_helper.from_array(np.ones((100, hidden), np.float32), "emb"),
        numpy_helper.from_array(np.array([0, 0, kv_heads, head_dim], np.int64), "kv_shape"),
        numpy_helper.from_array(np.ones((hidden, kv_heads * head_dim), np.float32), "wk"),
    ]
    for layer in range(layers):
        for part in ("key", "value"):
            past = f"past_key_values.{layer}.{part}"
            inputs.append(
                helper.make_tensor_value_info(
                    past, TensorProto.FLOAT, ["batch", kv_heads, "past_sequence_length", head_dim]
                )
            )
            nodes += [
                helper.make_node("MatMul", ["h0", "wk"], [f"k{layer}{part}"]),
                helper.make_node("Reshape", [f"k{layer}{part}", "kv_shape"], [f"r{layer}{part}"]),
                helper.make_node(
                    "Transpose", [f"r{layer}{part}"], [f"t{layer}{part}"], perm=[0, 2, 1, 3]
                ),
                helper.make_node(
                    "Concat", [past, f"t{layer}{part}"], [f"present.{layer}.{part}"], axis=2
                ),
            ]
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{layer}.{part}",
                    TensorProto.FLOAT,
                    ["batch", kv_heads, "total", head_dim],
                )
            )
    graph = helper.make_graph(nodes, "decoder", inputs, outputs, inits)
    return write(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "dec.onnx"
    )


def test_fit_kv_cache_decoder_varies_the_context(tmp_path: Path) -> None:
    layers, kv_heads, head_dim = 2, 2, 8
    path = _kv_decoder(tmp_path, layers=layers, kv_heads=kv_heads, head_dim=head_dim)
    budget = _peak(path, "past_sequence_length", 5000)
    result = fit_model(path, budget, precisions=[FitPrecision.FP32])
    assert result.vary == "past_sequence_length"
    # Per token: layers x (key, value) x kv_heads x head_dim x 4 bytes; grouped-query attention is
    # read from the graph (2 KV heads for 4 query heads), not from a formula.
    assert result.kv_cache_per_token_bytes == layers * 2 * kv_heads * head_dim * 4
    (candidate,) = result.candidates
    assert candidate.value is not None
    assert _peak(path, "past_sequence_length", candidate.value) <= budget
    assert _peak(path, "past_sequence_length", candidate.value + 1) > budget
    assert candidate.kv_cache_bytes == candidate.value * layers * 2 * kv_heads * head_dim * 4


def test_fit_unknown_vary_name_is_usage_error(tmp_path: Path) -> None:
    path = _matmul_chain(tmp_path)
    with pytest.raises(UsageError, match="symbols: batch"):
        fit_model(path, 2**30, vary="nope")


def test_check_each_limit_and_exit_codes(tmp_path: Path) -> None:
    path = write(seed_complex(), tmp_path / "c.onnx")
    result = check_model(path, Limits(max_params=493_298, max_macs=935_088, min_int8_saving=0.5))
    assert result.ok
    assert {r.name: r.value for r in result.limits} == {
        "max_params": 493_298,
        "max_macs": 935_088,
        "min_int8_saving": pytest.approx(result.limits[2].value),
    }
    ok = runner.invoke(app, ["check", str(path), "--max-params", "493298", "--max-macs", "1M"])
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout.count("PASS") == 2
    fail = runner.invoke(app, ["check", str(path), "--max-params", "493297", "--max-disk", "10MB"])
    assert fail.exit_code == 1
    assert "FAIL  max_params: 493,297" not in fail.stdout and "FAIL  max_params" in fail.stdout
    assert "PASS  max_disk" in fail.stdout
    bad = runner.invoke(app, ["check", str(path), "--max-disk", "ten"])
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1 and "--max-disk" in bad.stderr
    data = json.loads(
        runner.invoke(app, ["check", str(path), "--max-params", "1", "-f", "json"]).stdout
    )
    assert data["ok"] is False
    assert data["limits"][0] == {
        "name": "max_params", "value": 493_298, "limit": 1, "ok": False, "kind": "counted",
        "unit": "parameters", "detail": "",
    }  # fmt: skip


def test_check_baseline_growth(tmp_path: Path) -> None:
    small = _matmul_chain(tmp_path / "a", width=64, layers=2)
    big = _matmul_chain(tmp_path / "b", width=64, layers=3)
    result = check_model(big, Limits(max_growth=0.05), baseline=small)
    growth = {r.name: r for r in result.limits}
    assert growth["growth_params"].value == pytest.approx(0.5)
    assert not growth["growth_params"].ok
    assert growth["growth_macs"].value == pytest.approx(0.5)
    assert check_model(small, Limits(max_growth=0.05), baseline=small).ok
    with pytest.raises(UsageError):
        check_model(big, Limits(max_growth=0.05))
    cli = runner.invoke(app, ["check", str(big), "--baseline", str(small), "--max-growth", "60%"])
    assert cli.exit_code == 0, cli.stdout + cli.stderr


def test_scan_rows_same_with_1_and_4_workers(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    write(seed_complex(), folder / "a.onnx")
    write(storage_zoo(), folder / "sub" / "zoo.onnx")
    (folder / "bad.onnx").write_bytes(b"\x08\x07garbage")
    (folder / "notes.txt").write_text("not a model")
    from fixtures.builders import external_data_model

    external_data_model(folder / "ext")
    one = list(scan_folder(folder, recursive=True, workers=1))
    four = list(scan_folder(folder, recursive=True, workers=4))
    assert one == four
    names = [Path(r.path).name for r in one]
    assert "notes.txt" not in names and "bad.onnx" in names and "zoo.onnx" in names
    rows = {Path(r.path).name: r for r in one}
    assert not rows["bad.onnx"].ok and rows["bad.onnx"].error
    assert rows["a.onnx"].summary["parameters"]["total"] == 493_298
    assert rows["zoo.onnx"].summary["parameters"]["total"] == 960
    assert any(r.summary.get("external_data") for r in one if r.ok)
    assert [Path(r.path).name for r in scan_folder(folder)] == ["a.onnx", "bad.onnx"]


def test_scan_cli_jsonl_and_output_file(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    write(seed_complex(), folder / "a.onnx")
    (folder / "b.onnx").write_bytes(b"")
    result = runner.invoke(app, ["scan", str(folder), "-f", "jsonl"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(x["path"]).name, x["ok"]) for x in lines] == [("a.onnx", True), ("b.onnx", False)]
    assert lines[1]["error"].endswith("empty file")
    out = tmp_path / "scan.csv"
    written = runner.invoke(app, ["scan", str(folder), "-f", "csv", "-o", str(out)])
    assert written.exit_code == 0 and written.stdout == ""
    assert out.read_text().splitlines()[0].startswith("path,ok,parameters")
    missing = runner.invoke(app, ["scan", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_fit_cli_json(tmp_path: Path) -> None:
    path = _matmul_chain(tmp_path)
    result = runner.invoke(
        app, ["fit", str(path), "--memory", "64MiB", "--precision", "fp32", "-f", "json"]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["budget"]["memory_bytes"] == 64 * 2**20
    assert data["vary"] == "batch"
    (candidate,) = data["candidates"]
    assert candidate["precision"] == "fp32" and candidate["fits"] is True
    assert candidate["estimated_peak_bytes"] <= 64 * 2**20
    bad = runner.invoke(app, ["fit", str(path), "--memory", "lots"])
    assert bad.exit_code == 2


def test_check_fit_and_memory_agree_on_a_convolutional_model(tmp_path: Path) -> None:
    """`memory`, `check --max-memory` and `fit` give one inference estimate: with float
    convolutions, all three read the activations from onnxruntime's optimized graph (one child
    makes it), never the exported graph for some commands and the executed one for others."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((12, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 12, 64, 64])],
        initializer=[weight],
    )
    path = write(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "c.onnx"
    )
    memory = CliRunner().invoke(app, ["memory", str(path), "--batch", "2", "-f", "json"])
    assert memory.exit_code == 0, memory.output
    estimate = json.loads(memory.stdout)
    assert "optimized graph" in estimate["inference"]["activations_graph"]
    peak = estimate["inference"]["peak_bytes"]
    check = CliRunner().invoke(
        app, ["check", str(path), "--batch", "2", "--max-memory", str(peak), "-f", "json"]
    )
    assert check.exit_code == 0, check.output
    (limit,) = json.loads(check.stdout)["limits"]
    assert limit["value"] == peak
    fit = CliRunner().invoke(
        app, ["fit", str(path), "--memory", str(peak), "--precision", "fp32", "-f", "json"]
    )
    assert fit.exit_code == 0, fit.output
    (candidate,) = json.loads(fit.stdout)["candidates"]
    assert candidate["value"] == 2  # batch 2 is exactly the budget; batch 3 is more
