"""compare_models: counted sizes, measured memory/latency in child processes, drift vs the first.

Oracles: file sizes from ``os.stat``; parameters from ``graph_analysis.analyze``; drift recomputed
here with numpy from both models run in this process on the same seeded inputs; memory checked
against the weight bytes the int8 variant saves (peak must fall by at least half of them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.app import app
from converters.quantize import QuantMethod, quantize_model
from fixtures import quant_models as qm
from graph_analysis import analyze
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import MeasurementError, ModelFormatError, ShapeBindingError
from graph_analysis.runtime._drift import drift_all, output_drift
from graph_analysis.runtime._feeds import input_specs, make_feeds
from graph_analysis.runtime.compare import compare_models, comparison_to_dict


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A 4.2M-parameter float MLP (16 MiB), its dynamic int8 and its fp16 variants."""
    folder = tmp_path_factory.mktemp("trio")
    src = folder / "mlp.onnx"
    onnx.save(qm.mlp(width=1024, layers=4), str(src))
    int8 = quantize_model(src, folder / "mlp.int8.onnx").output
    fp16 = quantize_model(src, folder / "mlp.fp16.onnx", method=QuantMethod.FP16).output
    return [src, int8, fp16]


@pytest.fixture(scope="module")
def comparison(trio: list[Path]):  # type: ignore[no-untyped-def]
    steps: list[str] = []
    result = compare_models(trio, runs=3, threads=1, progress=steps.append)
    assert steps and steps[0].startswith("running all 3 models")
    return result


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_counted_figures(trio: list[Path], comparison) -> None:  # type: ignore[no-untyped-def]
    for path, model in zip(trio, comparison.models, strict=True):
        assert model.path == str(path)
        assert model.on_disk_bytes == path.stat().st_size
        assert model.parameters == analyze(path).parameters.total == 4 * (1024 * 1024 + 1024)
    assert comparison.models[0].weight_bytes_by_dtype == {"FLOAT": 4 * 4 * (1024 * 1024 + 1024)}
    assert comparison.models[1].weight_bytes_by_dtype["INT8"] == 4 * 1024 * 1024
    assert comparison.models[2].weight_bytes_by_dtype == {"FLOAT16": 2 * 4 * (1024 * 1024 + 1024)}


def test_drift_matches_an_independent_run(trio: list[Path], comparison) -> None:  # type: ignore[no-untyped-def]
    assert comparison.models[0].drift is None
    specs = input_specs(trio[0])
    feeds = dict(make_feeds(specs, seed=comparison.seed))
    reference = _run(trio[0], feeds).astype(np.float64)
    for path, model in zip(trio[1:], comparison.models[1:], strict=True):
        other = _run(path, feeds).astype(np.float64)
        assert model.drift is not None
        assert model.drift.max_abs == pytest.approx(np.abs(reference - other).max(), rel=1e-6)
        assert model.drift.mean_abs == pytest.approx(np.abs(reference - other).mean(), rel=1e-6)
        cosine = np.dot(reference.ravel(), other.ravel()) / (
            np.linalg.norm(reference) * np.linalg.norm(other)
        )
        assert model.drift.cosine_similarity == pytest.approx(cosine, abs=1e-9)
        assert model.drift.argmax_agreement == pytest.approx(
            np.mean(reference.argmax(-1) == other.argmax(-1))
        )
    assert comparison.models[1].drift.cosine_similarity >= 0.99
    assert comparison.models[2].drift.cosine_similarity >= 0.9999


def test_measured_memory_follows_the_weights(comparison) -> None:  # type: ignore[no-untyped-def]
    fp32, int8 = comparison.models[0], comparison.models[1]
    assert [r.arena for r in fp32.measured] == [True, False]
    saved = fp32.on_disk_bytes - int8.on_disk_bytes  # ~12 MiB of weights
    for index in range(2):
        # The float run holds at least its weights above the child's baseline; int8 saves at least
        # half of what its file saves (tolerance for allocator and session overheads).
        assert fp32.measured[index].peak_bytes >= fp32.on_disk_bytes * 0.9
        assert fp32.measured[index].peak_bytes - int8.measured[index].peak_bytes >= 0.5 * saved
        latency = fp32.measured[index].latency
        assert latency.runs == 3 and 0 < latency.median_ms <= latency.p90_ms


def test_json_shape(comparison) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(comparison_to_dict(comparison)))
    first, second = data["models"][0], data["models"][1]
    assert first["drift"] is None
    assert set(first) == {"path", "parameters", "size", "measured", "drift"}
    assert isinstance(first["size"]["on_disk_bytes"], int)
    assert set(first["measured"]["latency_ms"]) == {"median", "p90"}
    assert isinstance(first["measured"]["peak_bytes"], int)
    assert set(second["drift"]) >= {"max_abs", "mean_abs", "cosine_similarity", "argmax_agreement"}
    assert data["inputs"] == [{"name": "x", "data_type": "FLOAT", "dims": [1, 1024]}]


def test_output_drift_unit() -> None:
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    same = output_drift("y", a, a.copy())
    assert (same.max_abs, same.mean_abs, same.argmax_agreement) == (0, 0, 1)
    assert same.cosine_similarity == pytest.approx(1.0, abs=1e-12)
    flipped = output_drift("y", a, a[::-1].copy())
    assert flipped.argmax_agreement == 0.0 and flipped.max_abs == 2.0
    assert (
        output_drift("v", np.ones(4, np.float32), np.ones(4, np.float32)).argmax_agreement is None
    )
    assert output_drift("z", np.zeros(3), np.zeros(3)).cosine_similarity == 1.0
    with pytest.raises(ValueError, match="shape"):
        output_drift("y", a, a[:1])
    # outputs renamed by a converter are paired by position
    assert [d.name for d in drift_all({"a": a, "b": a}, {"x": a, "y": a})] == ["a", "b"]


def test_bindings_and_bad_inputs(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(qm.mlp(width=64, layers=1), str(src))
    comparison = compare_models(
        [src], parse_bindings(batch=3), runs=1, arena_settings=(True,), threads=1
    )
    assert comparison.inputs[0].dims == (3, 64)
    assert comparison.models[0].drift is None
    with pytest.raises(ShapeBindingError, match="no such input"):
        compare_models([src], parse_bindings(["nope=1,64"]), runs=1)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFormatError):
        compare_models([src, bad], runs=1)
    other = tmp_path / "other.onnx"
    onnx.save(qm.mlp(width=32, layers=1), str(other))
    with pytest.raises(ShapeBindingError, match=r"differ from those of m\.onnx"):
        compare_models([src, other], runs=1)


def test_a_model_failing_in_onnxruntime_is_named(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(qm.mlp(width=64, layers=1), str(src))
    broken = qm.mlp(width=64, layers=1)
    broken.graph.node[0].op_type = "NoSuchOp"
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(MeasurementError, match=r"broken\.onnx: onnxruntime failed"):
        compare_models([src, tmp_path / "broken.onnx"], runs=1)


def test_cli_compare_json_and_table(trio: list[Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["compare", str(trio[0]), str(trio[1]), "--runs", "2", "--threads", "1", "-f", "json"]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [m["path"] for m in data["models"]] == [str(trio[0]), str(trio[1])]
    assert (
        data["models"][0]["drift"] is None
        and data["models"][1]["drift"]["cosine_similarity"] > 0.99
    )
    table = runner.invoke(
        app, ["compare", str(trio[0]), str(trio[1]), "--runs", "1", "--threads", "1"]
    )
    assert table.exit_code == 0
    for label in ("on disk (counted)", "peak memory, arena on (measured)", "cosine similarity"):
        assert label in table.stdout
    assert "0.25x" in table.stdout
    missing = runner.invoke(app, ["compare", str(trio[0]), "nope.onnx"])
    assert missing.exit_code == 2 and missing.stderr.startswith("modelsize: nope.onnx")


def test_markdown_and_csv_have_one_column_per_model(comparison) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    from rich.console import Console

    from cli.render import OutputFormat
    from cli.render_quant import comparison_rows, render_comparison

    console = Console(file=io.StringIO())
    rows = comparison_rows(comparison)
    labels = [label for label, _ in rows]
    assert labels[:4] == [
        "parameters (counted)",
        "weights by dtype (counted)",
        "on disk (counted)",
        "inference memory (estimated)",
    ]
    assert sum("(measured)" in label for label in labels) == 8  # 2 arena settings x 2 + 4 drift
    table = list(
        csv.reader(io.StringIO(render_comparison(comparison, OutputFormat.CSV, console=console)))
    )
    assert table[0] == ["figure", "mlp.onnx", "mlp.int8.onnx", "mlp.fp16.onnx"]
    assert all(len(row) == 4 for row in table) and len(table) == len(rows) + 1
    markdown = render_comparison(comparison, OutputFormat.MARKDOWN, console=console)
    assert markdown is not None
    assert markdown.startswith("| figure |") and markdown.count("\n| ") == len(rows)
    assert "(1.00x)" in markdown and "reference" in markdown


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_drift_invariants(shape: list[int], seed: int, scale: float) -> None:
    """Symmetric in its two arguments, zero against itself, cosine within [-1, 1], and
    max_abs >= mean_abs."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * scale).astype(np.float32)
    b = (a + rng.standard_normal(shape) * scale * 0.1).astype(np.float32)
    ab, ba = output_drift("y", a, b), output_drift("y", b, a)
    assert (ab.max_abs, ab.mean_abs, ab.argmax_agreement) == (
        ba.max_abs,
        ba.mean_abs,
        ba.argmax_agreement,
    )
    assert ab.cosine_similarity == pytest.approx(ba.cosine_similarity, abs=1e-12)
    assert -1.0 <= ab.cosine_similarity <= 1.0
    assert ab.max_abs >= ab.mean_abs >= 0.0
    same = output_drift("y", a, a)
    assert same.max_abs == 0.0 and same.argmax_agreement in (None, 1.0)
