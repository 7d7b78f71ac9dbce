"""End to end: `gradlens app` serving the prepared run store of test_app.py on 127.0.0.1, driven in headless Debian
Chromium with Playwright. Every page must show its title and a rendered Plotly chart, with no error or traceback; the
first page must paint within 5 s. Screenshots go to the test's tmp folder and to $GRADLENS_SCREENSHOTS when set."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_app import AUDIT, BROKEN, prepared_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [("Gradient paths", "Gradient paths"), ("Jacobians", "Jacobian chains"),
         ("Landscapes", "Return landscapes"), ("Learning curves", "Learning curves"), ("Run an audit", "Run an audit")]
FIRST_PAINT_LIMIT_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gradlens app exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"gradlens app did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`gradlens app --runs <prepared store> --port <free port>`, running until the module's tests end."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    store, port = prepared_store(tmp_path_factory), _free_port()
    log = tmp_path_factory.mktemp("app-server") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "gradlens.cli", "app", "--runs", str(store), "--port",
                                   str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _shoot(page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("GRADLENS_SCREENSHOTS"):
        folder = Path(os.environ["GRADLENS_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)


def _settled(page, title: str) -> None:
    """Wait for the page titled `title`, its script run finished and a Plotly chart drawn; no error on screen."""
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=30_000)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=60_000)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.wait_for_timeout(500)  # let Plotly finish its layout before a screenshot


@pytest.mark.slow
def test_every_page_renders_in_a_real_browser(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            start = time.perf_counter()
            page.goto(app_url)
            page.get_by_role("heading", name="Gradient audit overview", exact=True).wait_for(timeout=30_000)
            first_paint = time.perf_counter() - start
            print(f"first paint of the Overview: {first_paint:.2f} s")
            _settled(page, "Gradient audit overview")
            expect(page.get_by_text("gradient is the closest to the simulator's")).to_be_visible()
            expect(page.get_by_text(f"Skipped run folder {BROKEN}")).to_be_visible()
            expect(page.get_by_text(f"run folder {AUDIT}").filter(has_text="System linear")).to_be_visible()
            _shoot(page, "overview", tmp_path)

            for link, title in PAGES:
                page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
                if title == "Run an audit":  # a form, no chart
                    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=30_000)
                    expect(page.get_by_role("button", name="Run the audit")).to_be_visible()
                    assert page.locator("[data-testid='stException']").count() == 0
                else:
                    _settled(page, title)
                _shoot(page, link.lower().replace(" ", "-"), tmp_path)

            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Gradient paths").click()
            _settled(page, "Gradient paths")
            page.get_by_text("closed loop", exact=True).click()
            page.get_by_test_id("stMetricValue").filter(has_text="16").wait_for(timeout=30_000)  # stop-gradient: 2^4
            page.get_by_text("Stop-gradient", exact=True).click()
            page.get_by_test_id("stMetricValue").filter(has_text="81").wait_for(timeout=30_000)  # full loop: 3^4
            _shoot(page, "gradient-paths-closed-loop", tmp_path)

            runs_box = page.get_by_test_id("stSidebar").get_by_role("textbox", name="Run store")
            runs_box.fill(str(tmp_path / "empty-store"))
            runs_box.press("Enter")
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Overview").click()
            expect(page.get_by_role("button", name="Run the demo")).to_be_visible(timeout=30_000)
            _settled(page, "Gradient audit overview")
            _shoot(page, "overview-empty-store", tmp_path)
        finally:
            browser.close()
    assert first_paint < FIRST_PAINT_LIMIT_S, f"first paint took {first_paint:.2f} s"
