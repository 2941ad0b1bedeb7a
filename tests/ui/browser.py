"""Debian's headless Chromium driven over the DevTools protocol (a websocket), for tests that look at
what the Prefect UI renders. No browser download: the `chromium` package, or the test skips (fails
under CI=true)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.services import free_port, unavailable

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".screenshots"
# The flags that work on these machines (DESIGN.md), plus no network of Chromium's own.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]  # fmt: skip


class Browser:
    def __init__(self) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if not binary:
            unavailable("Debian's chromium is not installed (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="provenflow-chromium-")
        port = free_port()
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        page = self._page(port)
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=20)
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def _page(self, port: int) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                unavailable(f"chromium exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    return pages[0]
            except OSError:
                pass
            time.sleep(0.3)
        unavailable("chromium's DevTools endpoint did not answer within 30 s")
        raise AssertionError("unreachable")

    def send(self, method: str, **params) -> dict:
        call = next(self._ids)
        self.ws.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *texts: str, timeout: float = 90) -> str:
        """The page's rendered text once it shows all TEXTS (the UI renders after its API calls)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(t in text for t in texts):
                return text
            time.sleep(0.5)
        missing = [t for t in texts if t not in text]
        shot = self.screenshot(f"failed-{int(time.time())}")
        raise AssertionError(f"the page never showed {missing} (screenshot {shot}); it shows:\n{text[:3000]}")

    def on_screen(self, text: str, tags: str = "th, td, [role=columnheader], span, div, a, p") -> dict | None:
        """Where the first element whose own text is TEXT sits, and whether it lies wholly inside the window
        (no scrolling, neither across nor down); None when there is no such element."""
        return self.evaluate(
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(tags)})].find(e => "
            f"e.innerText && e.innerText.trim() === {json.dumps(text)} && e.getBoundingClientRect().width > 0);"
            " if (!el) return null; const r = el.getBoundingClientRect();"
            " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,"
            " inside: r.left >= 0 && r.top >= 0 && r.right <= window.innerWidth && r.bottom <= window.innerHeight,"
            " width: window.innerWidth, height: window.innerHeight}; })()"
        )

    def image_on_screen(self, alt: str) -> dict | None:
        """The first image with ALT: drawn (its natural width > 0) and wholly inside the window?"""
        return self.evaluate(
            f"(() => {{ const i = [...document.querySelectorAll('img')].find(i => i.alt === {json.dumps(alt)});"
            " if (!i) return null; const r = i.getBoundingClientRect();"
            " return {drawn: i.complete && i.naturalWidth > 0, right: r.right, bottom: r.bottom,"
            " inside: r.left >= 0 && r.top >= 0 && r.right <= window.innerWidth && r.bottom <= window.innerHeight};"
            " })()"
        )

    def links(self) -> list[dict]:
        return self.evaluate(
            "[...document.querySelectorAll('a')].map(a => ({text: a.innerText, href: a.href}))"
        )

    def click(self, label: str) -> None:
        """Click the first button or link whose text is LABEL."""
        found = self.evaluate(
            "(() => { const el = [...document.querySelectorAll('button, a, [role=button]')]"
            f".find(e => e.innerText.trim() === {json.dumps(label)}); if (el) el.click(); return !!el; }})()"
        )
        assert found, f"no button {label!r} on the page"

    def choose(self, value: str) -> None:
        """Pick VALUE in the (native) select that offers it, as a user's click would: with a change event."""
        found = self.evaluate(
            "(() => { const s = [...document.querySelectorAll('select')].find(s => [...s.options]"
            f".some(o => o.value === {json.dumps(value)})); if (!s) return false; s.value = {json.dumps(value)};"
            " s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()"
        )
        assert found, f"no select offers {value!r}"

    def type_into(self, *texts: str, within: str = ".p-modal") -> None:
        """Type TEXTS into the text fields inside WITHIN, in the order they appear (input events fire)."""
        filled = self.evaluate(
            f"(() => {{ const areas = document.querySelector({json.dumps(within)}).querySelectorAll('textarea, input[type=text]');"
            f" const texts = {json.dumps(list(texts))}; texts.forEach((t, i) => {{ areas[i].value = t;"
            " areas[i].dispatchEvent(new Event('input', {bubbles: true})); }); return areas.length; })()"
        )
        assert filled >= len(texts), f"{filled} text fields for {len(texts)} texts"

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            # The whole group: Chromium's helper processes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            shutil.rmtree(self.profile, ignore_errors=True)
