"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a server
under load: every panel shows data, one hover moves the cursor on every chart to the same second,
and nothing is fetched from anywhere but the carpool server. Keeps a screenshot in
tests/integration/artifacts/dashboard.png."""
import os
import shutil

import pytest

from metrics_util import Load

CHROMIUM = os.environ.get("CARPOOL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
PANELS = ["traffic", "latency", "batch", "compute", "memory", "bandwidth", "replicas"]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                reason="chromium not installed (Debian package chromium)")


def test_dashboard_under_load(server, tmp_path):
    load = Load(server.url, concurrency=3, max_tokens=12)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            foreign, errors = [], []
            page.on("request", lambda r: None if r.url.startswith(server.url)
                    else foreign.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            # Every panel has values (the page polls once a second in "live").
            page.wait_for_function(
                """panels => { const n = window.carpoolDashboard &&
                                   window.carpoolDashboard.pointsByPanel();
                               return n && panels.every(p => n[p] > 0); }""",
                arg=PANELS, timeout=45000)
            counts = page.evaluate("window.carpoolDashboard.pointsByPanel()")
            assert all(counts[p] > 0 for p in PANELS), counts
            advice = page.inner_text("#advice")
            assert advice and "waiting for figures" not in advice
            assert "smollm2" in page.inner_text("#model")
            assert "measured" in page.inner_text("#peaks")

            charts = page.locator(".chart")
            n = charts.count()
            assert n >= len(PANELS)
            # Hover the first chart, then the last one near the newest second (for the screenshot).
            for index, at in [(0, 0.7), (n - 1, 0.97)]:
                charts.nth(index).scroll_into_view_if_needed()
                box = charts.nth(index).bounding_box()
                page.mouse.move(box["x"] + 10, box["y"] + 10)
                page.mouse.move(box["x"] + box["width"] * at, box["y"] + box["height"] * 0.5,
                                steps=5)
                page.wait_for_timeout(100)
                times = page.evaluate("window.carpoolDashboard.selectedTimes()")
                assert len(times) == n
                assert times[0] is not None and all(t == times[0] for t in times), times
                legends = page.locator(".legend").all_inner_texts()
                assert all(text.strip() for text in legends), legends
            os.makedirs(ARTIFACTS, exist_ok=True)
            shot = os.path.join(ARTIFACTS, "dashboard.png")
            page.screenshot(path=shot, full_page=True)
            assert os.path.getsize(shot) > 10000
            # A range switch keeps every chart on one axis.
            page.click("#ranges button[data-range='5m']")
            page.wait_for_timeout(1500)
            ranges = page.evaluate("""window.carpoolDashboard.charts().map(c => {
                const r = c.graph.xAxisRange(); return [r[0], r[1]]; })""")
            assert all(r == ranges[0] for r in ranges), ranges
            assert ranges[0][1] - ranges[0][0] >= 290 * 1000
            browser.close()
            assert not foreign, foreign
            assert not errors, errors
    finally:
        load.stop()


def test_dashboard_key_prompt_complete_seconds_and_unreachable_server():
    from conftest import Server
    server = Server(api_key="sekret")
    stopped = False
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            answers, errors = ["wrong", None], []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def on_dialog(d):
                a = answers.pop(0) if answers else None
                d.accept(a) if a else d.dismiss()
            page.on("dialog", on_dialog)
            nows, tos = [], []
            page.on("response", lambda r: nows.append(r.json()["now"])
                    if r.url.endswith("/api/v1/status") and r.ok else None)
            page.on("request", lambda r: tos.append(int(r.url.split("&to=")[1].split("&")[0]))
                    if "/api/v1/series" in r.url else None)
            page.goto(server.url + "/")
            # A wrong key, then a cancelled prompt: the key is not kept and the page stops asking.
            page.wait_for_selector("#key:not([hidden])", timeout=20000)
            assert page.evaluate("localStorage.getItem('carpool_key')") is None
            assert "API key" in page.inner_text("#advice")
            page.wait_for_timeout(2500)
            assert not answers  # no further prompt after the cancel
            answers.append("sekret")
            page.click("#key")
            page.wait_for_function("window.carpoolDashboard.pointsByPanel().traffic > 0",
                                   timeout=30000)
            assert page.evaluate("localStorage.getItem('carpool_key')") == "sekret"
            assert page.is_hidden("#key")
            # Only complete seconds are asked for: the series end where the status's second begins.
            assert tos and tos[-1] == nows[-1], (tos[-3:], nows[-3:])
            # The server goes away: the charts are greyed and the advice says since when.
            assert server.stop() == 0
            stopped = True
            page.wait_for_function("document.body.classList.contains('stale')", timeout=20000)
            assert "unreachable since" in page.inner_text("#advice")
            browser.close()
            assert not errors, errors
    finally:
        if not stopped:
            server.stop()
