"""Run the README's code blocks as a new user would: in order, in one empty folder.

Conventions (HTML comments, invisible on GitHub), on the line right before a fenced block:

- ``<!-- readme-test: skip REASON -->``: the block is not run (``make demo``, ``torchrun``
  on 8 GPUs...); the reason is required and shown in the test output.
- ``<!-- readme-test: timeout SECONDS -->``: a block allowed longer than the default 300 s.

Blocks fenced as ``bash``/``sh``/``shell``/``console`` run with ``bash -euo pipefail`` and
``python`` blocks with the interpreter running the tests; other blocks (output shown to the
reader, plain text) are not run. Every block runs in the same working folder, so a block can
use the files an earlier one wrote, and ``scalinglab`` on ``PATH`` is this environment's.
Anywhere in the README, ``<!-- readme-test: on -->`` opts it in: until then the test skips
(the README is rewritten to pass these tests in a later pass of issue #17).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OPT_IN = "<!-- readme-test: on -->"
RUN_LANGUAGES = {
    "bash": "bash",
    "sh": "bash",
    "shell": "bash",
    "console": "bash",
    "python": "python",
}
DEFAULT_TIMEOUT_S = 300

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_MARK = re.compile(r"<!--\s*readme-test:\s*(?P<verb>skip|timeout)\s*(?P<arg>.*?)\s*-->")


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None = None  # the reason, when marked skip
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and self.skip is None

    @property
    def name(self) -> str:
        first = next((ln for ln in self.code.splitlines() if ln.strip()), "")
        return f"line {self.line}: {first.strip()[:60]}"


def extract_blocks(markdown: str) -> list[Block]:
    """Every fenced block, with the marks on the line before it.

    Raises
    ------
    ValueError
        A fence that is never closed, or a skip mark without a reason.
    """
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language = match.group("fence"), match.group("info").strip().split(" ")[0].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(match.group("indent")) :])
            i += 1
        if i == len(lines):
            raise ValueError(f"README line {start + 1}: the code block is never closed")
        block = Block(start + 1, language, "\n".join(body) + "\n")
        previous = lines[start - 1] if start > 0 else ""
        for mark in _MARK.finditer(previous):
            if mark.group("verb") == "skip":
                if not mark.group("arg"):
                    raise ValueError(f"README line {start}: a skip mark needs a reason")
                block.skip = mark.group("arg")
            else:
                block.timeout_s = float(mark.group("arg"))
        blocks.append(block)
        i += 1
    return blocks


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one block in ``cwd`` with this environment's ``scalinglab`` first on ``PATH``."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env["COLUMNS"] = "120"
    if RUN_LANGUAGES[block.language] == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        argv = [sys.executable, "-c", block.code]
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=block.timeout_s
    )
