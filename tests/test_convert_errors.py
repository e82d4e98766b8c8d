"""Bad framework sources: exit 2 with one clear line on stderr, nothing on stdout, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed_models.py"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _assert_one_line(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("modelsize: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


# --- detected before any framework runs (fast) -----------------------------------------------


def test_py_file_without_name(tmp_path: Path) -> None:
    _assert_one_line(*_run("convert", str(SEED), "-o", str(tmp_path / "m.onnx")), "file.py:Name")


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line(*_run("inspect", str(tmp_path / "nope.py:Model")), "no such file")


def test_bare_checkpoint_needs_code(tmp_path: Path) -> None:
    import zipfile

    ckpt = tmp_path / "model.pt"
    with zipfile.ZipFile(ckpt, "w") as z:
        z.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    _assert_one_line(*_run("inspect", str(ckpt)), "--weights")


def test_output_overwriting_input(tmp_path: Path) -> None:
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"PK")
    _assert_one_line(*_run("convert", str(keras_file), "-o", str(keras_file)), "overwrite")


# --- need the torch child process -------------------------------------------------------------

torch_only = pytest.mark.torch


@pytest.fixture(scope="module")
def user_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("code")
    (folder / "broken.py").write_text("import torch\nraise RuntimeError('boom at import')\n")
    (folder / "factories.py").write_text("def not_a_model():\n    return 42\n")
    return folder


@torch_only
def test_missing_class_name(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _assert_one_line(
        *_run("convert", f"{SEED}:NoSuchModel", "-o", str(tmp_path / "m.onnx")),
        "no attribute 'NoSuchModel'",
    )
    assert not (tmp_path / "m.onnx").exists()


@torch_only
def test_module_raising_on_import(user_code: Path) -> None:
    _assert_one_line(*_run("inspect", f"{user_code / 'broken.py'}:Model"), "boom at import")


@torch_only
def test_factory_returning_non_model(user_code: Path) -> None:
    _assert_one_line(
        *_run("inspect", f"{user_code / 'factories.py'}:not_a_model"), "not a torch.nn.Module"
    )


@torch_only
def test_wrong_input_shape() -> None:
    pytest.importorskip("torch")
    _assert_one_line(
        *_run("inspect", f"{SEED}:ComplexModel", "--input-shape", "1,3,20,20"),
        "rejects the input",
    )


@torch_only
def test_conv_first_layer_asks_for_a_shape() -> None:
    pytest.importorskip("torch")
    _assert_one_line(*_run("inspect", f"{SEED}:ComplexModel"), "--input-shape", "Conv2d")


@torch_only
def test_corrupted_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fixtures.seed_models import SimpleModel

    ckpt = tmp_path / "simple.pt"
    torch.save(SimpleModel().state_dict(), ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    _assert_one_line(*_run("inspect", f"{SEED}:SimpleModel", "--weights", str(ckpt)), "checkpoint")


@torch_only
def test_checkpoint_of_another_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fixtures.seed_models import SimpleModel

    ckpt = tmp_path / "simple.pt"
    torch.save(SimpleModel().state_dict(), ckpt)
    _assert_one_line(
        *_run(
            "inspect", f"{SEED}:ComplexModel", "--input-shape", "1,3,32,32", "--weights", str(ckpt)
        ),
        "does not fit",
    )
