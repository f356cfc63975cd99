"""Plain-text training logs (nanoGPT and the like), read with the user's line patterns.

A pattern is the line's text with ``{name}`` where a number stands:
``"iter {step}: loss {loss}"`` matches nanoGPT's ``iter 100: loss 2.3456, time 12.34ms``
(the rest of the line is ignored; runs of spaces match any whitespace). ``{step}`` is
required; every other name is a metric (``{loss}``, ``{val_loss}``, ``{lr}``,
``{tokens}``...), mapped to datasets like any source's. Each line is tried against the
patterns in order and the first match counts; lines that match none are not points. One
file is one run, named by the file's stem (a folder: every ``.log``, ``.txt``, ``.out`` in it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from scalinglab.data.importers.base import RawRun, points_frame
from scalinglab.errors import InputError, SpecError

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)"
TEXT_SUFFIXES = (".log", ".txt", ".out")


def compile_pattern(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    """A regular expression for a ``{name}`` line pattern, and its field names.

    Raises
    ------
    SpecError
        When the pattern has no ``{step}`` or no other field, or names a field twice.
    """
    names = _FIELD.findall(pattern)
    if "step" not in names or len(names) < 2:
        raise SpecError(
            f"--pattern {pattern!r} needs {{step}} and at least one metric, "
            "e.g. --pattern 'iter {step}: loss {loss}'"
        )
    if len(set(names)) != len(names):
        raise SpecError(f"--pattern {pattern!r} names a field twice")
    parts = []
    for i, literal in enumerate(_FIELD.split(pattern)):
        if i % 2:
            parts.append(f"(?P<{literal}>{_NUMBER})")
        else:
            parts.append(r"\s+".join(re.escape(word) for word in re.split(r"\s+", literal)))
    return re.compile("".join(parts), re.IGNORECASE), names


def read_text(path: Path, patterns: Sequence[str]) -> RawRun:
    """One run from a text log.

    Raises
    ------
    SpecError
        Without a pattern.
    InputError
        When no line matches any pattern, or a step is not a whole number.
    """
    if not patterns:
        raise SpecError(
            f"reading the text log {path.name} needs a line pattern: "
            "--pattern 'iter {step}: loss {loss}'"
        )
    compiled = [compile_pattern(p) for p in patterns]
    metric: list[str] = []
    step: list[int] = []
    value: list[float] = []
    matched: Counter[str] = Counter()
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    with path.open(errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            for regex, names in compiled:
                found = regex.search(line)
                if found is None:
                    continue
                text = found["step"]
                at = float(text)
                if not at.is_integer() or at < 0:
                    raise InputError(
                        f"step {text!r} is not a whole number", source=path.name, row=number
                    )
                if at >= 2**63:  # beyond any step counter (and numpy's int64)
                    raise InputError(f"step {text!r} is too large", source=path.name, row=number)
                for name in names:
                    if name != "step":
                        metric.append(name)
                        step.append(int(at))
                        value.append(float(found[name]))
                matched[regex.pattern] += 1
                break
    if not matched:
        raise InputError(
            f"no line matches {' or '.join(map(repr, patterns))}; check --pattern against "
            "a line of the log",
            source=path.name,
        )
    return RawRun(
        run_id=path.stem,
        source=str(path),
        points=points_frame(metric, step, value),
        notes=[f"{sum(matched.values())} lines matched a pattern"],
    )
