"""The inspect command: formats, golden outputs, exit codes, the installed entry point, lazy imports."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "120")


def _check_golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(text)
    assert path.exists(), f"run pytest --update-golden to create {path}"
    assert text == path.read_text()


@pytest.mark.parametrize(
    ("args", "golden"),
    [
        (["--format", "json", "--depth", "2"], "storage_zoo.json"),
        ([], "storage_zoo.table.txt"),
        (["--by", "op", "--format", "markdown"], "storage_zoo.op.md"),
        (["--by", "dtype", "--format", "csv"], "storage_zoo.dtype.csv"),
    ],
)
def test_golden_outputs(args: list[str], golden: str, update_golden: bool) -> None:
    result = runner.invoke(app, ["inspect", "fixtures/storage_zoo.onnx", *args])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    _check_golden(golden, result.stdout, update_golden)


def test_json_keys_and_structure() -> None:
    result = runner.invoke(app, ["inspect", "fixtures/storage_zoo.onnx", "-f", "json"])
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert isinstance(data["parameters"]["total"], int)
    assert data["parameters"]["total"] == 960
    assert isinstance(data["size"]["on_disk_bytes"], int)
    assert data["size"]["on_disk_bytes"] == (ROOT / "fixtures" / "storage_zoo.onnx").stat().st_size
    for key in ("weights_bytes", "by_precision", "duplicate_bytes", "by_dtype"):
        assert key in data["size"]
    assert set(data["size"]["by_precision"]) == {"FLOAT", "FLOAT16", "BFLOAT16", "INT8", "INT4"}
    assert data["parameters"]["by_dtype"]["INT4"]["bytes"] == 32
    top = [row for row in data["layers"] if row["depth"] == 1]
    assert sum(row["parameters"] for row in top) == data["parameters"]["total"]
    assert sum(row["parameters"] for row in data["by_op"]) == data["parameters"]["total"]
    assert data["constants"]["tensors"] >= 5
    assert {t["role"] for t in data["tensors"]} == {
        "parameter",
        "running_stat",
        "quant_meta",
        "constant",
        "unused",
    }


def test_depth_limits_layer_rows() -> None:
    result = runner.invoke(
        app, ["inspect", "fixtures/storage_zoo.onnx", "-f", "json", "--depth", "1"]
    )
    assert {row["depth"] for row in json.loads(result.stdout)["layers"]} == {1}


def test_csv_rows_sum_to_total() -> None:
    result = runner.invoke(
        app, ["inspect", "fixtures/storage_zoo.onnx", "-f", "csv", "--by", "dtype"]
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sum(int(r["parameters"]) for r in rows) == 960


def test_top_limits_rows() -> None:
    result = runner.invoke(app, ["inspect", "fixtures/storage_zoo.onnx", "-f", "csv", "--top", "2"])
    assert len(result.stdout.strip().splitlines()) == 3


def test_usage_error_is_exit_2() -> None:
    result = runner.invoke(app, ["inspect", "fixtures/storage_zoo.onnx", "--format", "yaml"])
    assert result.exit_code == 2


def test_installed_entry_point_and_lazy_imports(tmp_path: Path) -> None:
    exe = shutil.which("modelsize", path=str(Path(sys.executable).parent)) or shutil.which(
        "modelsize"
    )
    if exe is None:
        pytest.skip("the modelsize entry point is not installed in this environment")
    result = subprocess.run(
        [exe, "inspect", "fixtures/seed_simple.onnx", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parameters"]["total"] == 241
    bad = subprocess.run(
        [exe, "inspect", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith(f"modelsize: {tmp_path}: a folder that is neither")
    # Analysing an ONNX file must not import the heavy frameworks.
    probe = (
        "import sys; from cli.app import app; from typer.testing import CliRunner;"
        "r = CliRunner().invoke(app, ['inspect', 'fixtures/storage_zoo.onnx', '--deep']);"
        "assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('torch', 'tensorflow', 'tf2onnx', 'keras', 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    assert loaded.stdout.strip() == ""


def test_version_flag() -> None:
    from importlib.metadata import version

    from typer.testing import CliRunner

    from cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"modelsize {version('modelsize')}"


@pytest.mark.torch
def test_inspect_json_names_no_temporary_onnx_file() -> None:
    """inspect exports a framework source into a temporary folder: no path to a removed file."""
    pytest.importorskip("torch")
    result = runner.invoke(
        app, ["inspect", "fixtures/seed_models.py:SimpleModel", "--format", "json"]
    )
    assert result.exit_code == 0, result.stderr
    conversion = json.loads(result.stdout)["conversion"]
    assert conversion["onnx_path"] is None
    assert "temporary file, removed after the analysis" in conversion["onnx_path_note"]
    assert conversion["framework"]["name"] == "torch"
