"""quantize_model: every weight storage form, each method, path safety, already-quantized models.

Oracles: sizes are the files' own ``os.stat`` sizes; outputs are compared with the float model run
in onnxruntime in this process (drift bounds as documented in docs/quantization.md); parameter
counts against ``graph_analysis.analyze`` of the float source and, for torch models, against
``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.app import app
from converters.quantize import QuantizationResult, QuantMethod, quantize_model
from fixtures import quant_models as qm
from graph_analysis import analyze
from graph_analysis.bindings import parse_bindings
from graph_analysis.errors import (
    AlreadyQuantizedError,
    ConversionError,
    OutputPathError,
    ShapeBindingError,
    UnsupportedModelError,
)

# Documented drift bounds (docs/quantization.md), cosine similarity of outputs vs the float model.
COSINE_MIN = {
    QuantMethod.DYNAMIC: 0.99,
    QuantMethod.STATIC: 0.99,
    QuantMethod.FP16: 0.9999,
    QuantMethod.INT4: 0.98,
}
INT8_RATIO_MAX = 0.35  # for models of 1M+ parameters
FP16_RATIO = (0.45, 0.55)


def _save(model: onnx.ModelProto, path: Path, *, external: bool = False) -> Path:
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            location=path.name + ".data",
            size_threshold=0,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def _disk_bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [np.asarray(o, dtype=np.float64) for o in session.run(None, feeds)]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _feeds(model_path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feeds = {}
    for meta in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in meta.shape]
        feeds[meta.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _check_variant(src: Path, result: QuantizationResult, method: QuantMethod) -> None:
    """The variant exists, its size is what the files say, it runs and drifts within bounds."""
    assert result.output.exists()
    assert result.source_bytes == _disk_bytes(src)
    assert result.output_bytes == _disk_bytes(result.output)
    feeds = _feeds(src)
    for ref, out in zip(_run(src, feeds), _run(result.output, feeds), strict=True):
        assert ref.shape == out.shape
        assert _cosine(ref, out) >= COSINE_MIN[method]


FORMS: dict[str, Callable[[], onnx.ModelProto]] = {
    "initializers": qm.mlp,
    "constant_nodes": lambda: qm.mlp(constants=True),
    "constants_in_if": qm.constants_in_if,
    "identity_weights": qm.identity_weights,
    "gemm": qm.gemm_mlp,
    "if_outer_scope": qm.if_outer_scope,
    "loop_if_outer_scope": qm.nested_outer_scope,
    "lstm_in_if": qm.lstm_in_if,
    "cnn": qm.cnn,
}


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("forms")
    paths = {name: _save(build(), folder / f"{name}.onnx") for name, build in FORMS.items()}
    paths["external_data"] = _save(qm.mlp(seed=3), folder / "external.onnx", external=True)
    return paths


@pytest.mark.parametrize("form", [*FORMS, "external_data"])
def test_dynamic_int8_shrinks_every_storage_form(
    forms: dict[str, Path], form: str, tmp_path: Path
) -> None:
    src = forms[form]
    before = {p: _sha256(p) for p in src.parent.glob(src.name + "*")}
    result = quantize_model(src, tmp_path / "q.onnx")
    _check_variant(src, result, QuantMethod.DYNAMIC)
    assert result.size_ratio <= INT8_RATIO_MAX
    # Nothing large stays float: the quantizer or the DequantizeLinear fallback got every weight.
    assert all(t.num_elements < 4096 for t in result.float_tensors), result.float_tensors
    assert analyze(result.output).parameters.total == analyze(src).parameters.total
    assert {p: _sha256(p) for p in src.parent.glob(src.name + "*")} == before


def test_constant_node_weights_are_lifted(forms: dict[str, Path], tmp_path: Path) -> None:
    result = quantize_model(forms["constant_nodes"], tmp_path / "q.onnx")
    assert result.lifted_constants == 8
    assert result.quantized_ops.get("MatMulInteger") == 4
    assert not result.fallback_tensors


def test_weights_behind_identity_are_quantized_in_place(
    forms: dict[str, Path], tmp_path: Path
) -> None:
    result = quantize_model(forms["identity_weights"], tmp_path / "q.onnx")
    assert result.bypassed_identities == 1
    assert result.quantized_ops.get("MatMulInteger") == 2
    assert not result.fallback_tensors
    branches = quantize_model(forms["constants_in_if"], tmp_path / "b.onnx")
    assert branches.lifted_constants == 2 and branches.quantized_ops.get("MatMulInteger") == 2


@pytest.mark.parametrize("method", [QuantMethod.DYNAMIC, QuantMethod.STATIC, QuantMethod.INT4])
def test_a_tied_embedding_is_stored_once(method: QuantMethod, tmp_path: Path) -> None:
    """Gather + transposed LM head on one table: no second copy (int4 skips the shared Gather)."""
    src = _save(qm.tied_embedding(), tmp_path / "tied.onnx")
    result = quantize_model(src, tmp_path / "q.onnx", method=method, calibration_samples=2)
    assert result.size_ratio <= 0.26
    assert not result.float_tensors
    assert analyze(result.output).parameters.total == 4000 * 256


def test_lstm_reading_outer_scope_weights_falls_back_to_dequantize_linear(
    forms: dict[str, Path], tmp_path: Path
) -> None:
    result = quantize_model(forms["lstm_in_if"], tmp_path / "q.onnx")
    # W and R (rank 3, 64K+ elements) are converted; the biases B (2048 elements) stay float.
    assert {t.name for t in result.fallback_tensors} == {"W", "R", "W_b", "R_b"}
    assert {t.name for t in result.float_tensors} == {"B", "B_b"}
    assert sum(t.float_bytes for t in result.fallback_tensors) == 4 * sum(
        t.int8_bytes for t in result.fallback_tensors
    )
    assert any("DequantizeLinear" in w and "every run" in w for w in result.warnings)
    model = onnx.load(str(result.output))
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert {n.output[0] for n in dq} == {"W", "R", "W_b", "R_b"}


def test_without_the_fallback_unreachable_weights_stay_float_and_say_why(
    forms: dict[str, Path], tmp_path: Path
) -> None:
    result = quantize_model(forms["lstm_in_if"], tmp_path / "q.onnx", fallback=False)
    assert not result.fallback_tensors and not result.is_smaller
    by_name = {t.name: t for t in result.float_tensors}
    assert set(by_name) == {"W", "R", "B", "W_b", "R_b", "B_b"}
    assert "outer scope" in by_name["W"].reason and "--no-fallback" in by_name["W"].reason
    assert any("not smaller than the input" in w for w in result.warnings)


@pytest.mark.parametrize("method", [QuantMethod.STATIC, QuantMethod.FP16, QuantMethod.INT4])
@pytest.mark.parametrize("form", ["initializers", "loop_if_outer_scope", "cnn"])
def test_other_methods(
    forms: dict[str, Path], form: str, method: QuantMethod, tmp_path: Path
) -> None:
    src = forms[form]
    result = quantize_model(src, tmp_path / "q.onnx", method=method, calibration_samples=4)
    _check_variant(src, result, method)
    # Every weight is still there, whatever it is stored as (INT8, FLOAT16, packed UINT4).
    assert analyze(result.output).parameters.total == analyze(src).parameters.total
    if method is QuantMethod.FP16:
        assert FP16_RATIO[0] <= result.size_ratio <= FP16_RATIO[1]
        assert not result.float_tensors
        # io types kept: same FLOAT inputs as the source
        assert onnx.load(str(result.output)).graph.input[0].type.tensor_type.elem_type == 1
    elif method is QuantMethod.STATIC:
        assert result.size_ratio <= INT8_RATIO_MAX
        assert result.quantized_ops.get("QuantizeLinear", 0) > 0 or result.fallback_tensors
    else:
        assert result.size_ratio <= INT8_RATIO_MAX
        if form != "cnn":
            assert result.quantized_ops.get("MatMulNBits", 0) >= 2
            assert result.size_ratio <= 0.2


def test_fp16_io_types_changed_when_asked(forms: dict[str, Path], tmp_path: Path) -> None:
    result = quantize_model(
        forms["initializers"], tmp_path / "q.onnx", method=QuantMethod.FP16, keep_io_types=False
    )
    graph = onnx.load(str(result.output)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_static_calibration_from_npz(forms: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((5, 2, 512)).astype(np.float32))
    result = quantize_model(
        forms["initializers"], tmp_path / "q.onnx", method=QuantMethod.STATIC, calibration=data
    )
    _check_variant(forms["initializers"], result, QuantMethod.STATIC)
    with pytest.raises(Exception, match="no calibration data for input"):
        np.savez(tmp_path / "bad.npz", y=np.zeros((1, 512), np.float32))
        quantize_model(
            forms["initializers"],
            tmp_path / "q2.onnx",
            method=QuantMethod.STATIC,
            calibration=tmp_path / "bad.npz",
        )


def test_recommendation_follows_the_graph(forms: dict[str, Path], tmp_path: Path) -> None:
    cnn = quantize_model(
        forms["cnn"], tmp_path / "cnn.onnx", method=QuantMethod.AUTO, calibration_samples=2
    )
    assert cnn.method is QuantMethod.STATIC and cnn.recommendation.method is QuantMethod.STATIC
    assert cnn.recommendation.makeup.conv_bytes > 0.9 * cnn.recommendation.makeup.total_bytes
    mlp = quantize_model(forms["initializers"], tmp_path / "mlp.onnx", method=QuantMethod.AUTO)
    assert mlp.method is QuantMethod.DYNAMIC
    dyn = quantize_model(forms["cnn"], tmp_path / "cnn_dyn.onnx")
    assert any("ConvInteger" in w for w in dyn.warnings)


def test_op_types_restrict_and_report_what_stays_float(
    forms: dict[str, Path], tmp_path: Path
) -> None:
    result = quantize_model(forms["initializers"], tmp_path / "q.onnx", op_types=["Conv"])
    assert result.quantized_ops == {}
    assert not result.is_smaller
    assert any("not smaller" in w for w in result.warnings)
    assert len([t for t in result.float_tensors if t.consumers == ("MatMul",)]) == 4
    assert all("op types asked for" in t.reason for t in result.float_tensors)


def test_already_quantized_is_reported(forms: dict[str, Path], tmp_path: Path) -> None:
    first = quantize_model(forms["initializers"], tmp_path / "q.onnx")
    with pytest.raises(AlreadyQuantizedError, match="already quantized"):
        quantize_model(first.output, tmp_path / "qq.onnx")
    half = quantize_model(forms["initializers"], tmp_path / "h.onnx", method=QuantMethod.FP16)
    with pytest.raises(AlreadyQuantizedError, match="FLOAT16"):
        quantize_model(half.output, tmp_path / "hh.onnx", method=QuantMethod.FP16)
    assert not (tmp_path / "qq.onnx").exists()


def test_int8_of_a_float16_model_is_refused_cleanly(forms: dict[str, Path], tmp_path: Path) -> None:
    half = quantize_model(forms["initializers"], tmp_path / "h.onnx", method=QuantMethod.FP16)
    with pytest.raises(UnsupportedModelError, match="FLOAT16: onnxruntime's int8 quantizer"):
        quantize_model(half.output, tmp_path / "h8.onnx")
    int4 = quantize_model(half.output, tmp_path / "h4.onnx", method=QuantMethod.INT4)
    assert int4.quantized_ops.get("MatMulNBits") == 4 and int4.is_smaller


def test_never_writes_over_the_input(forms: dict[str, Path], tmp_path: Path) -> None:
    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx")
    digest = _sha256(src)
    with pytest.raises(OutputPathError, match="overwrite the input"):
        quantize_model(src, src)
    os.link(src, tmp_path / "hard.onnx")
    with pytest.raises(OutputPathError, match="overwrite the input"):
        quantize_model(src, tmp_path / "hard.onnx")
    (tmp_path / "soft.onnx").symlink_to(src)
    with pytest.raises(OutputPathError, match="overwrite the input"):
        quantize_model(src, tmp_path / "soft.onnx")
    with pytest.raises(OutputPathError, match="overwrite the input"):
        quantize_model(src, tmp_path / "sub" / ".." / "m.onnx")
    assert _sha256(src) == digest


def test_output_next_to_external_data_of_the_input_is_refused(tmp_path: Path) -> None:
    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx", external=True)
    (tmp_path / "other").mkdir()
    # Writing "m.onnx.data" as the variant itself would clobber the input's tensors.
    with pytest.raises(OutputPathError, match="overwrite the input"):
        quantize_model(src, tmp_path / "m.onnx.data")


def test_unwritable_destinations(tmp_path: Path) -> None:
    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx")
    with pytest.raises(OutputPathError, match="does not exist"):
        quantize_model(src, tmp_path / "missing" / "q.onnx")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError):
        quantize_model(src, tmp_path / "afile" / "q.onnx")
    with pytest.raises(OutputPathError, match="is a directory"):
        quantize_model(src, tmp_path)


def test_failure_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import converters.quantize as module

    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("quantizer exploded")

    monkeypatch.setattr(module, "_run_quantizer", boom)
    with pytest.raises(ConversionError, match="quantizer exploded"):
        quantize_model(src, out_dir / "q.onnx")
    assert list(out_dir.iterdir()) == []


def test_cli_quantize_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx")
    runner = CliRunner()
    result = runner.invoke(app, ["quantize", str(src), "-o", str(src)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "overwrite the input" in result.stderr
    result = runner.invoke(app, ["quantize", str(src), "-o", str(tmp_path / "nope" / "q.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_cli_quantize_json(tmp_path: Path) -> None:
    import json

    src = _save(qm.mlp(), tmp_path / "m.onnx")
    result = CliRunner().invoke(
        app,
        [
            "quantize",
            str(src),
            "-o",
            str(tmp_path / "q.onnx"),
            "--method",
            "fp16",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "fp16"
    assert data["source_bytes"] == _disk_bytes(src)
    assert data["output_bytes"] == _disk_bytes(tmp_path / "q.onnx")
    assert data["recommendation"]["method"] == "dynamic"


def test_large_outputs_go_to_external_data(
    forms: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the protobuf limit (lowered here to 0 bytes) the variant's tensors go to <out>.data."""
    import converters.quantize as module

    monkeypatch.setattr(module, "_EXTERNAL_DATA_BYTES", 0)
    src = forms["external_data"]
    result = quantize_model(src, tmp_path / "q.onnx")
    assert result.external_data
    data = tmp_path / "q.onnx.data"
    assert data.stat().st_size > 1_000_000 and (tmp_path / "q.onnx").stat().st_size < 10_000
    _check_variant(src, result, QuantMethod.DYNAMIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx", "q.onnx.data"]


def _export_torch(kind: str, folder: Path) -> tuple[Path, int, dict[str, np.ndarray], np.ndarray]:
    """A tiny ResNet or BERT from a transformers config, exported to ONNX.

    Returns the path, torch's parameter count, the inputs and torch's output on them.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "resnet":
        config = transformers.ResNetConfig(
            embedding_size=32,
            hidden_sizes=[64, 128, 256],
            depths=[1, 1, 1],
            layer_type="basic",
            num_labels=10,
        )
        net = transformers.ResNetForImageClassification(config).eval()
        feeds = {
            "pixel_values": np.random.default_rng(1)
            .standard_normal((1, 3, 32, 32))
            .astype(np.float32)
        }

        def forward(pixel_values):  # type: ignore[no-untyped-def]
            return net(pixel_values=pixel_values).logits
    else:
        config = transformers.BertConfig(
            vocab_size=5000,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=512,
            max_position_embeddings=64,
            num_labels=3,
        )
        net = transformers.BertForSequenceClassification(config).eval()
        rng = np.random.default_rng(1)
        feeds = {
            "input_ids": rng.integers(0, 5000, (1, 16)).astype(np.int64),
            "attention_mask": np.ones((1, 16), np.int64),
        }

        def forward(input_ids, attention_mask):  # type: ignore[no-untyped-def]
            return net(input_ids=input_ids, attention_mask=attention_mask).logits

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *args):  # type: ignore[no-untyped-def]
            return forward(*args)

    args = tuple(torch.from_numpy(v) for v in feeds.values())
    wrapper = Wrapper().eval()
    with torch.no_grad():
        expected = wrapper(*args).numpy()
    path = folder / f"{kind}.onnx"
    torch.onnx.export(
        wrapper,
        args,
        str(path),
        input_names=list(feeds),
        output_names=["logits"],
        dynamo=False,
        opset_version=17,
    )
    return path, sum(p.numel() for p in net.parameters()), feeds, expected


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["resnet", "bert"])
def test_models_built_from_configs(kind: str, tmp_path: Path) -> None:
    """ResNet (Conv-heavy, 1.2M parameters) and BERT (MatMul + embeddings, 1.06M parameters)."""
    src, torch_parameters, feeds, expected = _export_torch(kind, tmp_path)
    assert torch_parameters >= 1_000_000
    for method in (QuantMethod.DYNAMIC, QuantMethod.STATIC, QuantMethod.FP16):
        result = quantize_model(
            src, tmp_path / f"{kind}.{method.value}.onnx", method=method, calibration_samples=4
        )
        got = _run(result.output, feeds)[0]
        # Oracle: torch's own output on the same inputs.
        assert _cosine(expected.astype(np.float64), got) >= COSINE_MIN[method]
        assert np.argmax(expected) == np.argmax(got)
        if method is QuantMethod.FP16:
            assert FP16_RATIO[0] <= result.size_ratio <= FP16_RATIO[1]
        else:
            assert result.size_ratio <= INT8_RATIO_MAX
    auto = quantize_model(
        src, tmp_path / f"{kind}.auto.onnx", method=QuantMethod.AUTO, calibration_samples=2
    )
    assert auto.method is (QuantMethod.STATIC if kind == "resnet" else QuantMethod.DYNAMIC)


def test_framework_sources_are_converted_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quantize_source exports a framework source to <out>.fp32.onnx, then quantizes that file."""
    import converters.quantize as module
    from converters.quantize import quantize_source
    from converters.sources import Source, SourceKind

    calls: list[tuple[str, Path]] = []

    def convert_source(source: Source, out_path: Path, **_: object) -> None:
        calls.append((source.text, Path(out_path)))
        onnx.save(qm.mlp(), str(out_path))

    monkeypatch.setattr(module, "detect_source", lambda arg: Source(SourceKind.HF_FOLDER, arg, arg))
    monkeypatch.setattr(module, "convert_source", convert_source)
    result = quantize_source("my-model-folder", tmp_path / "net.int8.onnx")
    assert calls == [("my-model-folder", tmp_path / "net.int8.fp32.onnx")]
    assert result.source == tmp_path / "net.int8.fp32.onnx"
    assert result.converted_from == "my-model-folder"
    assert result.size_ratio <= INT8_RATIO_MAX


def test_sources_that_do_not_exist_are_a_clean_error(tmp_path: Path) -> None:
    from converters.quantize import quantize_source
    from graph_analysis.errors import SourceError

    with pytest.raises(SourceError):
        quantize_source(str(tmp_path / "net.py"), tmp_path / "q.onnx")
    result = CliRunner().invoke(
        app, ["quantize", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "q.onnx")]
    )
    assert result.exit_code == 2 and result.stderr.startswith("modelsize: ")


def test_quantize_and_compare_leave_frameworks_unimported(tmp_path: Path) -> None:
    """The installed entry point, in a subprocess: quantizing an .onnx imports no framework."""
    import subprocess
    import sys

    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx")
    code = (
        "import sys\n"
        "from cli.app import main\n"
        f"sys.argv = ['modelsize', 'quantize', {str(src)!r}, '-o', {str(tmp_path / 'q.onnx')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'transformers', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "q.onnx").exists()


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    scale=st.floats(1e-4, 1e3),
    axis_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fallback_round_trip_is_within_half_a_step(
    shape: list[int], scale: float, axis_last: bool, seed: int
) -> None:
    """DequantizeLinear(stored INT8) differs from the float weight by at most half a quantization
    step of its channel, whatever the shape, magnitude and axis; zero channels stay exactly zero."""
    from converters._graph_prep import dequantize_linear_fallback

    weights = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    weights[(0,) * (len(shape) - 1)] = 0.0  # one all-zero row along the last axis
    axis = len(shape) - 1 if axis_last else 0
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    assert dequantize_linear_fallback(model, {"w"}, axes={"w": axis}) == ["w"]
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert stored["w_int8"].dtype == np.int8 and "w" not in stored
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    restored = session.run(None, {})[0]
    moved = np.moveaxis(np.abs(weights), axis, 0).reshape(shape[axis], -1)
    step = np.where(moved.max(axis=1) > 0, moved.max(axis=1) / 127.0, 1.0)
    bound = np.moveaxis(
        np.broadcast_to(step[:, None], moved.shape).reshape(
            [shape[axis]] + [s for i, s in enumerate(shape) if i != axis]
        ),
        0,
        axis,
    )
    assert np.all(np.abs(restored - weights) <= bound / 2 * (1 + 1e-5) + 1e-30)
    assert np.all(restored[weights == 0] == 0)


def test_cli_quantize_with_compare_and_op_types(tmp_path: Path) -> None:
    import json

    src = _save(qm.cnn(), tmp_path / "cnn.onnx")
    result = CliRunner().invoke(
        app,
        ["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--method", "static",
         "--op-types", "Conv,Gemm", "--per-channel", "--calibration-samples", "2",
         "--compare", "--runs", "1", "-f", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["quantization"]["per_channel"] is True
    assert data["models"][0]["path"] == str(src) and data["models"][0]["drift"] is None
    assert data["models"][1]["drift"]["cosine_similarity"] >= 0.99
    assert data["models"][1]["size"]["on_disk_bytes"] == (tmp_path / "q.onnx").stat().st_size


def test_a_failed_write_is_a_clean_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full at the final move (simulated: running as root defeats permission checks)."""
    import errno

    import converters.quantize as module

    src = _save(qm.mlp(width=64, layers=1), tmp_path / "m.onnx")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module.os, "replace", full)
    with pytest.raises(OutputPathError, match="No space left on device"):
        quantize_model(src, out_dir / "q.onnx")
    assert list(out_dir.iterdir()) == []


def test_options_a_method_ignores_are_reported(forms: dict[str, Path], tmp_path: Path) -> None:
    result = quantize_model(
        forms["initializers"], tmp_path / "q.onnx", method=QuantMethod.FP16,
        per_channel=True, calibration=tmp_path / "unused.npz",
    )  # fmt: skip
    assert any("--calibration is only used by --method static" in w for w in result.warnings)
    assert any("--per-channel does not apply to fp16" in w for w in result.warnings)


def _needs_binding(tmp_path: Path) -> Path:
    """A Reshape to a fixed size: generated inputs with the dynamic dim at 1 cannot run it.

    Built the way streaming models and detectors are: a dynamic input dim that the graph
    reshapes to a fixed size, so only some values of it are valid (here 128).
    """
    weights = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Reshape", ["x", "shape"], ["x2"]),
            onnx.helper.make_node("MatMul", ["x2", "w"], ["y"]),
        ],
        "needs_binding",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n"])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 64])],
        [
            onnx.numpy_helper.from_array(weights, "w"),
            onnx.numpy_helper.from_array(np.array([2, 64], np.int64), "shape"),
        ],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])
    return _save(model, tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("method", "op"),
    [
        (QuantMethod.DYNAMIC, "MatMulInteger"),
        (QuantMethod.FP16, None),
        (QuantMethod.INT4, "MatMulNBits"),
    ],
)
def test_methods_without_data_write_an_unverified_variant_when_inputs_cannot_run(
    tmp_path: Path, method: QuantMethod, op: str | None
) -> None:
    src = _needs_binding(tmp_path)
    result = quantize_model(src, tmp_path / "q.onnx", method=method)
    assert result.verified is False
    assert "do not run the original model either" in result.verified_reason
    assert "x: FLOAT[1]" in result.verified_reason and "--input-shape" in result.verified_reason
    assert any(w.startswith("NOT VERIFIED") for w in result.warnings)
    if op is not None:
        assert result.quantized_ops.get(op) == 1
    # The variant is good: on inputs the model can take, it agrees with the float model.
    feeds = {"x": np.random.default_rng(2).standard_normal(128).astype(np.float32)}
    (ref,) = _run(src, feeds)
    (out,) = _run(result.output, feeds)
    assert _cosine(ref, out) >= COSINE_MIN[method]
    bound = quantize_model(
        src, tmp_path / "b.onnx", method=method, bindings=parse_bindings(["x=128"])
    )
    assert bound.verified is True
    assert bound.verified_reason == "ran once in onnxruntime on generated inputs (x: FLOAT[128])"


def test_static_calibration_refuses_inputs_that_cannot_run(tmp_path: Path) -> None:
    src = _needs_binding(tmp_path)
    with pytest.raises(ShapeBindingError, match="calibrates on inputs that run the model"):
        quantize_model(src, tmp_path / "q.onnx", method=QuantMethod.STATIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    bound = quantize_model(
        src,
        tmp_path / "q.onnx",
        method=QuantMethod.STATIC,
        calibration_samples=2,
        bindings=parse_bindings(["x=128"]),
    )
    assert bound.verified is True


def test_bindings_that_do_not_fit_are_still_refused(tmp_path: Path) -> None:
    src = _needs_binding(tmp_path)
    with pytest.raises(ShapeBindingError, match="nope"):
        quantize_model(src, tmp_path / "q.onnx", bindings=parse_bindings(["nope=3"]))
    assert not (tmp_path / "q.onnx").exists()


def test_cli_says_not_verified_on_stderr_and_in_json(tmp_path: Path) -> None:
    import json

    src = _needs_binding(tmp_path)
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(app, ["quantize", str(src), "-o", str(out), "-f", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verified"] is False
    assert "do not run the original model either" in data["verified_reason"]
    assert any(w.startswith("NOT VERIFIED") for w in data["warnings"])
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("modelsize: warning: ") for line in lines)
    assert any("NOT VERIFIED" in line for line in lines)
    table = CliRunner().invoke(app, ["quantize", str(src), "-o", str(out)])
    assert table.exit_code == 0
    assert "NOT VERIFIED: loads in onnxruntime but was not run" in " ".join(table.stdout.split())
    assert "warning" not in table.stdout
    verified = CliRunner().invoke(
        app, ["quantize", str(src), "-o", str(out), "--input-shape", "x=128", "-f", "json"]
    )
    assert verified.exit_code == 0 and verified.stderr == ""
    assert json.loads(verified.stdout)["verified"] is True


def test_cli_compare_of_an_unverifiable_variant_is_refused(tmp_path: Path) -> None:
    src = _needs_binding(tmp_path)
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(app, ["quantize", str(src), "-o", str(out), "--compare"])
    assert result.exit_code == 2
    assert result.stdout == ""
    errors = [
        line for line in result.stderr.splitlines() if not line.startswith("modelsize: warning")
    ]
    assert len(errors) == 1
    assert errors[0].startswith(f"modelsize: {src}: {out} written but not compared")
    assert out.exists()


GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize(
    ("form", "args", "golden"),
    [
        ("lstm_in_if", [], "quantize_lstm_in_if.table.txt"),
        ("cnn", ["--format", "json"], "quantize_cnn.json"),
    ],
)
def test_golden_quantize_outputs(
    forms: dict[str, Path],
    form: str,
    args: list[str],
    golden: str,
    update_golden: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The human table and the JSON, paths normalised (update with pytest --update-golden)."""
    monkeypatch.setenv("COLUMNS", "120")
    out = tmp_path / "variant.onnx"
    result = CliRunner().invoke(app, ["quantize", str(forms[form]), "-o", str(out), *args])
    assert result.exit_code == 0, result.stderr
    # Warnings go to stderr, one line each: golden files for both streams (<golden>.stderr).
    assert all(line.startswith("modelsize: warning: ") for line in result.stderr.splitlines())
    for raw, path in (
        (result.stdout, GOLDEN / golden),
        (result.stderr, GOLDEN / f"{golden}.stderr"),
    ):
        text = raw.replace(str(forms[form]), "<input>").replace(str(out), "<output>")
        if update_golden:
            path.write_text(text)
        assert path.exists(), f"run pytest --update-golden to create {path}"
        assert text == path.read_text()


def test_a_model_onnxruntime_cannot_load_is_refused_as_such(tmp_path: Path) -> None:
    model = qm.mlp(width=64, layers=1)
    model.graph.node.append(
        onnx.helper.make_node("Mystery", ["r0"], ["extra"], domain="com.example")
    )
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    src = _save(model, tmp_path / "custom.onnx")
    with pytest.raises(UnsupportedModelError, match="cannot load the model itself"):
        quantize_model(src, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()
