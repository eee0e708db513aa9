"""Open an executed notebook in JupyterLab under headless Chromium and save a screenshot: the
check that a reader who runs `make lab` sees the walk-through with its tables and figures.

    python scripts/screenshot_lab.py                      # notebooks/executed/05_paper.ipynb
    python scripts/screenshot_lab.py --out lab.png --notebook notebooks/executed/06_figures.ipynb

It starts this project's JupyterLab (``.venv/bin/jupyter lab``, no token, a free local port),
opens the notebook in a headless Chromium driven by Playwright, waits until the notebook's first
figure has rendered, scrolls it into view, saves the screenshot, prints what it found (the
number of rendered images and tables, the first heading) and stops the server. Exit status 1
when no figure renders.

Needs Chromium and Playwright, which the project does not install: on Debian
``apt-get install chromium`` and ``pip install playwright`` (in any Python: the script drives the
browser at ``--chromium``, default ``/usr/bin/chromium``; Playwright downloads nothing).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {seconds:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notebook", default="notebooks/executed/05_paper.ipynb")
    ap.add_argument("--out", type=Path, default=Path("lab_screenshot.png"))
    ap.add_argument("--jupyter", default=str(REPO / ".venv" / "bin" / "jupyter"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    if not (REPO / args.notebook).is_file():
        print(f"screenshot_lab.py: {args.notebook} not found (run the pipeline first)",
              file=sys.stderr)
        return 2
    port = free_port()
    command = [args.jupyter, "lab", "--no-browser", f"--port={port}", "--ServerApp.token=",
               "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
               f"--ServerApp.root_dir={REPO}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # JupyterLab refuses root otherwise
        command.append("--allow-root")
    log = args.out.with_suffix(".server.log")
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                  env={**os.environ})
    try:
        try:
            wait_for(f"http://127.0.0.1:{port}/lab", args.timeout)
        except TimeoutError:
            print(log.read_text()[-2000:], file=sys.stderr)
            raise
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{args.notebook}")
            image = page.locator(".jp-Notebook .jp-OutputArea-output img").first
            image.wait_for(state="visible", timeout=args.timeout * 1000)
            image.scroll_into_view_if_needed()
            time.sleep(1.0)  # let the layout settle
            page.screenshot(path=str(args.out))
            images = page.locator(".jp-Notebook .jp-OutputArea-output img").count()
            tables = page.locator(".jp-Notebook .jp-OutputArea-output table").count()
            heading = page.locator(".jp-Notebook h1").first.inner_text()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.notebook} in JupyterLab: heading {heading!r}, {images} rendered image(s), "
          f"{tables} table(s); screenshot {args.out}")
    return 0 if images else 1


if __name__ == "__main__":
    sys.exit(main())
