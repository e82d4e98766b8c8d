"""Framework metadata and reconciliation (graph_analysis.framework): framework-free unit tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from graph_analysis.framework import (
    METADATA_KEY,
    Cause,
    FrameworkInfo,
    FrameworkTensor,
    FrameworkTotals,
    InitializerOrigin,
    TensorKind,
    duplicate_tensor_names,
    read_framework_info,
    reconcile,
    tied_copies_from_metadata,
    write_framework_json,
)

P, B = TensorKind.PARAMETER, TensorKind.BUFFER


@dataclass(frozen=True)
class Rec:
    name: str
    role: str
    num_elements: int
    nbytes: int
    duplicate_of: str | None = None


@dataclass(frozen=True)
class Params:
    total: int


@dataclass(frozen=True)
class Report:
    tensors: tuple[Rec, ...]
    parameters: Params


def _report(*records: Rec) -> Report:
    counted = sum(
        r.num_elements
        for r in records
        if r.role in ("parameter", "running_stat") and r.duplicate_of is None
    )
    return Report(records, Params(counted))


def _info(tensors: list[FrameworkTensor], inits: dict[str, InitializerOrigin]) -> FrameworkInfo:
    total = sum(t.num_elements for t in tensors if t.kind is P)
    trainable = sum(t.num_elements for t in tensors if t.kind is P and t.trainable)
    buffers = sum(t.num_elements for t in tensors if t.kind is B)
    return FrameworkInfo(
        "torch",
        "2.13.0",
        "test",
        FrameworkTotals(total, trainable, total - trainable, buffers),
        tuple(tensors),
        inits,
    )


def test_json_round_trip() -> None:
    info = _info(
        [
            FrameworkTensor("w", P, True, 6, "Linear"),
            FrameworkTensor("rm", B, False, 3, "BatchNorm2d"),
        ],
        {"w": InitializerOrigin("w", P, True), "w_t": InitializerOrigin("w", P, True, True)},
    )
    assert read_framework_info({METADATA_KEY: write_framework_json(info)}) == info


@pytest.mark.parametrize("text", ["", "{", '{"schema": 99}', '{"schema": 1}', "[1]"])
def test_damaged_metadata_is_ignored(text: str) -> None:
    assert read_framework_info({METADATA_KEY: text}) is None
    assert tied_copies_from_metadata({METADATA_KEY: text}) == {}


def test_tied_copy_prefers_the_framework_named_original() -> None:
    info = _info(
        [FrameworkTensor("lm_head.weight", P, True, 800)],
        {
            "onnx::MatMul_9": InitializerOrigin("lm_head.weight", P, True, True),
            "lm_head.weight": InitializerOrigin("lm_head.weight", P, True),
        },
    )
    assert duplicate_tensor_names(info) == {"onnx::MatMul_9": "lm_head.weight"}


def test_tied_copy_counted_once_is_duplicate_storage_only() -> None:
    info = _info(
        [FrameworkTensor("emb", P, True, 800), FrameworkTensor("b", P, True, 50)],
        {
            "emb": InitializerOrigin("emb", P, True),
            "emb_t": InitializerOrigin("emb", P, True, True),
            "b": InitializerOrigin("b", P, True),
        },
    )
    report = _report(
        Rec("emb", "parameter", 800, 3200),
        Rec("emb_t", "parameter", 800, 3200, duplicate_of="emb"),
        Rec("b", "parameter", 50, 200),
    )
    rec = reconcile(report, info)
    assert rec.framework_total == rec.graph_total == 850
    assert [(e.cause, e.tensors, e.nbytes, e.delta_elements) for e in rec.entries] == [
        (Cause.DUPLICATE_STORAGE, ("emb_t",), 3200, 0)
    ]
    assert rec.is_exact


def test_folded_batchnorm_and_dropped_zero_bias() -> None:
    # Framework: conv (kernel 27 + zero bias 3) + BatchNorm (gamma, beta, mean, var: 3 each).
    tensors = [
        FrameworkTensor("conv/kernel", P, True, 27, "Conv2D"),
        FrameworkTensor("conv/bias", P, True, 3, "Conv2D", is_all_zero=True),
        FrameworkTensor("bn/gamma", P, True, 3, "BatchNormalization"),
        FrameworkTensor("bn/beta", P, True, 3, "BatchNormalization", is_all_zero=True),
        FrameworkTensor("bn/moving_mean", P, False, 3, "BatchNormalization", is_all_zero=True),
        FrameworkTensor("bn/moving_variance", P, False, 3, "BatchNormalization"),
        FrameworkTensor("dense/kernel", P, True, 12, "Dense"),
    ]
    info = _info(tensors, {"d": InitializerOrigin("dense/kernel", P, True, True)})
    # Graph: a fused conv kernel (27) and fused bias (3), the dense kernel re-laid out.
    report = _report(
        Rec("fused_w", "parameter", 27, 108),
        Rec("fused_b", "parameter", 3, 12),
        Rec("d", "parameter", 12, 48),
        Rec("shape", "constant", 2, 16),
    )
    rec = reconcile(report, info)
    causes = {e.cause: e for e in rec.entries}
    assert causes[Cause.REWRITTEN].tensors == ("fused_w",)
    assert causes[Cause.BATCHNORM_FOLDED].delta_elements == -12
    assert causes[Cause.ZERO_BIAS_DROPPED].tensors == ("conv/bias",)
    assert causes[Cause.CONSTANTS_FOLDED].tensors == ("fused_b",)
    assert rec.framework_total == 54 and rec.graph_total == 42
    assert rec.framework_total + sum(e.delta_elements for e in rec.entries) == rec.graph_total
    assert rec.is_exact


def test_running_statistics_are_buffers_in_graph() -> None:
    tensors = [
        FrameworkTensor("bn.weight", P, True, 4, "BatchNorm2d"),
        FrameworkTensor("bn.running_mean", B, False, 4, "BatchNorm2d"),
        FrameworkTensor("pos_ids", B, False, 8, "Embeddings"),
    ]
    inits = {n: InitializerOrigin(n, t.kind, t.trainable) for t in tensors for n in [t.name]}
    report = _report(
        Rec("bn.weight", "parameter", 4, 16),
        Rec("bn.running_mean", "running_stat", 4, 16),
        Rec("pos_ids", "constant", 8, 64),
    )
    rec = reconcile(report, info := _info(tensors, inits))
    (entry,) = rec.entries
    assert entry.cause is Cause.BUFFER_IN_GRAPH
    assert entry.tensors == ("bn.running_mean", "pos_ids")
    assert entry.delta_elements == 4  # running stats count in the graph, position ids do not
    assert rec.graph_total == info.totals.total + 4 and rec.is_exact


def test_unexplained_remainder_is_reported() -> None:
    info = _info([FrameworkTensor("w", P, True, 10)], {"w": InitializerOrigin("w", P, True)})
    report = Report((Rec("w", "parameter", 10, 40),), Params(13))
    rec = reconcile(report, info)
    assert not rec.is_exact
    assert rec.entries[-1].cause is Cause.UNEXPLAINED and rec.entries[-1].delta_elements == 3


def test_trainable_by_layer_follows_framework_names() -> None:
    from graph_analysis.framework import LayerTrainability, trainable_by_layer

    info = _info(
        [
            FrameworkTensor("encoder.layer.0.w", P, False, 6),
            FrameworkTensor("encoder.layer.1.w", P, True, 4),
            FrameworkTensor("encoder.norm.running_mean", B, False, 9),
            FrameworkTensor("dense/kernel", P, True, 5),
        ],
        {},
    )
    assert trainable_by_layer(info) == (
        LayerTrainability("encoder", 4, 6),
        LayerTrainability("dense", 5, 0),
    )
    assert trainable_by_layer(info, depth=3)[0] == LayerTrainability("encoder.layer.0", 0, 6)


def test_unused_relaid_and_counter_causes() -> None:
    """A parameter the forward never read is unused_in_forward whatever its content; one it read
    but that no initializer holds was re-laid out (relaid_by_exporter, never removed); an
    all-zero sample counter is not a zero bias."""
    tensors = [
        FrameworkTensor("fc.weight", P, True, 12, "Linear", used_in_forward=True),
        FrameworkTensor("spare.bias", P, True, 4, "Linear", True, used_in_forward=False),
        FrameworkTensor("spare_bn.weight", P, True, 4, "BatchNorm1d", used_in_forward=False),
        FrameworkTensor(
            "ln2.weight", P, True, 4, "LayerNorm", merged_into="ln1.weight", used_in_forward=False
        ),
        FrameworkTensor("ln1.weight", P, True, 4, "LayerNorm", used_in_forward=True),
        FrameworkTensor("lstm.bias_ih", P, True, 8, "LSTM", used_in_forward=True),
        FrameworkTensor("lstm.bias_hh", P, True, 8, "LSTM", used_in_forward=True),
        FrameworkTensor("norm/count", P, False, 1, "Normalization", is_all_zero=True),
    ]
    inits = {
        "fc.weight": InitializerOrigin("fc.weight", P, True),
        "ln1.weight": InitializerOrigin("ln1.weight", P, True),
    }
    report = _report(
        Rec("fc.weight", "parameter", 12, 48),
        Rec("ln1.weight", "parameter", 4, 16),
        Rec("B", "parameter", 16, 64),  # the LSTM's two biases in ONNX's one wider bias
    )
    rec = reconcile(report, _info(tensors, inits))
    causes = {e.cause: e for e in rec.entries}
    assert causes[Cause.UNUSED].tensors == ("spare.bias", "spare_bn.weight", "ln2.weight")
    assert causes[Cause.RELAID].tensors == ("lstm.bias_ih", "lstm.bias_hh")
    assert causes[Cause.RELAID].delta_elements == -16
    assert causes[Cause.CONSTANTS_FOLDED].tensors == ("B",)
    assert causes[Cause.REMOVED].tensors == ("norm/count",)  # usage unknown, not a bias
    assert Cause.ZERO_BIAS_DROPPED not in causes
    assert Cause.BATCHNORM_FOLDED not in causes and Cause.IDENTICAL_CONTENT not in causes
    assert rec.framework_total + sum(e.delta_elements for e in rec.entries) == rec.graph_total
    assert rec.is_exact


def test_the_record_decides_parameter_or_buffer() -> None:
    from graph_analysis.framework import recorded_role
    from graph_analysis.report import Role

    param, buffer = InitializerOrigin("s", P, True), InitializerOrigin("m", B, False)
    assert recorded_role(Role.CONSTANT, param) is Role.PARAMETER  # a scalar nn.Parameter
    assert recorded_role(Role.PARAMETER, buffer) is Role.CONSTANT  # a pruning mask
    assert recorded_role(Role.RUNNING_STAT, buffer) is Role.RUNNING_STAT
    assert recorded_role(Role.CONSTANT, None) is Role.CONSTANT
    assert recorded_role(Role.UNUSED, param) is Role.UNUSED


def test_layer_table_roll_up_and_json_round_trip() -> None:
    from graph_analysis.framework import (
        FrameworkLayer,
        FrameworkSummary,
        framework_summary_from_dict,
        framework_summary_to_dict,
        rolled_up_layers,
    )

    layers = (
        FrameworkLayer("", "Net", 0, 2, 2),
        FrameworkLayer("enc", "Encoder", 1, 0, 0),
        FrameworkLayer("enc.0", "Linear", 2, 12, 0, 12, 0, "(1, 4)"),
        FrameworkLayer("enc.1", "BatchNorm1d", 2, 8, 8, 0, 9, "(1, 4)"),
        FrameworkLayer("head", "Linear", 1, 5, 5, 0, 0, "(1, 1)"),
    )
    summary = FrameworkSummary("torch", "2.13", "Net", FrameworkTotals(27, 15, 12, 9), layers)
    assert framework_summary_from_dict(framework_summary_to_dict(summary)) == summary
    top = rolled_up_layers(layers, depth=1)
    assert [(r.name, r.parameters, r.trainable, r.frozen, r.buffers) for r in top] == [
        ("", 2, 2, 0, 0),  # the model's own tensors
        ("enc", 20, 8, 12, 9),
        ("head", 5, 5, 0, 0),
    ]
    assert sum(r.parameters for r in top) == summary.totals.total
    assert len(rolled_up_layers(layers, depth=2)) == 5


def test_layers_rebuilt_from_the_record_keep_moving_statistics_out_of_frozen() -> None:
    from graph_analysis.framework import layers_from_tensors, rolled_up_layers

    info = _info(
        [
            FrameworkTensor("bn/gamma", P, True, 4, "BatchNormalization"),
            FrameworkTensor("bn/moving_mean", P, False, 4, "BatchNormalization"),
            FrameworkTensor("frozen_dense/kernel", P, False, 6, "Dense"),
            FrameworkTensor("b.fc.weight", P, True, 3, "Linear"),
        ],
        {},
    )
    rows = {r.name: r for r in rolled_up_layers(layers_from_tensors(info), depth=1)}
    assert (rows["bn"].parameters, rows["bn"].trainable, rows["bn"].frozen) == (8, 4, 0)
    assert rows["frozen_dense"].frozen == 6 and rows["frozen_dense"].type == "Dense"
    assert rows["b"].parameters == 3


def test_trainable_flags_leave_buffers_and_moving_statistics_out() -> None:
    from graph_analysis.framework import trainable_flags

    tensors = [
        FrameworkTensor("fc.weight", P, False, 6, "Linear"),
        FrameworkTensor("bn.running_mean", B, False, 4, "BatchNorm2d"),
        FrameworkTensor("bn/moving_mean", P, False, 4, "BatchNormalization"),
        FrameworkTensor("bn/gamma", P, True, 4, "BatchNormalization"),
    ]
    inits = {t.name: InitializerOrigin(t.name, t.kind, t.trainable) for t in tensors}
    assert trainable_flags(_info(tensors, inits)) == {"fc.weight": False, "bn/gamma": True}
