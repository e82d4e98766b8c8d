"""The fuzzer in the test suite: every crash it ever found stays fixed, and a short seeded run finds
nothing new. The property checked for every input: each exception escaping ``read_model``,
``analyze`` (also with ``deep=True``) and ``load_skeleton`` is an ``InputError``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from . import oracle
from .oracle import check
from .run import REGRESSIONS, campaign
from .seeds import build_seeds, load_case, save_case

_CASES = sorted(p for p in REGRESSIONS.iterdir() if (p / "m.onnx").is_file())


def _materialize(folder: Path, tmp_path: Path) -> Path:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    return save_case(load_case(folder), tmp_path / "case")


def test_there_are_regression_cases() -> None:
    assert len(_CASES) >= 6
    assert all(sum(f.stat().st_size for f in c.rglob("*") if f.is_file()) < 200_000 for c in _CASES)


@pytest.mark.parametrize("folder", _CASES, ids=[c.name for c in _CASES])
def test_regression_case_is_refused_or_read_cleanly(folder: Path, tmp_path: Path) -> None:
    finding, _read = check(_materialize(folder, tmp_path), time_limit_s=60)
    assert finding is None, finding


def test_every_seed_is_read() -> None:
    # The seeds are valid models: the oracle must see them read, or the campaign only tests refusals.
    import tempfile

    for case in build_seeds():
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "outside.bin").write_bytes(b"")
            finding, read = check(save_case(case, Path(tmp) / "case"))
        assert finding is None and read, (case.name, finding)


def test_fuzz_smoke() -> None:
    # Deterministic for a given seed; the time cap only bounds a very slow machine.
    start = time.monotonic()
    result = campaign(seed=20261201, iterations=500, seconds=75)
    assert result.iterations >= 100 or time.monotonic() - start >= 75
    assert result.accepted > 0 and result.refused > 0
    assert not result.findings, [f for f, _case in result.findings.values()]


# -- the oracle itself ------------------------------------------------------------------------------


@pytest.fixture
def seed_path(tmp_path: Path) -> Path:
    (tmp_path / "outside.bin").write_bytes(b"")
    return save_case(build_seeds()[0], tmp_path / "case")


def test_oracle_reports_an_escaping_exception(
    seed_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_path: Path) -> None:
        raise KeyError("boom")

    monkeypatch.setitem(oracle.TARGETS, "broken", broken)
    finding, _ = check(seed_path, targets=("broken",))
    assert finding is not None and finding.kind == "KeyError"


def test_oracle_reports_a_hang(seed_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(oracle.TARGETS, "slow", lambda _path: time.sleep(5))
    finding, _ = check(seed_path, targets=("slow",), time_limit_s=0.2)
    assert finding is not None and finding.kind == "hang"


def test_oracle_reports_a_file_outside_the_folder(
    seed_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = seed_path.parent.parent / "outside.bin"
    monkeypatch.setitem(oracle.TARGETS, "peek", lambda _path: outside.read_bytes())
    finding, _ = check(seed_path, targets=("peek",))
    assert finding is not None and finding.kind == "touched"


def test_memory_never_hangs_on_the_fuzzer_finding() -> None:
    """A graph input with a shape but no element type: onnxruntime's symbolic inference spun
    forever; the estimate now skips it (with a note) and answers."""
    from graph_analysis.memory import estimate_memory

    estimate = estimate_memory(REGRESSIONS / "memory-hang-31af8a8f" / "m.onnx")
    assert any("no element type" in note for note in estimate.shapes.notes)
    assert estimate.inference.peak_bytes > 0
