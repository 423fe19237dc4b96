"""A tiny headless-Chromium driver over the DevTools protocol on a pipe (`--remote-debugging-pipe`): standard
library only. Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4.
Used by the browser test of the classroom page and to take its screenshots by hand:

    python tests/cdp.py figures/demo.html 1920x1080 shot.png [--full] [--js EXPRESSION]
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import PATIENCE_S


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _above(fd: int, low: int) -> int:
    """A copy of `fd` numbered at least `low` (the original is closed)."""
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium with one page; `call` sends a command to the page and waits for its reply."""

    def __init__(self, exe: str, width: int, height: int, timeout: float = PATIENCE_S):
        self.timeout, self.next_id, self.buf, self.events = timeout, 0, b"", []
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        # above fd 4, so that the child's dup2 onto fds 3 and 4 cannot overwrite one of them
        cmd_r, res_w = (_above(fd, 10) for fd in (cmd_r, res_w))
        self.profile = tempfile.TemporaryDirectory()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                 "--hide-scrollbars", "--disable-extensions", f"--user-data-dir={self.profile.name}", "about:blank"]

        def as_fds_3_and_4():  # in the child, before exec; os.dup2 makes the copies inheritable
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen([exe, *flags], preexec_fn=as_fds_3_and_4, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.resize(width, height)
        self.call("Page.enable")

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _read(self) -> dict:
        end = time.monotonic() + self.timeout
        while b"\0" not in self.buf:
            if not select.select([self.res_r], [], [], max(0.0, end - time.monotonic()))[0]:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self.res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None) -> dict:
        return self._send(method, params, self.session)

    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": width < 700})

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()})
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._read())

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, full_page: bool = False) -> bytes:
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            w, h = self.js("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", params)["data"])

    def close(self) -> None:
        try:
            self._send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)
        os.close(self.res_r)
        self.profile.cleanup()


def _main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Screenshot a page in headless Chromium.")
    ap.add_argument("page")
    ap.add_argument("size", help="WIDTHxHEIGHT of the window, e.g. 1920x1080 or 390x844")
    ap.add_argument("out", help="PNG to write")
    ap.add_argument("--js", help="a JavaScript expression to run first, e.g. a click on a button")
    ap.add_argument("--full", action="store_true", help="the whole page, not only the window")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    b = Browser(find_chromium(), w, h)
    try:
        b.open(Path(args.page))
        if args.js:
            b.js(args.js)
        Path(args.out).write_bytes(b.screenshot(full_page=args.full))
    finally:
        b.close()


if __name__ == "__main__":
    _main()
