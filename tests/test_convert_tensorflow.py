"""Keras 3 / TensorFlow sources to ONNX through tf2onnx.

Oracle: Keras's own ``count_params()`` and ``trainable_weights``. tf2onnx folds BatchNorm into Conv
and drops all-zero biases: the graph count must follow from the framework count through the
reconciliation, to the element. Keras models are built once per module (TF import is slow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")

from typer.testing import CliRunner  # noqa: E402

from cli.app import app  # noqa: E402
from converters.sources import SourceInspection, SourceKind, detect_source, inspect_source  # noqa: E402
from graph_analysis.bindings import parse_bindings  # noqa: E402
from graph_analysis.framework import Cause  # noqa: E402

pytestmark = [
    pytest.mark.tensorflow,
    # Keras variables' __array__ warns under NumPy 2 on every weight read.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _counts(model: Any) -> tuple[int, int]:
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable


def _functional() -> Any:
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, name="frozen_dense")(x)
    out = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inp, out)
    model.get_layer("frozen_dense").trainable = False
    model.get_layer("head").bias.assign([0.5, -0.5])  # a non-zero bias must survive export
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("keras")
    model = _functional()
    model.save(folder / "f.keras")
    model.save(folder / "f.h5")
    model.export(str(folder / "f_saved"), verbose=False)
    seq = keras.Sequential(
        [keras.Input((6,), name="features"), keras.layers.Dense(4), keras.layers.Dense(3)]
    )
    seq.save(folder / "seq.keras")
    lam = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda v: v * 2), keras.layers.Dense(2)]
    )
    lam.save(folder / "lambda.keras")
    return {"folder": folder, "functional": _counts(model), "sequential": _counts(seq)}


@pytest.fixture(scope="module")
def functional(saved: dict[str, Any]) -> SourceInspection:
    return inspect_source(str(saved["folder"] / "f.keras"))


def _check_reconciled(ins: SourceInspection, total: int, trainable: int) -> None:
    assert ins.framework is not None and ins.reconciliation is not None
    assert ins.framework.totals.total == total
    assert ins.framework.totals.trainable == trainable
    assert ins.framework.totals.non_trainable == total - trainable
    rec = ins.reconciliation
    assert rec.framework_total == total
    assert rec.graph_total == ins.report.parameters.total
    assert rec.is_exact
    assert total + sum(e.delta_elements for e in rec.entries) == ins.report.parameters.total


def test_functional_with_batchnorm_and_frozen_layer(
    saved: dict[str, Any], functional: SourceInspection
) -> None:
    total, trainable = saved["functional"]
    assert (total, trainable) == (165, 132)
    _check_reconciled(functional, total, trainable)
    causes = {e.cause: e for e in functional.reconciliation.entries}  # type: ignore[union-attr]
    assert causes[Cause.BATCHNORM_FOLDED].elements == 16  # gamma, beta, moving mean/var (4 each)
    assert causes[Cause.BATCHNORM_FOLDED].delta_elements == -16
    assert set(causes[Cause.ZERO_BIAS_DROPPED].tensors) == {"conv/bias", "frozen_dense/bias"}
    assert causes[Cause.REWRITTEN].elements == 108  # the conv kernel, BatchNorm scale folded in
    assert set(causes) == {Cause.BATCHNORM_FOLDED, Cause.ZERO_BIAS_DROPPED, Cause.REWRITTEN}
    origins = {o.framework_name: o for o in functional.framework.initializers.values()}  # type: ignore[union-attr]
    assert origins["frozen_dense/kernel"].trainable is False
    assert origins["head/kernel"].trainable is True
    assert "head/bias" in origins
    assert (
        functional.report.parameters.total == 165 - 16 - 4 - 5
    )  # BN; conv and frozen dense biases


def test_legacy_h5(saved: dict[str, Any]) -> None:
    assert detect_source(str(saved["folder"] / "f.h5")).kind is SourceKind.KERAS_H5
    _check_reconciled(inspect_source(str(saved["folder"] / "f.h5")), *saved["functional"])


def test_saved_model_keeps_the_keras_trainable_split(saved: dict[str, Any]) -> None:
    path = saved["folder"] / "f_saved"
    assert detect_source(str(path)).kind is SourceKind.SAVED_MODEL
    ins = inspect_source(str(path))
    _check_reconciled(ins, *saved["functional"])
    assert ins.framework is not None and ins.framework.name == "tensorflow"


def test_sequential_model(saved: dict[str, Any]) -> None:
    """tf2onnx's from_keras fails on Keras 3 Sequential models; from_function does not."""
    ins = inspect_source(str(saved["folder"] / "seq.keras"), bindings=parse_bindings(["2,6"]))
    _check_reconciled(ins, *saved["sequential"])
    assert ins.conversion is not None and ins.conversion.inputs[0].dims == (2, 6)


def _one_line_exit_2(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelsize: ")
    return lines[0]


def test_lambda_layer_refused_under_safe_mode(saved: dict[str, Any], tmp_path: Path) -> None:
    line = _one_line_exit_2(
        "convert", str(saved["folder"] / "lambda.keras"), "-o", str(tmp_path / "m.onnx")
    )
    assert "Lambda" in line and "safe_mode" in line
    assert not (tmp_path / "m.onnx").exists()


def test_wrong_input_shape(saved: dict[str, Any]) -> None:
    line = _one_line_exit_2("inspect", str(saved["folder"] / "f.keras"), "--input-shape", "1,9,9,3")
    assert "does not fit" in line


def test_plain_tf_module_saved_model(tmp_path: Path) -> None:
    """A SavedModel not made by Keras: counts from the signature's variables and their flags."""
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.normal([4, 3]), name="w")
            self.b = tf.Variable(tf.ones([3]), name="b")
            self.scale = tf.Variable(2.0, trainable=False, name="scale")

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            return {"y": (tf.matmul(x, self.w) + self.b) * self.scale}

    module = Affine()
    tf.saved_model.save(
        module, str(tmp_path / "affine"), signatures={"serving_default": module.__call__}
    )
    ins = inspect_source(str(tmp_path / "affine"))
    _check_reconciled(ins, 16, 15)
    assert ins.conversion is not None and ins.conversion.inputs[0].dynamic == {0: "batch"}


@pytest.mark.slow
def test_mobilenet_v2(tmp_path: Path) -> None:
    model = keras.applications.MobileNetV2(weights=None)
    total, trainable = _counts(model)
    assert (total, trainable) == (3_538_984, 3_504_872)
    path = tmp_path / "mobilenet_v2.keras"
    model.save(path)
    del model
    ins = inspect_source(str(path))
    _check_reconciled(ins, total, trainable)
    causes = {e.cause for e in ins.reconciliation.entries}  # type: ignore[union-attr]
    assert Cause.BATCHNORM_FOLDED in causes
