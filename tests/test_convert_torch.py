"""PyTorch sources to ONNX: framework counts exact, graph counts equal or reconciled to the element.

Oracle: torch itself, ``sum(p.numel() for p in model.parameters())`` (unique, tied once).
One conversion per module-scoped fixture (each runs a child process, ~5-10 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from converters.sources import (  # noqa: E402
    SourceInspection,
    SourceKind,
    convert_source,
    detect_source,
    inspect_source,
)
from graph_analysis.bindings import parse_bindings  # noqa: E402
from graph_analysis.framework import Cause  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed_models.py"

BN_MODEL = """
import torch.nn as nn


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.ln1 = nn.LayerNorm(8)
        self.ln2 = nn.LayerNorm(8)  # same content as ln1 at init: must not be merged
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.bn(self.conv(x)).mean((2, 3))
        return self.fc(self.ln2(self.ln1(y)))
"""


def _oracle(model: Any) -> tuple[int, int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers())
    return total, trainable, buffers


def _seed(name: str) -> Any:
    import fixtures.seed_models as seed

    return getattr(seed, name)()


def _check_exact(ins: SourceInspection, total: int, trainable: int) -> None:
    assert ins.framework is not None and ins.reconciliation is not None
    assert ins.framework.totals.total == total
    assert ins.framework.totals.trainable == trainable
    assert ins.framework.totals.non_trainable == total - trainable
    assert ins.report.parameters.total == total
    assert ins.reconciliation.entries == ()


@pytest.fixture(scope="module")
def simple() -> SourceInspection:
    return inspect_source(f"{SEED}:SimpleModel")


@pytest.fixture(scope="module")
def frozen_complex() -> SourceInspection:
    return inspect_source(
        f"{SEED}:frozen_conv_complex_model",
        bindings=parse_bindings(["1,3,32,32"]),
        dynamic_axes=["batch"],
    )


def test_seed_simple_model_has_241_parameters(simple: SourceInspection) -> None:
    assert _oracle(_seed("SimpleModel"))[0] == 241
    _check_exact(simple, 241, 241)
    assert simple.conversion is not None
    assert simple.conversion.exporter.startswith("torch.onnx.export(dynamo=True")
    assert simple.conversion.fallback_reason is None
    assert simple.conversion.inputs[0].dims == (1, 10)  # guessed from the first Linear


def test_seed_complex_model_frozen_conv(frozen_complex: SourceInspection) -> None:
    total, trainable, _ = _oracle(_seed("frozen_conv_complex_model"))
    assert (total, trainable) == (493_298, 492_850)
    _check_exact(frozen_complex, total, trainable)
    info = frozen_complex.framework
    assert info is not None
    assert info.initializers["conv1.weight"].trainable is False
    assert info.initializers["fc1.weight"].trainable is True
    # The graph's own layer tree and tensor list carry the framework's trainable flags.
    layers = {r.key: (r.num_parameters, r.frozen_parameters) for r in frozen_complex.report.layers}
    assert layers == {"conv1": (448, 448), "fc1": (491_640, 0), "fc2": (1_210, 0)}
    trainable = {
        t.name: t.trainable for t in frozen_complex.report.tensors if t.role.value == "parameter"
    }
    assert trainable["conv1.bias"] is False
    assert trainable["fc2.weight"] is True
    # --dynamic batch keeps the first axis symbolic.
    assert frozen_complex.conversion is not None
    assert frozen_complex.conversion.inputs[0].dynamic == {0: "batch"}


@pytest.fixture(scope="module")
def conv_bn(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceInspection, Any]:
    folder = tmp_path_factory.mktemp("convbn")
    (folder / "convbn.py").write_text(BN_MODEL)
    namespace: dict[str, Any] = {}
    exec(BN_MODEL, namespace)
    ins = inspect_source(f"{folder / 'convbn.py'}:ConvBN", bindings=parse_bindings(["1,3,8,8"]))
    return ins, namespace["ConvBN"]()


def test_batchnorm_is_not_folded_and_layernorms_not_merged(
    conv_bn: tuple[SourceInspection, Any],
) -> None:
    ins, model = conv_bn
    total, _, buffers = _oracle(model)
    assert ins.framework is not None and ins.reconciliation is not None
    assert (ins.framework.totals.total, ins.framework.totals.buffers) == (total, buffers)
    # The graph counts BatchNorm's running mean/var (2 x 8) on top of parameters();
    # num_batches_tracked is not exported.
    assert ins.report.parameters.total == total + 16
    (entry,) = ins.reconciliation.entries
    assert entry.cause is Cause.BUFFER_IN_GRAPH
    assert entry.tensors == ("bn.running_mean", "bn.running_var")
    assert entry.delta_elements == 16
    names = {t.name for t in ins.report.tensors}
    assert {"ln1.weight", "ln2.weight", "bn.weight", "conv.weight"} <= names


def test_torchscript_archive(tmp_path: Path) -> None:
    model = _seed("SimpleModel")
    path = tmp_path / "simple_ts.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    assert detect_source(str(path)).kind is SourceKind.TORCHSCRIPT
    ins = inspect_source(str(path))
    _check_exact(ins, 241, 241)
    assert ins.conversion is not None
    assert "dynamo=False" in ins.conversion.exporter and "PRESERVE" in ins.conversion.exporter
    assert ins.conversion.fallback_reason  # says why the dynamo exporter was not used


def test_torchscript_exporter_writes_a_tied_weight_once(tmp_path: Path) -> None:
    """Without constant folding the TorchScript exporter keeps one initializer for a tied weight."""
    import importlib.util

    (tmp_path / "tied_src.py").write_text(TIED_MODEL)  # torch.jit.script reads the source
    spec = importlib.util.spec_from_file_location("tied_src", tmp_path / "tied_src.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Tied()
    path = tmp_path / "tied_ts.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    ins = inspect_source(str(path))
    _check_exact(ins, 800, 800)
    assert [t.name for t in ins.report.tensors if t.role == "parameter"] == ["emb.weight"]


def test_torch_export_program(tmp_path: Path) -> None:
    model = _seed("ComplexModel").eval()
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    path = tmp_path / "complex.pt2"
    torch.export.save(program, str(path))
    assert detect_source(str(path)).kind is SourceKind.TORCH_EXPORT
    ins = inspect_source(str(path))  # example inputs stored in the archive
    _check_exact(ins, 493_298, 493_298)


def test_state_dict_checkpoint_with_code(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = _seed("SimpleModel")
    ckpt = tmp_path / "simple.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    assert detect_source(str(ckpt)).kind is SourceKind.TORCH_CHECKPOINT
    out = tmp_path / "simple.onnx"
    result = convert_source(detect_source(f"{SEED}:SimpleModel"), out, weights=ckpt)
    assert result.framework.total == 241
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    assert (weights["fc1.weight"] == model.fc1.weight.detach().numpy()).all()


TIED_MODEL = """
import torch.nn as nn


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight  # tied: one parameter, two names

    def forward(self, ids):
        return self.head(self.emb(ids))
"""


def test_exporter_written_transposed_copy_is_counted_once(tmp_path: Path) -> None:
    """The TorchScript exporter with constant folding writes a tied embedding twice (transposed):
    the recorded mapping makes the analysis count it once and show the copy as duplicate storage."""
    from converters._common import match_initializers
    from converters._onnx_io import onnx_initializer_arrays, write_onnx_with_metadata
    from converters.from_torch import _collect_tensors
    from graph_analysis.framework import FrameworkInfo, FrameworkTensor

    namespace: dict[str, Any] = {}
    exec(TIED_MODEL, namespace)
    model = namespace["Tied"]().eval()
    raw = tmp_path / "raw.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 4, dtype=torch.long),),
        str(raw),
        dynamo=False,
        do_constant_folding=True,
    )
    tensors, totals = _collect_tensors(model)
    assert totals.total == _oracle(model)[0] == 800
    mapping = match_initializers(onnx_initializer_arrays(raw), tensors)
    assert len(mapping) == 2 and {o.framework_name for o in mapping.values()} == {"emb.weight"}
    info = FrameworkInfo(
        "torch",
        torch.__version__,
        "test",
        totals,
        tuple(
            FrameworkTensor(t.name, t.kind, t.trainable, t.num_elements, t.module) for t in tensors
        ),
        mapping,
    )
    out = tmp_path / "tied.onnx"
    write_onnx_with_metadata(raw, out, info)
    ins = inspect_source(str(out))
    assert ins.report.parameters.total == 800
    assert ins.reconciliation is not None
    (entry,) = ins.reconciliation.entries
    assert entry.cause is Cause.DUPLICATE_STORAGE
    assert (entry.elements, entry.nbytes, entry.delta_elements) == (800, 3200, 0)
    assert ins.report.size.duplicate_bytes == 3200


def test_cli_convert_then_inspect_the_onnx_file(tmp_path: Path) -> None:
    """`convert` records the framework counts in the file; `inspect OUT.onnx` reads them back."""
    import json

    from typer.testing import CliRunner

    from cli.app import app

    out = tmp_path / "complex.onnx"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "convert",
            f"{SEED}:frozen_conv_complex_model",
            "-o",
            str(out),
            "--input-shape",
            "1,3,32,32",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    conversion = json.loads(result.stdout)
    assert conversion["framework"]["total"] == 493_298
    assert conversion["framework"]["trainable"] == 492_850
    assert conversion["inputs"] == [
        {"name": "x", "dims": [1, 3, 32, 32], "dtype": "FLOAT", "dynamic": {}}
    ]
    result = runner.invoke(app, ["inspect", str(out), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["parameters"]["total"] == 493_298
    assert data["framework"]["name"] == "torch"
    assert data["framework"]["trainable"] == 492_850
    assert data["framework"]["non_trainable"] == 448
    assert data["reconciliation"] == []
    # Rebuilt from the record's tensors: no forward ran now, so no output shapes.
    assert data["framework"]["layers"][0] == {
        "name": "conv1",
        "type": "Conv2d",
        "depth": 1,
        "parameters": 448,
        "trainable": 0,
        "non_trainable": 448,
        "frozen": 448,
        "buffers": 0,
        "output_shape": None,
    }
    assert next(iter(data)) == "framework"  # the framework's answer comes first
    assert "conversion" not in data  # an ONNX file: nothing converted now


def test_fallback_to_torchscript_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from converters._common import InputSpec
    from converters.from_torch import _export

    real_export = torch.onnx.export

    def dynamo_breaks(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("dynamo"):
            raise RuntimeError("data-dependent control flow\nmore lines")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_breaks)
    model = _seed("SimpleModel").eval()
    spec = InputSpec("x", (1, 10), "FLOAT", {0: "batch"})
    path = tmp_path / "fallback.onnx"
    exporter, reason = _export(model, {"x": torch.randn(1, 10)}, [spec], path, positional=False)
    assert exporter == "torch.onnx.export(dynamo=False, do_constant_folding=False, PRESERVE)"
    assert reason == "dynamo exporter failed: RuntimeError: data-dependent control flow"
    import onnx

    graph = onnx.load(str(path)).graph
    assert sorted(i.name for i in graph.initializer) == [
        "fc1.bias",
        "fc1.weight",
        "fc2.bias",
        "fc2.weight",
    ]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


class _RootDropout(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(10, 10)
        self.ln1 = torch.nn.LayerNorm(10)
        self.ln2 = torch.nn.LayerNorm(10)  # equal to ln1: merged by a plain eval export

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln2(self.ln1(self.fc(x)))
        return torch.nn.functional.dropout(y, 0.5, self.training)  # the root reads self.training


def test_torchscript_fallback_keeps_equal_tensors_unless_the_root_reads_training(
    tmp_path: Path,
) -> None:
    """PRESERVE export (root flagged training) keeps ln1/ln2 apart; when the root's own forward
    depends on training, the outputs differ and the plain eval export is used instead."""
    import onnx

    from converters._common import InputSpec
    from converters.from_torch import _export

    spec = InputSpec("x", (2, 10), "FLOAT")
    model = _RootDropout().eval()
    script = torch.jit.script(model)  # a ScriptModule goes straight to the TorchScript exporter
    path = tmp_path / "root.onnx"
    exporter, _ = _export(script, {"x": torch.randn(2, 10)}, [spec], path, positional=True)
    assert "PRESERVE" not in exporter
    names = {i.name for i in onnx.load(str(path)).graph.initializer}
    assert "ln2.weight" not in names  # merged with ln1.weight: reported as identical_content


def test_external_data_output_is_replaced_not_appended(tmp_path: Path) -> None:
    from converters._onnx_io import write_onnx_with_metadata
    from converters.from_torch import _collect_tensors
    from graph_analysis import analyze
    from graph_analysis.framework import FrameworkInfo, read_framework_info

    model = _seed("SimpleModel").eval()
    raw = tmp_path / "raw.onnx"
    torch.onnx.export(model, (torch.randn(1, 10),), str(raw), dynamo=False)
    _, totals = _collect_tensors(model)
    info = FrameworkInfo("torch", torch.__version__, "test", totals)
    out = tmp_path / "big.onnx"
    data = tmp_path / "big.onnx.data"
    for _ in range(2):
        write_onnx_with_metadata(raw, out, info, external_data_threshold=0)
        assert data.stat().st_size == 241 * 4
    report = analyze(out)
    assert report.parameters.total == 241
    assert report.size.external_data_bytes == 241 * 4
    assert read_framework_info(report.metadata) == info
