"""The converter child process: results, progress, errors, crashes and timeouts (no framework)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from converters._child import run_in_child
from converters.sources import SourceKind, convert_source, detect_source
from graph_analysis.errors import (
    ConversionError,
    MissingExtraError,
    OutputPathError,
    SourceError,
)

ROOT = Path(__file__).resolve().parent.parent


def test_result_and_progress_survive_stdout_chatter() -> None:
    seen: list[str] = []
    result = run_in_child(
        "fixtures.child_targets:echo", {"value": 7}, source="s", on_progress=seen.append
    )
    assert result == {"value": 7}
    assert seen == ["echoing"]


def test_input_error_in_child_keeps_its_class() -> None:
    with pytest.raises(SourceError, match="holds a Lambda layer") as info:
        run_in_child("fixtures.child_targets:refuse", {}, source="s")
    assert info.value.exit_code == 2


def test_killed_child_is_a_clean_error() -> None:
    with pytest.raises(ConversionError, match=r"SIGKILL.*out of memory"):
        run_in_child("fixtures.child_targets:crash", {}, source="s")


def test_hanging_child_is_stopped() -> None:
    start = time.monotonic()
    with pytest.raises(ConversionError, match="did not finish within 2 s"):
        run_in_child("fixtures.child_targets:hang", {"seconds": 60}, source="s", timeout_s=2)
    assert time.monotonic() - start < 30


def test_interrupted_parent_stops_the_child() -> None:
    import os

    pids: list[int] = []

    def interrupt(text: str) -> None:
        pids.append(int(text.split()[1]))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_in_child(
            "fixtures.child_targets:hang", {"seconds": 60}, source="s", on_progress=interrupt
        )
    (pid,) = pids
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


@pytest.mark.parametrize(
    ("arg", "kind"),
    [
        ("fixtures/seed_models.py:SimpleModel", SourceKind.TORCH_CODE),
        ("fixtures.seed_models:frozen_conv_complex_model", SourceKind.TORCH_CODE),
    ],
)
def test_detect_code_sources(arg: str, kind: SourceKind, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    source = detect_source(arg)
    assert source.kind is kind
    assert source.attr in ("SimpleModel", "frozen_conv_complex_model")


def test_detect_folders(tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert detect_source(str(tmp_path / "hf")).kind is SourceKind.HF_FOLDER
    assert detect_source(str(tmp_path / "sm")).kind is SourceKind.SAVED_MODEL
    with pytest.raises(SourceError, match="neither"):
        detect_source(str(tmp_path))


def test_missing_extra_is_one_actionable_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    source = detect_source(str(ROOT / "fixtures" / "seed_models.py") + ":SimpleModel")
    with pytest.raises(MissingExtraError, match=r"pip install 'modelsize\[torch\]'"):
        convert_source(source, tmp_path / "m.onnx")


def test_output_folder_must_exist(tmp_path: Path) -> None:
    source = detect_source(str(ROOT / "fixtures" / "seed_models.py") + ":SimpleModel")
    with pytest.raises(OutputPathError, match="does not exist"):
        convert_source(source, tmp_path / "nope" / "m.onnx")
