"""Keras models counted by modelsize against Keras's own count (the oracle).

For each model: ``count_params()`` and the sum of ``trainable_weights`` computed here, compared with
``framework.total/trainable`` from the no-export summary (``summarize_tensorflow``: fast, every
model) and from the conversion (``inspect_source``: the small models only; tf2onnx needs 45-80x
the weights in RAM). Applications are built with ``weights=None`` and small inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

from converters.from_tensorflow import summarize_tensorflow  # noqa: E402
from converters.sources import inspect_source  # noqa: E402

pytestmark = [pytest.mark.tensorflow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _oracle(model: Any) -> tuple[int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable


def _sequential() -> Any:
    return keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(8),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(3),
        ]
    )


def _shared_layer() -> Any:
    """One Dense applied to two inputs: its weights once."""
    shared = keras.layers.Dense(4, name="shared")
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    out = keras.layers.Dense(1, name="head")(keras.layers.Concatenate()([shared(a), shared(b)]))
    return keras.Model([a, b], out)


def _frozen_submodel() -> Any:
    """A frozen nested backbone with BatchNorm under a trainable head."""
    inner_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inner_in)
    x = keras.layers.BatchNormalization(name="bn")(x)
    backbone = keras.Model(
        inner_in, keras.layers.GlobalAveragePooling2D(name="pool")(x), name="backbone"
    )
    backbone.trainable = False
    inp = keras.Input((8, 8, 3), name="image")
    return keras.Model(inp, keras.layers.Dense(2, name="head")(backbone(inp)))


def _mixed_precision() -> Any:
    inp = keras.Input((12,), name="x")
    x = keras.layers.Dense(16, dtype="mixed_float16", name="hidden")(inp)
    return keras.Model(inp, keras.layers.Dense(2, dtype="float32", name="out")(x))


def _mobilenet() -> Any:
    return keras.applications.MobileNet(weights=None, alpha=0.25, input_shape=(64, 64, 3))


def _efficientnet() -> Any:
    return keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3))


def _convnext() -> Any:
    return keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3))


SMALL: dict[str, Callable[[], Any]] = {
    "sequential": _sequential,
    "shared_layer": _shared_layer,
    "frozen_submodel": _frozen_submodel,
    "mixed_precision": _mixed_precision,
    "mobilenet_0.25": _mobilenet,
}
LARGE: dict[str, Callable[[], Any]] = {  # 5.3M and 28M parameters: built, saved, never converted
    "efficientnet_b0": _efficientnet,
    "convnext_tiny": _convnext,
}


def _save(folder: Path, builders: dict[str, Callable[[], Any]]) -> dict[str, tuple[Path, int, int]]:
    result = {}
    for name, build in builders.items():
        model = build()
        path = folder / f"{name}.keras"
        model.save(path)
        result[name] = (path, *_oracle(model))
        del model
    keras.backend.clear_session()
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, int]]:
    return _save(tmp_path_factory.mktemp("oracles"), SMALL)


@pytest.fixture(scope="module")
def saved_large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, int]]:
    return _save(tmp_path_factory.mktemp("oracles_large"), LARGE)


def _check_summary(path: Path, total: int, trainable: int) -> None:
    summary = summarize_tensorflow(kind="keras", location=str(path), source=str(path))
    assert (summary["total"], summary["trainable"]) == (total, trainable)
    assert summary["non_trainable"] == total - trainable
    rows = summary["layers"]
    assert rows[0]["depth"] == 0 and rows[0]["name"] == ""
    assert sum(r["parameters"] for r in rows) == total  # own counts: shared weights once
    assert sum(r["trainable"] for r in rows) == trainable


@pytest.mark.parametrize("name", list(SMALL))
def test_summary_without_export_matches_keras(
    saved: dict[str, tuple[Path, int, int]], name: str
) -> None:
    _check_summary(*saved[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LARGE))
def test_application_summary_matches_keras(
    saved_large: dict[str, tuple[Path, int, int]], name: str
) -> None:
    _check_summary(*saved_large[name])


def test_summary_rows_in_the_users_words(saved: dict[str, tuple[Path, int, int]]) -> None:
    path, _, _ = saved["frozen_submodel"]
    rows = {
        r["name"]: r
        for r in summarize_tensorflow(kind="keras", location=str(path), source=str(path))["layers"]
    }
    assert rows["backbone"]["type"] == "Functional" and rows["backbone"]["depth"] == 1
    conv, bn = rows["backbone/conv"], rows["backbone/bn"]
    assert (conv["type"], conv["depth"], conv["parameters"], conv["frozen"]) == (
        "Conv2D",
        2,
        3 * 3 * 3 * 4 + 4,
        112,
    )
    assert conv["output_shape"] == "(None, 6, 6, 4)"
    # BatchNorm: gamma and beta frozen by the user; moving mean/variance non-trainable by nature.
    assert (bn["parameters"], bn["trainable"], bn["frozen"]) == (16, 0, 8)
    assert (rows["head"]["trainable"], rows["head"]["frozen"]) == (10, 0)


def test_shared_layer_counted_once_at_its_row(saved: dict[str, tuple[Path, int, int]]) -> None:
    path, _, _ = saved["shared_layer"]
    rows = {
        r["name"]: r
        for r in summarize_tensorflow(kind="keras", location=str(path), source=str(path))["layers"]
    }
    assert rows["shared"]["parameters"] == 6 * 4 + 4
    assert rows["shared"]["output_shape"] == "(None, 4)"  # two calls, one shape


@pytest.mark.slow  # ~15 s each: a child process imports TensorFlow and runs tf2onnx
@pytest.mark.parametrize("name", ["sequential", "shared_layer", "frozen_submodel"])
def test_export_keeps_the_framework_counts(
    saved: dict[str, tuple[Path, int, int]], name: str
) -> None:
    path, total, trainable = saved[name]
    ins = inspect_source(str(path))
    assert ins.framework is not None and ins.reconciliation is not None
    assert (ins.framework.totals.total, ins.framework.totals.trainable) == (total, trainable)
    assert ins.reconciliation.is_exact


def test_mixed_precision_says_the_variables_are_float32(
    saved: dict[str, tuple[Path, int, int]],
) -> None:
    """Keras keeps float32 variables and computes in float16: the graph holds float16 copies,
    matched to their variables (not reported as rewritten), and a note says so."""
    from graph_analysis.framework import Cause

    path, total, trainable = saved["mixed_precision"]
    ins = inspect_source(str(path))
    assert ins.framework is not None and ins.reconciliation is not None
    assert (ins.framework.totals.total, ins.framework.totals.trainable) == (total, trainable)
    assert ins.reconciliation.is_exact
    assert {e.cause for e in ins.reconciliation.entries} == {Cause.ZERO_BIAS_DROPPED}
    origins = {o.framework_name for o in ins.framework.initializers.values()}
    assert {"hidden/kernel", "out/kernel"} <= origins
    note = next(n for n in ins.notes if n.startswith("mixed precision"))
    assert "mixed_float16 (1 layers)" in note and f"{total * 4:,} bytes" in note
    assert "float32" in note and "float16" in note


@pytest.mark.slow
def test_mobilenet_export_keeps_the_framework_counts(
    saved: dict[str, tuple[Path, int, int]],
) -> None:
    path, total, trainable = saved["mobilenet_0.25"]
    assert total < 3_000_000  # tf2onnx needs 45-80x the weights in RAM
    ins = inspect_source(str(path))
    assert ins.framework is not None and ins.reconciliation is not None
    assert (ins.framework.totals.total, ins.framework.totals.trainable) == (total, trainable)
    assert ins.reconciliation.is_exact


@pytest.mark.slow  # a child process imports TensorFlow
def test_summary_through_the_child_process(saved: dict[str, tuple[Path, int, int]]) -> None:
    """The no-export summary is JSON the parent reads through the converter child protocol."""
    from converters._child import run_in_child

    path, total, trainable = saved["frozen_submodel"]
    summary = run_in_child(
        "converters.from_tensorflow:summarize_tensorflow",
        {"kind": "keras", "location": str(path), "source": str(path)},
        source=str(path),
        timeout_s=300,
    )
    assert (summary["name"], summary["total"], summary["trainable"]) == ("keras", total, trainable)
    assert [r["name"] for r in summary["layers"]] == [
        "",
        "backbone",
        "backbone/conv",
        "backbone/bn",
        "backbone/pool",
        "head",
    ]


def test_export_failure_keeps_the_framework_answer(
    saved: dict[str, tuple[Path, int, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tf2onnx failing is one line in ``export_error``; the framework's counts stand."""
    import tf2onnx

    from converters.from_tensorflow import convert_tensorflow

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("unsupported op: MyOp\nsecond line")

    monkeypatch.setattr(tf2onnx.convert, "from_function", fail)
    path, total, trainable = saved["frozen_submodel"]
    out = tmp_path / "m.onnx"
    result = convert_tensorflow(
        kind="keras",
        location=str(path),
        source=str(path),
        out_path=str(out),
        bindings={},
        dynamic=[],
    )
    assert result["export_error"] == "tf2onnx failed: ValueError: unsupported op: MyOp"
    assert (result["summary"]["total"], result["summary"]["trainable"]) == (total, trainable)
    assert result["framework"]["total"] == total
    assert result["inputs"][0]["dims"] == [1, 8, 8, 3]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_framework_only_needs_no_input_shape(tmp_path: Path) -> None:
    """Without export nothing is called: unknown spatial dims need no --input-shape."""
    inp = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    model = keras.Model(inp, keras.layers.GlobalMaxPooling2D(name="pool")(x))
    model.save(tmp_path / "any_size.keras")
    summary = summarize_tensorflow(
        kind="keras", location=str(tmp_path / "any_size.keras"), source="any_size.keras"
    )
    assert summary["total"] == model.count_params() == 3 * 3 * 3 * 4 + 4
    rows = {r["name"]: r for r in summary["layers"]}
    assert rows["conv"]["output_shape"] == "(None, None, None, 4)"
