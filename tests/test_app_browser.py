"""End to end in headless Debian Chromium with Playwright: `gradlens app` serving the prepared run store of
test_app.py on 127.0.0.1, and that store's audit `report.html` opened from disk. Every app page must show its title and
a rendered Plotly chart, with no error on screen, no traceback in the server's log, no Deploy button and no request
leaving this machine; the first page must paint within 5 s. The report must open on its conclusions, whose numbers are
report.json's. In the report and on the app's pages alike: shared colour ranges and a colour bar on compared contours,
bands inside their quantity's range and a visible trace for every legend entry. Screenshots go to the test's tmp folder and to $GRADLENS_SCREENSHOTS when
set."""
import os
import shutil
import socket
import subprocess
import sys
import re
import time
import urllib.request
from pathlib import Path

import pytest

from gradlens.analysis.audit import AuditReport
from gradlens.conclusions import conclusions
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


def _need_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """(url, log) of `gradlens app --runs <prepared store> --port <free port>`, running until the module's tests
    end."""
    _need_browser()
    store, port = prepared_store(tmp_path_factory), _free_port()
    log = tmp_path_factory.mktemp("app-server") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "gradlens.cli", "app", "--runs", str(store), "--port",
                                   str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, log)
        yield url, log
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
def test_every_page_renders_in_a_real_browser(app_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app_url, log = app_server
    requested = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            page.on("request", lambda request: requested.append(request.url))
            start = time.perf_counter()
            page.goto(app_url)
            page.get_by_role("heading", name="Gradient audit overview", exact=True).wait_for(timeout=30_000)
            first_paint = time.perf_counter() - start
            print(f"first paint of the Overview: {first_paint:.2f} s")
            _settled(page, "Gradient audit overview")
            expect(page.get_by_text("gradient is the closest to the simulator's")).to_be_visible()
            expect(page.get_by_text(f"Skipped run folder {BROKEN}")).to_be_visible()
            expect(page.get_by_text(f"run folder {AUDIT}").filter(has_text="System linear")).to_be_visible()
            assert page.get_by_text("Deploy", exact=True).count() == 0  # the viewer's toolbar
            figures = {"Overview": page.evaluate(_FIGURES)}
            _shoot(page, "overview", tmp_path)

            for link, title in PAGES:
                page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
                if title == "Run an audit":  # a form, no chart
                    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=30_000)
                    expect(page.get_by_role("button", name="Run the audit")).to_be_visible()
                    assert page.locator("[data-testid='stException']").count() == 0
                else:
                    _settled(page, title)
                    figures[link] = page.evaluate(_FIGURES)
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
    outside = sorted({url for url in requested if not url.startswith((app_url, "data:", "blob:"))})
    assert not outside, f"the app fetched from outside this machine (it must work offline): {outside[:5]}"
    server_log = log.read_text()
    assert "Traceback" not in server_log and "ImportError" not in server_log, server_log[-3000:]
    every = [figure for page_figures in figures.values() for figure in page_figures]
    assert _check_bands(every) and _check_contours(every)  # the Overview's gradients, the Landscapes' plane
    _check_legends(every)


# -------------------------------------------------------------------------------------------- report.html, from disk
_FIGURES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
    id: gd.id,
    title: (gd.layout.title && gd.layout.title.text) || '',
    data: gd.data.map(t => ({type: t.type || 'scatter', name: t.name, fill: t.fill || null, y: t.y || null,
                             yaxis: t.yaxis || 'y', zmin: t.zmin, zmax: t.zmax, showscale: t.showscale,
                             visible: t.visible === undefined ? true : t.visible,
                             showlegend: t.showlegend === undefined ? true : t.showlegend})),
    legend: [...gd.querySelectorAll('.legend .traces')].map(item => ({
        text: item.querySelector('.legendtext').textContent,
        opacity: Number(getComputedStyle(item).opacity)})),
    colorbars: gd.querySelectorAll('.colorbar').length,
    annotations: (gd.layout.annotations || []).map(a => a.text),
    ranges: Object.fromEntries(Object.keys(gd._fullLayout).filter(k => k.startsWith('yaxis'))
                               .map(k => [k, gd._fullLayout[k].range]))}))"""


@pytest.mark.slow
def test_report_html_opens_on_its_conclusions_and_its_figures_do_not_mislead(tmp_path_factory, tmp_path):
    from playwright.sync_api import sync_playwright

    _need_browser()
    folder = prepared_store(tmp_path_factory) / AUDIT
    report = AuditReport.load(folder / "report.json")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto((folder / "report.html").as_uri())
            page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            headings = page.locator("h2").all_inner_texts()
            shown = page.locator("#conclusions + ul").inner_text()
            figures = page.evaluate(_FIGURES)
            _shoot(page, "report", tmp_path)
        finally:
            browser.close()

    assert headings[0] == "Conclusions"
    # the first sentence names the closest model at the largest H with report.json's cosine and relative error
    h = max(report.horizons)
    first = conclusions(report).findings[0]
    best = first.split("'s gradient", 1)[0]
    row = next(r for r in report.gradients
               if (r["method"], r["horizon"], r["estimator"]) == (best, h, "first-order"))
    cosine, lo, hi, error = re.search(rf"H = {h}: cosine ([-\d.e]+) \(95 % CI \[([-\d.e]+), ([-\d.e]+)\]\), "
                                      r"relative error ([-\d.e+]+)", shown).groups()
    assert [float(lo), float(hi)] == pytest.approx(row["cosine_ci"], abs=10 ** -min(len(lo.split(".")[-1]),
                                                                                   len(hi.split(".")[-1])))
    assert float(cosine) == pytest.approx(row["cosine"], abs=10 ** -(len(cosine.split(".")[-1])))
    assert float(error) == pytest.approx(row["relative_error"], rel=5e-3)
    assert all(sentence in shown for sentence in conclusions(report).findings)

    assert _check_bands(figures) and _check_contours(figures)
    _check_legends(figures)


def _check_bands(figures) -> int:
    """Each gradient-statistics figure's bands are 95 % bootstrap intervals inside their quantity's range (cosine in
    [-1, 1], the others >= 0); the number of such figures."""
    checked = 0
    for grads in (f for f in figures if f["title"].startswith("Policy-gradient statistics")):
        bands = [t for t in grads["data"] if t["fill"] == "toself"]
        assert bands and all(t["name"].endswith("95 % bootstrap CI") for t in bands)
        cos_axis = max(t["yaxis"] for t in grads["data"])  # the last panel: cosine
        for band in bands:
            values = [v for v in band["y"] if v is not None]
            assert min(values) >= (-1 if band["yaxis"] == cos_axis else 0), band["name"]
            assert band["yaxis"] != cos_axis or max(values) <= 1, band["name"]
        checked += 1
    return checked


def _check_contours(figures) -> int:
    """Each random-plane figure's compared panels share one colour range and one drawn colour bar, and a panel on
    its own range says so in its title; the number of such figures."""
    checked = 0
    for plane in (f for f in figures if f["title"].startswith("Return on a random plane")):
        contours = [t for t in plane["data"] if t["type"] == "contour"]
        panels = list(zip(contours, plane["annotations"]))
        compared = [c for c, title in panels if "own colour range" not in title]
        assert compared and len({(c["zmin"], c["zmax"]) for c in compared}) == 1  # the simulator's panel and peers
        assert sum(bool(c["showscale"]) for c in compared) == 1 and plane["colorbars"] == 1  # one bar, drawn
        for contour, title in panels:
            if contour not in compared:
                assert f"own colour range {contour['zmin']:.3g} to {contour['zmax']:.3g}" in title, title
        checked += 1
    return checked


def _check_legends(figures) -> None:
    """Every legend entry is opaque and has a visible trace with data."""
    for figure in figures:
        for item in figure["legend"]:
            assert item["opacity"] > 0.5, (figure["title"], item)
            drawn = [t for t in figure["data"] if t["name"] == item["text"] and t["visible"] is True
                     and (t["y"] is None or any(v is not None for v in t["y"]))]
            assert drawn, (figure["title"], item["text"])
