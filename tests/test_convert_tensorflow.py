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
from converters.from_tensorflow import summarize_tensorflow  # noqa: E402
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


def test_saved_model_variables_sharing_a_name_are_counted_by_identity(tmp_path: Path) -> None:
    """``model.export()`` of a subclassed model names every Dense kernel ``<model>/kernel:0``:
    matched by name, the three Dense layers counted as one (416 instead of 548 in the report)."""

    class Subclassed(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="subclassed")
            self.d1 = keras.layers.Dense(16)
            self.d2 = keras.layers.Dense(16)
            self.d3 = keras.layers.Dense(4)
            self.d2.trainable = False

        def call(self, x: Any) -> Any:
            return self.d3(self.d2(self.d1(x)))

    import numpy as np

    model = Subclassed()
    model(np.zeros((1, 12), "float32"))
    total, trainable = _counts(model)
    assert (total, trainable) == (12 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4, 548 - 272)
    model.export(str(tmp_path / "sub"), verbose=False)
    ins = inspect_source(str(tmp_path / "sub"))
    _check_reconciled(ins, total, trainable)
    names = [t.name for t in ins.framework.tensors]  # type: ignore[union-attr]
    assert len(set(names)) == 6, names
    summary = summarize_tensorflow(kind="saved_model", location=str(tmp_path / "sub"), source="s")
    assert (summary["total"], summary["trainable"]) == (total, trainable)
    assert sum(r["parameters"] for r in summary["layers"]) == total


def test_tf_module_with_unnamed_variables(tmp_path: Path) -> None:
    """Two unnamed ``tf.Variable``s are both ``Variable:0``: told apart by identity and named by
    their attribute in the object graph."""
    import tensorflow as tf

    class TwoMatmuls(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(tf.random.normal([4, 4]))
            self.b = tf.Variable(tf.random.normal([4, 8]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            return {"y": tf.matmul(tf.matmul(x, self.a), self.b)}

    module = TwoMatmuls()
    tf.saved_model.save(
        module, str(tmp_path / "m"), signatures={"serving_default": module.__call__}
    )
    ins = inspect_source(str(tmp_path / "m"))
    _check_reconciled(ins, 48, 48)
    assert ins.report.parameters.total == 48
    assert sorted(t.name for t in ins.framework.tensors) == ["a", "b"]  # type: ignore[union-attr]
    summary = summarize_tensorflow(kind="saved_model", location=str(tmp_path / "m"), source="m")
    assert (summary["total"], summary["trainable"]) == (48, 48)
    assert [(r["name"], r["parameters"]) for r in summary["layers"]] == [("", 48)]


_CUSTOM_LAYERS = """
import keras


@keras.saving.register_keras_serializable(package="modelsize_test")
class Scale(keras.layers.Layer):
    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], self.units), name="w")

    def call(self, x):
        return x @ self.w

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Unregistered(keras.layers.Layer):
    def build(self, shape):
        self.v = self.add_weight(shape=(shape[-1],), name="v", trainable=False)

    def call(self, x):
        return x * self.v


@keras.saving.register_keras_serializable(package="modelsize_test")
class Subclassed(keras.Model):
    def __init__(self, units=5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units)
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}
"""


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A user's module of custom Keras classes (written, imported, used, saved)."""
    import importlib.util

    import numpy as np

    folder = tmp_path_factory.mktemp("custom")
    module_path = folder / "my_layers.py"
    module_path.write_text(_CUSTOM_LAYERS)
    spec = importlib.util.spec_from_file_location("my_layers", module_path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    inp = keras.Input((6,), name="x")
    functional = keras.Model(inp, mod.Unregistered()(mod.Scale(4)(inp)))
    functional.save(folder / "custom.keras")
    functional.save(folder / "custom.h5")
    sub = mod.Subclassed(5)
    sub(np.zeros((1, 6), "float32"))
    sub.save(folder / "subclassed.keras")
    (folder / "empty.py").write_text("import keras\nfrom keras.layers import Dense\n")
    return {
        "folder": folder,
        "module": module_path,
        "functional": _counts(functional),
        "subclassed": _counts(sub),
    }


@pytest.mark.parametrize("name", ["custom.keras", "custom.h5", "subclassed.keras"])
def test_custom_class_missing_names_the_class_and_the_flag(
    custom: dict[str, Any], name: str
) -> None:
    line = _one_line_exit_2("inspect", str(custom["folder"] / name))
    expected = "'Subclassed'" if name == "subclassed.keras" else "'Scale'"
    assert expected in line and "--custom-objects" in line
    if name.endswith(".keras"):
        assert "module my_layers" in line
    assert "could not be deserialized" not in line  # Keras's first, misleading line


def test_custom_objects_module_not_defining_the_class(custom: dict[str, Any]) -> None:
    line = _one_line_exit_2(
        "inspect",
        str(custom["folder"] / "custom.keras"),
        "--custom-objects",
        str(custom["folder"] / "empty.py"),
    )
    assert "'Scale'" in line and "empty.py neither defines nor registers" in line


@pytest.mark.parametrize("name", ["custom.keras", "custom.h5"])
def test_custom_layers_from_the_users_module(custom: dict[str, Any], name: str) -> None:
    ins = inspect_source(str(custom["folder"] / name), custom_objects=str(custom["module"]))
    total, trainable = custom["functional"]
    assert (total, trainable) == (6 * 4 + 4, 24)
    _check_reconciled(ins, total, trainable)


def test_custom_objects_as_a_module_path(
    custom: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--custom-objects my_layers`` imports the module from the current folder."""
    monkeypatch.chdir(custom["folder"])
    summary = summarize_tensorflow(
        kind="keras",
        location=str(custom["folder"] / "subclassed.keras"),
        source="subclassed.keras",
        custom_objects="my_layers",
    )
    assert (summary["total"], summary["trainable"]) == custom["subclassed"]
    rows = summary["layers"]
    assert (rows[0]["name"], rows[0]["type"]) == ("", "Subclassed")
    dense = [(r["depth"], r["parameters"], r["output_shape"]) for r in rows if r["type"] == "Dense"]
    assert dense == [(1, 6 * 5 + 5, ""), (1, 5 * 2 + 2, "")]  # no symbolic calls: no shapes


def test_subclassed_keras_file_from_the_users_module(custom: dict[str, Any]) -> None:
    """A subclassed model has no symbolic inputs: its build shape (1, 6) gives (batch, 6)."""
    ins = inspect_source(
        str(custom["folder"] / "subclassed.keras"), custom_objects=str(custom["module"])
    )
    total, trainable = custom["subclassed"]
    assert (total, trainable) == (6 * 5 + 5 + 5 * 2 + 2, 47)
    _check_reconciled(ins, total, trainable)
    assert ins.conversion is not None and ins.conversion.inputs[0].dims == (1, 6)


def test_custom_objects_only_for_keras_files(saved: dict[str, Any], custom: dict[str, Any]) -> None:
    line = _one_line_exit_2(
        "inspect",
        str(saved["folder"] / "f_saved"),
        "--custom-objects",
        str(custom["module"]),
    )
    assert "--custom-objects goes with a .keras or .h5 source" in line


def test_memory_guard_refuses_with_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard multiplies the weights by the measured factor and refuses (exit 2) up front."""
    import converters.from_tensorflow as ft
    from graph_analysis.errors import UnsupportedModelError

    weights = ft._variable_bytes([keras.Variable(keras.ops.zeros((2**20,)), name="w")])
    assert weights == 4 * 2**20
    monkeypatch.setattr(ft, "_available_memory", lambda: 100 * 2**20)  # 100 MiB free
    with pytest.raises(
        UnsupportedModelError,
        match=r"needs about 320\.0 MiB .*80x the 4\.0 MiB .* 100\.0 MiB is available",
    ):
        ft._check_memory(weights, "m.keras", [])
    assert UnsupportedModelError.exit_code == 2
    monkeypatch.setattr(ft, "_available_memory", lambda: 400 * 2**20)
    ft._check_memory(weights, "m.keras", [])  # 4 MiB x 80 = 320 MiB fits


def test_subclassed_export_with_batchnorm(tmp_path: Path) -> None:
    """Every variable of a subclassed export sits in one scope: only BatchNorm's own four are
    BatchNorm's (its kernels are not folded statistics)."""
    import numpy as np

    class ConvBn(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="convbn")
            self.conv = keras.layers.Conv2D(4, 3)
            self.bn = keras.layers.BatchNormalization()
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(2)

        def call(self, x: Any) -> Any:
            return self.head(self.pool(self.bn(self.conv(x))))

    model = ConvBn()
    model(np.zeros((1, 8, 8, 3), "float32"))
    model.head.bias.assign([0.5, -0.5])
    total, trainable = _counts(model)
    assert (total, trainable) == (112 + 16 + 10, 112 + 8 + 10)
    model.export(str(tmp_path / "convbn"), verbose=False)
    ins = inspect_source(str(tmp_path / "convbn"))
    _check_reconciled(ins, total, trainable)
    modules = {t.name: t.module for t in ins.framework.tensors}  # type: ignore[union-attr]
    assert sorted(n for n, m in modules.items() if m == "BatchNormalization") == [
        "convbn/beta",
        "convbn/gamma",
        "convbn/moving_mean",
        "convbn/moving_variance",
    ]
    causes = {e.cause: e for e in ins.reconciliation.entries}  # type: ignore[union-attr]
    assert causes[Cause.BATCHNORM_FOLDED].elements == 16
