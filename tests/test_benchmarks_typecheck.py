"""The benchmark scripts still match the library they call.

The benchmarks run by hand, never in the suite, so a change to an internal API can break one
silently (``trace_session.py`` unpacked ``weights_and_skeleton``'s old two-field result for a
session after the reading grew a third field). mypy, not strict, over ``benchmarks/`` catches that
class: a wrong arity, a removed name, a renamed keyword.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_type_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "benchmarks",
            "--ignore-missing-imports",
            "--no-strict-optional",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues found in" in done.stdout
