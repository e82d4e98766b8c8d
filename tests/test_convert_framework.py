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
