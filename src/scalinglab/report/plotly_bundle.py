"""Plotly's JavaScript, inlined once in a report, compressed.

plotly.js (from the ``plotly`` Python package, the ``report`` extra) is 4.8 MB, which alone
would nearly fill the 5 MB a report may take. The page carries it gzip-compressed and base64
encoded (about 1.9 MB) and inflates it with the browser's own ``DecompressionStream``: still
one file, no network request.
"""

from __future__ import annotations

import base64
import functools
import gzip

from scalinglab.errors import SpecError

#: where to get the interactive report's JavaScript
INSTALL_HINT = "pip install 'scalinglab[report]' (the plotly package)"


def plotly_available() -> bool:
    """Whether Plotly's JavaScript can be inlined (the ``plotly`` package is installed)."""
    import importlib.util

    return importlib.util.find_spec("plotly") is not None


@functools.cache
def plotly_js_gzip_base64() -> tuple[str, str]:
    """``(version, base64 of gzip(plotly.min.js))`` from the installed ``plotly`` package.

    Raises
    ------
    SpecError
        If ``plotly`` is not installed.
    """
    try:
        from plotly.offline import get_plotlyjs, get_plotlyjs_version
    except ImportError:
        raise SpecError(f"the interactive report needs Plotly: {INSTALL_HINT}") from None
    code = get_plotlyjs().encode("utf-8")
    packed = gzip.compress(code, compresslevel=9, mtime=0)
    return get_plotlyjs_version(), base64.b64encode(packed).decode("ascii")


#: inflates the bundle, runs it, then calls ``window.__drawCharts`` (the page's renderer)
LOADER_JS = """
(function () {
  'use strict';
  var holder = document.getElementById('plotly-gzip');
  if (!holder) { return; }
  if (typeof DecompressionStream === 'undefined') {
    document.body.classList.add('no-charts');
    return;
  }
  var text = atob(holder.textContent.trim());
  var bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(stream).text().then(function (code) {
    var script = document.createElement('script');
    script.textContent = code;
    document.head.appendChild(script);
    window.__drawCharts();
  });
})();
"""
