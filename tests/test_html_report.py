"""HTML reports: self-contained files that a real browser renders offline, every plot drawn.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, installed by scripts/setup.sh) with
Playwright, loading each report from a ``file://`` URL with every request other than the file itself
aborted. Where the browser cannot be started they fail loudly (set MODELSIZE_SKIP_BROWSER=1 to skip
them on purpose, e.g. on a machine without Chromium).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from cli.report_html import compare_html, fit_html, inspect_html, memory_estimate_html, profile_html
from converters.profile_source import SourceProfile
from fixtures.builders import seed_complex, storage_zoo, write
from graph_analysis import analyze
from graph_analysis.compute import count_compute
from graph_analysis.deploy import FitPrecision, fit_model
from graph_analysis.memory import estimate_memory

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = (
    Path(os.environ.get("MODELSIZE_SCREENSHOTS", ""))
    if os.environ.get("MODELSIZE_SCREENSHOTS")
    else None
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    cnn = write(seed_complex(), folder / "cnn.onnx")
    zoo = write(storage_zoo(), folder / "zoo.onnx")
    pages = {
        "inspect": inspect_html(analyze(zoo, deep=True)),
        "memory": memory_estimate_html(
            estimate_memory(cnn, train=True), "modelsize memory: cnn.onnx"
        ),
        "profile": profile_html(SourceProfile(str(cnn), count_compute(cnn))),
        "fit": fit_html(
            fit_model(cnn, 64 * 2**20, precisions=[FitPrecision.FP32, FitPrecision.INT8])
        ),
    }
    from graph_analysis.bindings import parse_bindings
    from graph_analysis.runtime.compare import compare_models

    pages["compare"] = compare_html(compare_models([cnn, cnn], parse_bindings(), runs=2))
    out = {}
    for name, text in pages.items():
        path = folder / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        out[name] = path
    return out


def test_reports_are_self_contained_and_small(reports: dict[str, Path]) -> None:
    for name, path in reports.items():
        text = path.read_text(encoding="utf-8")
        assert "<script" not in text, name
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), name
        assert "<svg" in text and "<figcaption>" in text, name
        assert path.stat().st_size < 200_000, (name, path.stat().st_size)
        # Headline figures are text, readable without JavaScript or SVG.
        assert '<dl class="facts">' in text, name


def test_inspect_report_figures(reports: dict[str, Path]) -> None:
    text = reports["inspect"].read_text(encoding="utf-8")
    assert "960" in text  # storage_zoo's parameters, counted
    assert "Parameters by layer" in text and "Counted." in text


def _browser():  # type: ignore[no-untyped-def]
    if os.environ.get("MODELSIZE_SKIP_BROWSER"):
        pytest.skip("MODELSIZE_SKIP_BROWSER is set: browser tests skipped on purpose")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev group")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(bash scripts/setup.sh installs it; MODELSIZE_SKIP_BROWSER=1 skips on purpose)"
        )
    return playwright


@pytest.mark.parametrize("name", ["inspect", "memory", "profile", "fit", "compare"])
def test_report_renders_offline_in_chromium(
    reports: dict[str, Path], name: str, tmp_path: Path
) -> None:
    sync_api = _browser()
    path = reports[name]
    url = path.resolve().as_uri()
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run",
            ],
        )  # fmt: skip
        try:
            page = browser.new_page(java_script_enabled=False)

            def route(r):  # type: ignore[no-untyped-def]
                requests.append(r.request.url)
                if r.request.url == url:
                    r.continue_()
                else:
                    r.abort()

            page.route("**/*", route)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            svgs = page.locator("svg")
            assert svgs.count() >= 1
            for i in range(svgs.count()):
                box = svgs.nth(i).bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 100
                marks = svgs.nth(i).locator(".mark")
                assert marks.count() > 0, f"{name}: plot {i} draws nothing"
                assert any(
                    (marks.nth(k).bounding_box() or {"width": 0})["width"] > 0
                    for k in range(min(marks.count(), 20))
                )
            shot = (SCREENSHOTS or tmp_path) / f"report-{name}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 5_000
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if u != url] == []


def test_chromium_present_where_setup_ran() -> None:
    if os.environ.get("MODELSIZE_SKIP_BROWSER"):
        pytest.skip("MODELSIZE_SKIP_BROWSER is set")
    assert shutil.which("chromium") or Path(CHROMIUM).exists(), (
        "chromium is not installed: run bash scripts/setup.sh (it installs Debian's chromium)"
    )


def test_cli_writes_html_reports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    runner = CliRunner()
    model = write(seed_complex(), tmp_path / "cnn.onnx")
    for args in (
        ["memory", str(model), "--train"],
        ["profile", str(model), "--count-only"],
        ["fit", str(model), "--memory", "1GiB", "--precision", "fp32"],
    ):
        out = tmp_path / f"{args[0]}.html"
        result = runner.invoke(app, [*args, "--format", "html", "-o", str(out)])
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(f"wrote {out}")
        text = out.read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text
        assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    missing = runner.invoke(app, ["memory", str(model), "--format", "html"])
    assert missing.exit_code == 2 and "-o report.html" in missing.stderr
    unsupported = runner.invoke(app, ["check", str(model), "--max-params", "1", "--format", "html"])
    assert unsupported.exit_code == 2 and "no HTML report" in unsupported.stderr
    stray = runner.invoke(app, ["memory", str(model), "-o", str(tmp_path / "x.json")])
    assert stray.exit_code == 2 and not (tmp_path / "x.json").exists()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
