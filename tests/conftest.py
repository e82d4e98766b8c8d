"""Shared test fixtures and the --update-golden option."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def zoo_path() -> Path:
    return FIXTURES / "storage_zoo.onnx"


@pytest.fixture(scope="session")
def simple_path() -> Path:
    return FIXTURES / "seed_simple.onnx"


@pytest.fixture(scope="session")
def complex_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.builders import seed_complex, write

    return write(seed_complex(), tmp_path_factory.mktemp("complex") / "seed_complex.onnx")
