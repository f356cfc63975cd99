"""Open an HTML file in headless Chromium and report console errors and broken images.

A copy of the page gets a small probe script that records ``window.onerror``,
``console.error`` and resource load failures, and the state of every ``<img>`` once the page
has loaded; ``--dump-dom`` then prints the final DOM, from which the probe's verdict is read.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PROBE = """
<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'failed to load ' + t.tagName : String(e.message));
}, true);
var __origError = console.error;
console.error = function () { window.__errors.push(Array.from(arguments).join(' '));
  __origError.apply(console, arguments); };
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (i) {
    return {alt: i.alt, ok: i.complete && i.naturalWidth > 0, width: i.naturalWidth}; });
  var out = document.createElement('pre');
  out.id = '__probe';
  out.textContent = JSON.stringify({errors: window.__errors, images: imgs});
  document.body.appendChild(out);
});
</script>
"""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def inspect_page(html_path: Path, screenshot: Path) -> dict:
    """Load the page; return ``{"errors": [...], "images": [...]}`` and save a screenshot."""
    exe = chromium()
    assert exe is not None
    with tempfile.TemporaryDirectory() as profile:
        probed = Path(profile) / "probed.html"
        text = html_path.read_text(encoding="utf-8")
        probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
        common = [exe, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
        dom = subprocess.run(
            [*common, "--dump-dom", probed.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        subprocess.run(
            [*common, f"--screenshot={screenshot}", "--window-size=1200,2400", html_path.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
    match = re.search(r'<pre id="__probe">(.*?)</pre>', dom, re.S)
    assert match, "the probe did not run: the page did not finish loading"
    raw = match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(raw.replace("&amp;", "&"))
