"""Every command's ``--help`` shows examples, and every example runs (exit 0) on a shipped model."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.examples import EXAMPLES
from fixtures.builders import seed_complex, write

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def test_every_command_has_examples_in_its_help() -> None:
    commands = {c.name for c in app.registered_commands} | {
        c.callback.__name__ for c in app.registered_commands if c.name is None and c.callback
    }
    assert set(EXAMPLES) <= commands
    for command, lines in EXAMPLES.items():
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "Examples:" in result.stdout
        for line in lines:
            assert line in result.stdout, (command, line)


_CASES = [(command, line) for command, lines in EXAMPLES.items() for line in lines]


@pytest.mark.parametrize(("command", "line"), _CASES)
def test_help_example_runs(tmp_path: Path, command: str, line: str) -> None:
    if "SOURCE" in line and importlib.util.find_spec("torch") is None:
        pytest.skip("the torch extra is not installed")
    model = write(seed_complex(), tmp_path / "model.onnx")
    other = tmp_path / "other.onnx"
    shutil.copy(model, other)
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model, folder / "a.onnx")
    values = {
        "MODEL": str(model),
        "OTHER": str(other),
        "SOURCE": f"{ROOT / 'fixtures' / 'seed_models.py'}:ComplexModel",
        "DIR": str(folder),
        "OUT.onnx": str(tmp_path / "out.onnx"),
    }
    args = [values.get(word, word) for word in shlex.split(line)[1:]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (line, result.stderr)
    assert result.stdout.strip()
