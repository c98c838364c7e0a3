"""Load a page in headless Chromium (Debian's `chromium`) and report what a person would see:
its console errors, the requests it made, and a full-page screenshot.

    with Chromium() as browser:
        seen = browser.load(path_or_url, width=1300, height=900)
    seen.errors        # console.error calls, uncaught exceptions, failed loads, log errors
    seen.requests      # every URL the page asked for
    seen.screenshot    # PNG bytes of the whole page
    seen.value         # what load(..., script=JS) evaluated in the page (JSON)

The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages ended by NUL on file descriptors 3 and 4), so no port is opened and no Python
package beyond the standard library is needed. It runs in its own process group with a new
profile directory, without sandbox (root), GPU, QUIC, background networking, component
updates or sync, and is stopped (group included) on exit.
"""
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")


def chromium_path():
    """Debian's chromium, else Ubuntu's chromium-browser or Google Chrome (GitHub's Ubuntu
    runners have it): all take the same headless flags."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@dataclass
class Seen:
    url: str
    errors: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    console: list = field(default_factory=list)        # (level, text) of every console call
    screenshot: bytes = b""
    size: tuple = (0, 0)                               # the page's full width and height
    value: object = None                               # the result of load()'s script


class Chromium:
    def __init__(self, path=None, timeout=60.0):
        self.path = path or chromium_path()
        if self.path is None:
            raise FileNotFoundError("chromium is not installed (scripts/install.sh installs it)")
        self.timeout = timeout
        self.proc = None
        self._id = 0
        self._buf = b""
        self._events = []

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="lisp-lab-chromium-")
        to_child_r, self._to_child = os.pipe()          # we write commands: its fd 3
        self._from_child, from_child_w = os.pipe()      # it writes answers: its fd 4

        def fds():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [self.path, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4), start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        return self

    def __exit__(self, *exc):
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except Exception:          # noqa: BLE001 (it is stopped below anyway)
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol --------------------------------------------------------------------

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited ({self.proc.poll()})")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=None):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self._events.append(answer)

    def _wait_event(self, method, session, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self._events):
                if e.get("method") == method and e.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read(deadline))

    def _drain(self, seconds):
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._events.append(self._read(deadline))
        except TimeoutError:
            pass

    # --- loading a page ------------------------------------------------------------------

    def load(self, page, width=1300, height=900, settle_s=0.5, script=None):
        """Open `page` (a path or URL) in a new tab of `width` x `height` CSS pixels, wait
        for its load event and `settle_s` more, evaluate `script` (a JavaScript expression
        whose value is returned as JSON in Seen.value), take a full-page screenshot."""
        url = page if "://" in str(page) else Path(page).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=s)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=s)
        self._events.clear()
        self.send("Page.navigate", {"url": url}, session=s)
        self._wait_event("Page.loadEventFired", s, self.timeout)
        self._drain(settle_s)                  # what the page's scripts do once loaded
        seen = Seen(url)
        for e in self._events:
            if e.get("sessionId") != s:
                continue
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", "")))
                                for a in p.get("args", []))
                seen.console.append((p.get("type"), text))
                if p.get("type") in ("error", "assert"):
                    seen.errors.append(f"console.{p['type']}: {text}")
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                seen.errors.append("uncaught: " + (d.get("exception", {}).get("description")
                                                   or d.get("text", "")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                seen.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
            elif m == "Network.requestWillBeSent":
                seen.requests.append(p.get("request", {}).get("url", ""))
            elif m == "Network.loadingFailed":
                seen.errors.append(f"load failed: {p.get('errorText')}")
        if script:
            got = self.send("Runtime.evaluate", {"expression": script, "returnByValue": True},
                            session=s)
            if "exceptionDetails" in got:
                seen.errors.append(f"script: {got['exceptionDetails'].get('text')}")
            seen.value = got.get("result", {}).get("value")
        metrics = self.send("Page.getLayoutMetrics", session=s)
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        seen.size = (int(size["width"]), int(size["height"]))
        shot = self.send("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True,
                          "clip": {"x": 0, "y": 0, "width": seen.size[0],
                                   "height": seen.size[1], "scale": 1}}, session=s)
        seen.screenshot = base64.b64decode(shot["data"])
        self.send("Target.closeTarget", {"targetId": target})
        return seen
