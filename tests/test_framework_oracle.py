"""Framework oracle: for a few dozen tiny PyTorch models, the reported framework counts equal
torch's own (``sum(p.numel() for p in model.parameters())`` and friends, computed here), the
per-layer table sums to them, and the graph's count is reconciled to the element with the right
causes; when the export fails, the framework's counts are still there.

The converter runs in this process (``convert_torch`` is what the child process runs), so each
case costs one export, not a child process start.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from converters._common import bindings_to_json  # noqa: E402
from converters.from_torch import convert_torch  # noqa: E402
from graph_analysis import analyze  # noqa: E402
from graph_analysis.bindings import parse_bindings  # noqa: E402
from graph_analysis.framework import (  # noqa: E402
    Cause,
    Reconciliation,
    framework_summary_from_dict,
    read_framework_info,
    reconcile,
    rolled_up_layers,
)

pytestmark = pytest.mark.torch

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "torch_oracle_models.py"


def _fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location("torch_oracle_models_test", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODELS = _fixture_module()

# Causes a case may show besides buffer_in_graph (running statistics, buffers in the graph).
ALLOWED: dict[str, set[Cause]] = {
    "SpareLayers": {Cause.UNUSED},
    # The TorchScript exporter (fallback) re-lays the recurrent weights out (ONNX W/R/B).
    "Recurrent": {Cause.RELAID, Cause.CONSTANTS_FOLDED},
    "PackedLstm": {Cause.RELAID, Cause.CONSTANTS_FOLDED},
}


def _oracle(name: str, shapes: list[str]) -> tuple[int, int, int]:
    model = getattr(MODELS, name)().eval()
    if name == "Lazy":  # torch itself needs one forward before it can count a lazy layer
        dims = [int(d) for d in shapes[0].split(",")]
        model(torch.randn(*dims))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers())
    return total, trainable, buffers


def _convert(name: str, out: Path, *, export: bool = True) -> dict[str, Any]:
    result = convert_torch(
        kind="torch_code",
        location=str(FIXTURE),
        attr=name,
        source=f"{FIXTURE.name}:{name}",
        out_path=str(out) if export else None,
        bindings=bindings_to_json(parse_bindings(MODELS.INPUTS[name])),
        dynamic=[],
        export=export,
    )
    return json.loads(json.dumps(result))  # what crosses the process boundary


@pytest.mark.parametrize("name", sorted(MODELS.INPUTS))
def test_framework_counts_equal_torch_and_the_graph_reconciles(name: str, tmp_path: Path) -> None:
    total, trainable, buffers = _oracle(name, MODELS.INPUTS[name])
    out = tmp_path / "model.onnx"
    data = _convert(name, out)
    summary = framework_summary_from_dict(data["summary"])
    t = summary.totals
    assert (t.total, t.trainable, t.non_trainable, t.buffers) == (
        total,
        trainable,
        total - trainable,
        buffers,
    )
    # The per-layer table's own counts sum to the totals; the depth-1 roll-up too.
    assert sum(r.parameters for r in summary.layers) == total
    assert sum(r.trainable for r in summary.layers) == trainable
    assert sum(r.buffers for r in summary.layers) == buffers
    top = rolled_up_layers(summary.layers, depth=1)
    assert sum(r.parameters for r in top) == total
    if "export_error" in data:
        # Outputs no exporter can flatten (a plain @dataclass is registered and exports).
        assert name in ("DistributionOutput", "CustomObjectOutput")
        assert not out.exists()
        return
    report = analyze(out)
    info = read_framework_info(report.metadata)
    assert info is not None and info.totals == t
    rec = reconcile(report, info)
    _check_balanced(rec, report.parameters.total, total)
    causes = {e.cause for e in rec.entries}
    assert causes <= {Cause.BUFFER_IN_GRAPH} | ALLOWED.get(name, set()), rec.entries
    assert Cause.REMOVED not in causes and Cause.UNEXPLAINED not in causes


def _check_balanced(rec: Reconciliation, graph_total: int, framework_total: int) -> None:
    assert rec.framework_total == framework_total
    assert rec.graph_total == graph_total
    assert framework_total + sum(e.delta_elements for e in rec.entries) == graph_total
    assert rec.is_exact


def _inspect(name: str, tmp_path: Path) -> tuple[Reconciliation, int, Any]:
    out = tmp_path / "model.onnx"
    _convert(name, out)
    report = analyze(out)
    info = read_framework_info(report.metadata)
    assert info is not None
    return reconcile(report, info), report.parameters.total, report


def test_spare_layers_are_unused_in_forward(tmp_path: Path) -> None:
    rec, _, _ = _inspect("SpareLayers", tmp_path)
    (entry,) = rec.entries
    assert entry.cause is Cause.UNUSED
    assert set(entry.tensors) == {
        "spare.weight",
        "spare.bias",
        "spare_bn.weight",
        "spare_bn.bias",
        "spare_norm.weight",
        "spare_norm.bias",
    }
    assert entry.delta_elements == -(24 + 4 + 8 + 8)


def test_pruning_mask_is_a_buffer_not_a_parameter(tmp_path: Path) -> None:
    rec, graph_total, report = _inspect("Pruned", tmp_path)
    total, _, buffers = _oracle("Pruned", [])
    assert buffers == 24  # fc.weight_mask
    assert graph_total == total == 28  # weight_orig + bias; the mask is not learned
    roles = {r.name: r.role.value for r in report.tensors}
    assert roles["fc.weight_mask"] == "constant"
    (entry,) = rec.entries
    assert (entry.cause, entry.tensors, entry.delta_elements) == (
        Cause.BUFFER_IN_GRAPH,
        ("fc.weight_mask",),
        0,
    )


@pytest.mark.parametrize("name", ["CustomParams", "PReLUNet"])
def test_one_element_parameters_count_when_the_record_says_so(name: str, tmp_path: Path) -> None:
    rec, graph_total, _ = _inspect(name, tmp_path)
    total, _, _ = _oracle(name, MODELS.INPUTS[name])
    assert graph_total == total
    assert rec.entries == ()


def test_batchnorm_buffers_are_not_frozen(tmp_path: Path) -> None:
    summary = framework_summary_from_dict(_convert("ConvBn", tmp_path / "m.onnx")["summary"])
    (bn,) = [r for r in summary.layers if r.name == "bn"]
    assert (bn.parameters, bn.trainable, bn.frozen, bn.buffers) == (8, 8, 0, 9)
    assert bn.output_shape == "(2, 4, 6, 6)"
    # In the graph's own layer table too: running statistics are counted, never "frozen".
    layers = {r.key: r for r in analyze(tmp_path / "m.onnx").layers}
    assert (layers["bn"].num_parameters, layers["bn"].frozen_parameters) == (16, 0)


def test_frozen_part_per_layer(tmp_path: Path) -> None:
    summary = framework_summary_from_dict(
        _convert("FrozenPart", tmp_path / "m.onnx", export=False)["summary"]
    )
    rows = {r.name: r for r in rolled_up_layers(summary.layers, depth=1)}
    assert (rows["backbone"].parameters, rows["backbone"].frozen) == (56 + 72, 56 + 72)
    assert (rows["head"].trainable, rows["head"].frozen) == (18, 0)
    assert rows["backbone"].output_shape == "(2, 8)"


def test_tied_and_shared_count_once_at_the_first_owner(tmp_path: Path) -> None:
    tied = framework_summary_from_dict(
        _convert("TiedHead", tmp_path / "t.onnx", export=False)["summary"]
    )
    rows = {r.name: r.parameters for r in tied.layers}
    assert rows == {"": 0, "emb": 120, "head": 0}
    shared = framework_summary_from_dict(
        _convert("SharedLayer", tmp_path / "s.onnx", export=False)["summary"]
    )
    assert [(r.name, r.parameters) for r in shared.layers] == [("", 0), ("block", 42)]


def test_export_failure_keeps_the_framework_answer(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    data = _convert("DistributionOutput", out)
    assert data["export_error"] and not out.exists()
    assert data["summary"]["total"] == 28 + 4 == _oracle("DistributionOutput", [])[0]
    # The root holds log_std itself: its own row carries it.
    assert [(r["name"], r["parameters"]) for r in data["summary"]["layers"]] == [
        ("", 4),
        ("mean", 28),
    ]


def test_lazy_without_shape_names_the_flag(tmp_path: Path) -> None:
    from graph_analysis.errors import ShapeBindingError

    with pytest.raises(
        ShapeBindingError, match=r"lazy parameters \(fc \(LazyLinear\)\).*--input-shape"
    ):
        convert_torch(
            kind="torch_code",
            location=str(FIXTURE),
            attr="Lazy",
            source="Lazy",
            out_path=None,
            bindings=bindings_to_json(parse_bindings([])),
            dynamic=[],
            export=False,
        )


def test_framework_only_counts_when_the_guessed_input_is_rejected(tmp_path: Path) -> None:
    from graph_analysis.errors import ShapeBindingError

    data = convert_torch(
        kind="torch_code",
        location=str(FIXTURE),
        attr="RejectsGuessedInput",
        source="RejectsGuessedInput",
        out_path=None,
        bindings=bindings_to_json(parse_bindings([])),
        dynamic=[],
        export=False,
    )
    assert data["summary"]["total"] == 10
    assert data["summary"]["layers"][1]["output_shape"] == ""
    assert any("rejects the input" in n and "--input-shape" in n for n in data["notes"])
    with pytest.raises(ShapeBindingError, match="rejects the input"):  # an export needs it
        _convert_guessed("RejectsGuessedInput", tmp_path / "m.onnx")


def _convert_guessed(name: str, out: Path) -> dict[str, Any]:
    return convert_torch(
        kind="torch_code",
        location=str(FIXTURE),
        attr=name,
        source=name,
        out_path=str(out),
        bindings=bindings_to_json(parse_bindings([])),
        dynamic=[],
    )
