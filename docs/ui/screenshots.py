"""Screenshots of MLflow UI pages in headless Chromium, driven over the DevTools protocol (the
command-line `--screenshot` cannot wait for the page's data or click "Show more").

    .venv/bin/python docs/ui/screenshots.py OUT.png URL WAIT_FOR_TEXT HEIGHT [CLICK ...]

It waits until the page shows WAIT_FOR_TEXT, then clicks each CLICK in turn (a CSS selector,
`text:Show more` for the element with that text, or `js:EXPRESSION`, run as it is, which must
return something truthy), waits until the page settles, and saves a
1600-pixel-wide screenshot. Uses the system's chromium
(apt-get install chromium) and websocket-client (installed with the project's dependencies).
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

WIDTH = 1600
PAGE_TIMEOUT_SECONDS = 120
SETTLE_SECONDS = 30
TEXT_PREFIX, SCRIPT_PREFIX = "text:", "js:"
CLICK_TEXT_SCRIPT = """(() => {
  const found = [...document.querySelectorAll('button, a, span, div')].find(e => e.innerText === %s);
  if (found) { found.click(); return true; } return false; })()"""
CLICK_SELECTOR_SCRIPT = """(() => {
  const found = document.querySelectorAll(%s);
  found.forEach(e => e.click()); return found.length > 0; })()"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    def __init__(self, height: int):
        self.port = _free_port()
        self.profile = tempfile.TemporaryDirectory()
        command = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        command += [f"--remote-debugging-port={self.port}", f"--user-data-dir={self.profile.name}"]
        command += [f"--window-size={WIDTH},{height}", "about:blank"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json") as response:
                    pages = [page for page in json.load(response) if page["type"] == "page"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=PAGE_TIMEOUT_SECONDS)
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                return message.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for_text(self, text: str) -> None:
        deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
        while not self.evaluate(f"document.body && document.body.innerText.includes({json.dumps(text)})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never showed {text!r}")
            time.sleep(1)

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        self.profile.cleanup()


def screenshot(out: str, url: str, wait_for: str, height: int, clicks: list[str]) -> None:
    browser = Browser(height)
    try:
        browser.call("Page.navigate", url=url)
        browser.wait_for_text(wait_for)
        time.sleep(2)
        for click in clicks:
            if click.startswith(SCRIPT_PREFIX):
                script = click.removeprefix(SCRIPT_PREFIX)
            elif click.startswith(TEXT_PREFIX):
                script = CLICK_TEXT_SCRIPT % json.dumps(click.removeprefix(TEXT_PREFIX))
            else:
                script = CLICK_SELECTOR_SCRIPT % json.dumps(click)
            deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
            while not browser.evaluate(script):  # the element may not be drawn yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing to click for {click!r} on {url}")
                time.sleep(1)
            time.sleep(2)
        time.sleep(SETTLE_SECONDS)  # charts draw after their data arrives (slowly on a loaded machine)
        image = browser.call("Page.captureScreenshot", format="png")["data"]
        with open(out, "wb") as handle:
            handle.write(base64.b64decode(image))
    finally:
        browser.close()


if __name__ == "__main__":
    out, url, wait_for, height, *clicks = sys.argv[1:]
    screenshot(out, url, wait_for, int(height), clicks)
