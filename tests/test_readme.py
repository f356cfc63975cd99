"""The README runs as written: every bash and Python block, in order, from an empty folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_blocks import OPT_IN, extract_blocks, run_block

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_blocks_run_as_written(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    if OPT_IN not in text:
        pytest.skip(f"the README has not opted in to running its blocks ({OPT_IN})")
    failures = []
    for block in extract_blocks(text):
        if not block.runs:
            continue
        result = run_block(block, tmp_path)
        if result.returncode != 0:
            failures.append(f"{block.name} exited {result.returncode}:\n{result.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)


SAMPLE = """
# A tool

<!-- readme-test: on -->

```bash
echo "a,b" > data.csv   # a file the next blocks use
```

<!-- readme-test: skip needs 8 GPUs -->
```bash
torchrun --nproc_per_node=8 train.py
```

```
output shown to the reader, never run
```

<!-- readme-test: timeout 20 -->
```python
from pathlib import Path
assert Path("data.csv").read_text() == "a,b\\n"
```

- in a list item:

  ```sh
  scalinglab --version
  ```

```python
raise SystemExit(3)
```
"""


def test_the_harness_reads_marks_and_runs_blocks_in_one_folder(tmp_path: Path) -> None:
    blocks = extract_blocks(SAMPLE)
    assert [b.language for b in blocks] == ["bash", "bash", "", "python", "sh", "python"]
    assert blocks[1].skip == "needs 8 GPUs" and not blocks[1].runs
    assert not blocks[2].runs and blocks[3].timeout_s == 20
    results = [run_block(b, tmp_path).returncode for b in blocks if b.runs]
    assert results == [0, 0, 0, 3]  # blocks share the folder; scalinglab is on PATH


def test_the_harness_rejects_broken_markdown() -> None:
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks("```bash\necho\n")
    with pytest.raises(ValueError, match="needs a reason"):
        extract_blocks("<!-- readme-test: skip -->\n```bash\necho\n```\n")


def test_the_demo_summary_is_marked_for_refreshing() -> None:
    # the lead pastes what `make demo` prints after this mark (too long to run in a test)
    lines = README.read_text(encoding="utf-8").splitlines()
    at = lines.index("<!-- demo-output -->")
    assert lines[at + 1] == "```" and "Compute law" in lines[at + 2]
