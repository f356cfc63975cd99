"""Drive headless Chromium over the DevTools protocol, through a pipe (no extra package).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its file
descriptor 3 and writes replies and events to descriptor 4, one JSON message per NUL byte.
:class:`Browser` opens one page, records every network request, console message and
uncaught exception, and moves and clicks the mouse as a person would.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
]


def chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium page (``with Browser() as page: page.open(path)``)."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        exe = chromium()
        assert exe is not None, "chromium is not installed"
        # chromium's helper processes may still write to the profile as it is removed
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.downloads = Path(self._profile.name) / "downloads"
        self.downloads.mkdir()
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def give_pipes() -> None:
            # in the child: the browser reads descriptor 3 and writes descriptor 4
            reads, writes = (
                fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)
            )
            os.dup2(reads, 3)
            os.dup2(writes, 4)

        self._proc = subprocess.Popen(
            [
                exe,
                *FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=give_pipes,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.errors: list[str] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )
        self.call(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(self.downloads)},
        )

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            self._proc.terminate()
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()

    # -- protocol ------------------------------------------------------------------------------

    def _read_message(self, timeout: float) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        if "method" in message:
            self._record(message)
        return message

    def _record(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: bool = False,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Send one command and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for an event (or return one already seen since the last navigation)."""
        for event in self.events:
            if event["method"] == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline - time.monotonic())
            if message.get("method") == method:
                return message

    def pump(self, seconds: float) -> None:
        """Let the page run for ``seconds``, recording its events."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._read_message(deadline - time.monotonic())
            except TimeoutError:
                return

    # -- page ----------------------------------------------------------------------------------

    def open(self, path: Path, ready: str = "true", timeout: float = 90) -> None:
        """Load ``path`` and wait until the JavaScript expression ``ready`` is true."""
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        self.wait_for("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout
        while not self.js(ready):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never got ready ({ready}); errors: {self.errors}")
            self.pump(0.2)

    def js(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page and return its (JSON) value."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 15) -> Any:
        """Let the page run until the JavaScript ``expression`` is truthy; return its value
        (the last one, falsy, when ``timeout`` passes first)."""
        deadline = time.monotonic() + timeout
        value = self.js(expression)
        while not value and time.monotonic() < deadline:
            self.pump(0.2)
            value = self.js(expression)
        return value

    def center_of(self, selector: str) -> tuple[float, float]:
        """Scroll the first element matching ``selector`` into view; its centre, in pixels."""
        box = self.js(
            f"(function () {{ var el = document.querySelector({json.dumps(selector)});"
            "if (!el) { return null; } el.scrollIntoView({block: 'center'});"
            "var r = el.getBoundingClientRect();"
            "return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        assert box is not None, f"nothing matches {selector}"
        return float(box[0]), float(box[1])

    def hover(self, x: float, y: float) -> None:
        """Move the mouse to ``(x, y)``."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y}, session=True)
        self.pump(0.5)

    def click(self, x: float, y: float) -> None:
        """Press and release the left button at ``(x, y)``."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
                session=True,
            )
        self.pump(0.5)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page."""
        data = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
            session=True,
        )["data"]
        path.write_bytes(base64.b64decode(data))
