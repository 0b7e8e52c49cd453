#!/usr/bin/env python3
"""Render a dashboard snapshot saved by serve_check.py in a real browser and keep a screenshot.

The GPU machine has no browser, so serve_check.py saves what carpool's dashboard fetched there
under load (its page and assets as served, /api/v1/status and the live range's /api/v1/series).
This script serves those files unchanged on 127.0.0.1 (every /api/v1/series request gets the saved
answer: the live range asks for the same names and window each time), opens the page in Debian's
Chromium through Playwright, waits until every panel has drawn its data, and saves a full-page PNG.

    python3 scripts/gpu/dashboard_replay.py SNAPSHOT_DIR OUT.png
"""
import http.server
import os
import sys
import threading

from playwright.sync_api import sync_playwright

ROUTES = {"/": ("index.html", "text/html"),
          "/api/v1/status": ("status.json", "application/json")}


def handler_for(root):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in ROUTES:
                name, ctype = ROUTES[path]
            elif path == "/api/v1/series":
                name, ctype = "series.json", "application/json"
            elif path.startswith("/assets/") and "/" not in path[len("/assets/"):]:
                name = os.path.join("assets", path[len("/assets/"):])
                ctype = "text/css" if name.endswith(".css") else "application/javascript"
            else:
                self.send_error(404)
                return
            try:
                body = open(os.path.join(root, name), "rb").read()
            except OSError:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    root, png = sys.argv[1], sys.argv[2]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(root))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_function(
                "() => window.carpoolDashboard && Object.values("
                "window.carpoolDashboard.pointsByPanel()).filter((n) => n > 0).length >= 6",
                timeout=20000)
            points = page.evaluate("window.carpoolDashboard.pointsByPanel()")
            header = page.inner_text("header")
            page.screenshot(path=png, full_page=True)
            browser.close()
    finally:
        httpd.shutdown()
    print(header)
    print("points by panel:", points)
    print("screenshot:", png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
