"""Real outputs of the commands validate against the published JSON Schemas (docs/schema/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from cli.app import app
from fixtures.builders import seed_complex, storage_zoo, write

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schema"
runner = CliRunner()


def _validate(name: str, data: Any) -> None:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def _json(args: list[str], *, code: int = 0) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("schema")
    return {
        "cnn": write(seed_complex(), folder / "cnn.onnx"),
        "zoo": write(storage_zoo(), folder / "zoo.onnx"),
    }


def test_every_schema_is_valid() -> None:
    files = sorted(SCHEMAS.glob("*.json"))
    assert files
    for path in files:
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_profile_schema(models: dict[str, Path]) -> None:
    _validate(
        "profile",
        _json(["profile", str(models["cnn"]), "-f", "json", "--runs", "2", "--warmup", "1"]),
    )
    _validate("profile", _json(["profile", str(models["zoo"]), "-f", "json", "--count-only"]))


def test_fit_schema(models: dict[str, Path]) -> None:
    _validate("fit", _json(["fit", str(models["cnn"]), "--memory", "40MiB", "-f", "json"]))


def test_check_schema(models: dict[str, Path]) -> None:
    data = _json(
        ["check", str(models["cnn"]), "--max-params", "1", "--max-disk", "1GB", "--min-int8-saving", "10%",
         "-f", "json"],
        code=1,
    )  # fmt: skip
    _validate("check", data)


def test_scan_row_schema(models: dict[str, Path]) -> None:
    folder = models["cnn"].parent
    (folder / "bad.onnx").write_bytes(b"\x08")
    result = runner.invoke(app, ["scan", str(folder), "-f", "jsonl"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["ok"] for line in lines} == {True, False}
    for line in lines:
        _validate("scan-row", line)


@pytest.fixture(scope="module")
def simple(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.builders import seed_simple

    return write(seed_simple(), tmp_path_factory.mktemp("simple") / "simple.onnx")


def test_inspect_schema(simple: Path, models: dict[str, Path]) -> None:
    _validate("inspect", _json(["inspect", str(simple), "-f", "json"]))
    _validate("inspect", _json(["inspect", str(models["zoo"]), "-f", "json", "--batch", "2"]))


def test_memory_and_measure_schemas(simple: Path) -> None:
    _validate("memory", _json(["memory", str(simple), "-f", "json", "--train", "--loss", "mse"]))
    _validate(
        "measure", _json(["measure", str(simple), "-f", "json", "--runs", "1", "--repeats", "1"])
    )


def test_quantize_and_compare_schemas(simple: Path, tmp_path: Path) -> None:
    variant = tmp_path / "simple.int8.onnx"
    _validate("quantize", _json(["quantize", str(simple), "-o", str(variant), "-f", "json"]))
    _validate("compare", _json(["compare", str(simple), str(variant), "-f", "json", "--runs", "1"]))


@pytest.mark.torch
def test_convert_schema(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    source = f"{Path(__file__).resolve().parent.parent / 'fixtures' / 'seed_models.py'}:SimpleModel"
    data = _json(
        ["convert", source, "-o", str(tmp_path / "s.onnx"), "-f", "json", "--input-shape", "1,10"]
    )
    _validate("convert", data)
