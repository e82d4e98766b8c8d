"""`inspect`/`convert` on framework sources from the command line: the framework's answer first,
kept when the export fails (one warning line on stderr), ``--framework-only``, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from cli.app import app

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "fixtures" / "torch_oracle_models.py"
SEED = ROOT / "fixtures" / "seed_models.py"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_export_failure_still_answers_with_the_framework_counts() -> None:
    code, out, err = _run(
        "inspect", f"{MODELS}:DistributionOutput", "--input-shape", "2,6", "--format", "json"
    )
    assert code == 0, err
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("modelsize: warning: ")
    assert "ONNX export failed" in warnings[0]
    data = json.loads(out)
    assert next(iter(data)) == "framework"
    fw = data["framework"]
    assert (fw["total"], fw["trainable"], fw["buffers"]) == (32, 32, 0)
    assert fw["layers"][1]["name"] == "mean" and fw["layers"][1]["output_shape"] == "(2, 4)"
    assert "parameters" not in data and "reconciliation" not in data  # no graph sections
    assert data["export_error"] and data["warnings"][0].startswith("no graph figures")


def test_convert_fails_when_the_export_fails_and_says_the_count(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    code, stdout, err = _run(
        "convert", f"{MODELS}:CustomObjectOutput", "--input-shape", "2,6", "-o", str(out)
    )
    assert code == 1 and stdout == ""
    assert err.startswith("modelsize: ") and "the ONNX export failed" in err
    assert "the framework counts 36 parameters" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_framework_only_table_and_top() -> None:
    code, out, err = _run(
        "inspect", f"{MODELS}:FrozenPart", "--input-shape", "2,6", "--framework-only", "--top", "1"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Framework: PyTorch") and "FrozenPart" in lines[0]
    assert lines[1].split()[:2] == ["Parameters", "146"]
    assert lines[2].split()[:2] == ["trainable", "18"]
    assert lines[3].split()[:2] == ["non-trainable", "128"]
    assert "not exported (--framework-only)" in out
    assert "backbone" in out and "head" not in out.split("Layers by PyTorch")[1]
    assert "4 more rows (--top)" in out  # depth 2: backbone, its 3 children, head
    assert "ONNX IR" not in out  # no graph section


def test_headline_comes_before_the_graph_figures() -> None:
    code, out, err = _run("inspect", f"{SEED}:SimpleModel")
    assert code == 0, err
    assert out.index("Framework: PyTorch") < out.index("Graph parameters") < out.index("ONNX IR")
    assert "241" in out.splitlines()[1]
    code, md, err = _run("inspect", f"{SEED}:SimpleModel", "--format", "markdown")
    assert code == 0, err
    assert md.startswith("## Framework: PyTorch")
    assert "| parameters | 241 |" in md and "| fc1 | Linear | (1, 20) | 220 |" in md


def test_forward_returning_none_is_refused() -> None:
    code, out, err = _run("inspect", f"{MODELS}:ReturnsNothing", "--input-shape", "2,6")
    assert (code, out) == (2, "")
    assert "forward() returns None" in err and len(err.strip().splitlines()) == 1


def test_lazy_model_without_shape_names_the_flag() -> None:
    code, out, err = _run("inspect", f"{MODELS}:Lazy", "--framework-only")
    assert (code, out) == (2, "")
    assert "lazy parameters" in err and "--input-shape" in err


def test_framework_only_refuses_an_onnx_file() -> None:
    code, _, err = _run("inspect", str(ROOT / "fixtures" / "seed_simple.onnx"), "--framework-only")
    assert code == 2 and "--framework-only needs a framework source" in err
