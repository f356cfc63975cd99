"""A report as a list of sections, written as self-contained HTML, Markdown and PNG files.

The HTML embeds every plot as a base64 PNG and its own CSS, so it opens offline in any
browser and can be mailed as one file; the Markdown links the same PNGs from ``figures/``.
Every text is plain text: escaped for HTML, and for Markdown (run ids, families and datasets
come from the user's data, and a ``<script>`` or a ``|`` in one must stay text).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from scalinglab._format import fmt

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}
h1{border-bottom:2px solid #3465a4;padding-bottom:.2em}h2{margin-top:2em;color:#20467a}
table{border-collapse:collapse;margin:1em 0;font-size:.92em;display:block;overflow-x:auto;
max-width:100%}
th,td{border:1px solid #c8ced8;padding:.3em .7em;text-align:right}
th{background:#eef2f8}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #e3e6eb}
figcaption{font-size:.9em;color:#555}.summary{background:#f5f8fc;border-left:4px solid #3465a4;
padding:.6em 1em}code{background:#f1f1f1;padding:0 .2em}
"""


@dataclass
class Section:
    """One heading with paragraphs, tables and figures, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    figures: list[tuple[str, Figure, str]] = field(default_factory=list)  # (name, fig, caption)


@dataclass
class Report:
    """A report under construction: add sections, then :meth:`write`."""

    title: str
    summary: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """Append and return a new section."""
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.html``, ``report.md`` and ``figures/*.png`` under ``out_dir``.

        Returns
        -------
        dict
            Paths written: ``html``, ``markdown`` and one entry per figure name.
        """
        out = Path(out_dir)
        figdir = out / "figures"
        figdir.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        pngs: dict[str, bytes] = {}
        for sec in self.sections:
            for name, fig, _ in sec.figures:
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
                plt.close(fig)
                pngs[name] = buf.getvalue()
                path = figdir / f"{_slug(name)}.png"
                path.write_bytes(pngs[name])
                written[name] = path
        html_path = out / "report.html"
        html_path.write_text(self._html(pngs), encoding="utf-8")
        md_path = out / "report.md"
        md_path.write_text(self._markdown(), encoding="utf-8")
        written["html"], written["markdown"] = html_path, md_path
        return written

    def _html(self, pngs: Mapping[str, bytes]) -> str:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        if self.summary:
            items = "".join(f"<li>{html.escape(s)}</li>" for s in self.summary)
            parts.append(f'<div class="summary"><ul>{items}</ul></div>')
        for sec in self.sections:
            parts.append(f"<h2>{html.escape(sec.title)}</h2>")
            parts.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
            for caption, rows in sec.tables:
                parts.append(_html_table(caption, rows))
            for name, _, caption in sec.figures:
                data = base64.b64encode(pngs[name]).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
                    f'{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
                )
        parts.append("</body></html>")
        return "\n".join(parts)

    def _markdown(self) -> str:
        lines = [f"# {md_escape(self.title)}", ""]
        lines.extend(f"- {md_escape(s)}" for s in self.summary)
        for sec in self.sections:
            lines += ["", f"## {md_escape(sec.title)}", ""]
            for p in sec.paragraphs:
                lines += [md_escape(p), ""]
            for caption, rows in sec.tables:
                lines += [f"**{md_escape(caption)}**", "", *_md_table(rows), ""]
            for name, _, caption in sec.figures:
                lines += [f"![{md_escape(caption)}](figures/{_slug(name)}.png)", ""]
        return "\n".join(lines).rstrip() + "\n"


def save_figure(path: str | Path, fig: Figure, dpi: int = 120) -> None:
    """Write a figure to ``path`` (format from its suffix) and release it."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


#: characters that Markdown (CommonMark, GitHub tables) reads as syntax or raw HTML anywhere
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&])")
#: what starts a list item or a quote at the beginning of a line
_MD_BLOCK_START = re.compile(r"^(\s*\d*)([-+.)])(?=\s|$)")


def md_escape(text: str) -> str:
    """``text`` as literal Markdown text: syntax characters backslash-escaped (``<`` too, so
    no raw HTML), a list marker at its start escaped, line breaks as spaces (one paragraph,
    one table cell)."""
    line = _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))
    return _MD_BLOCK_START.sub(r"\1\\\2", line)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    return cols


def _html_table(caption: str, rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return f"<p><em>{html.escape(caption)}: no rows</em></p>"
    cols = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _md_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    cols = _columns(rows)
    out = ["| " + " | ".join(md_escape(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(md_escape(fmt(r.get(c, ""))) for c in cols) + " |" for r in rows]
    return out
