"""Text corpora: built-in ones that exist wherever Python does, and the user's files.

A corpus is named by a *spec* string:

``python-stdlib``
    The ``.py`` files of this Python's standard library (test suites, ``site-packages``
    and ``dist-packages`` excluded), about 12 MB on CPython 3.11.
``python-docs``
    The English reference text shipped in ``pydoc_data.topics`` (about 0.5 MB).
a path
    A text file; a folder (every file below it that decodes as UTF-8, hidden ones skipped);
    a ``.jsonl`` file (one JSON object a line) or a ``.parquet`` file, reading the ``text``
    field unless another is named after ``#`` (``data.jsonl#content``).

Split. Every document is cut into segments of at most :data:`SEGMENT_CHARS` characters at
line ends; exact duplicate segments are dropped; the rest are ordered by a hash of
``"<document>#<index>"`` and taken for validation until they hold ``val_fraction`` of the
characters. The split depends on the text
only (no seed, no tokenizer), so every tokenizer and every run sees the same held-out text.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scalinglab.errors import InputError, SpecError

#: the built-in corpora, which need no download
BUILTIN_CORPORA = ("python-stdlib", "python-docs")
#: longest segment the train/validation split assigns as a whole, in characters
SEGMENT_CHARS = 16_384
_SKIPPED_STDLIB_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages"}


@dataclass(frozen=True)
class Corpus:
    """A named collection of documents, split into train and validation text.

    Attributes
    ----------
    spec
        The spec string it was loaded from.
    name
        Short label used as the ``dataset`` of its observations (the spec for built-ins,
        the file or folder name for paths).
    fingerprint
        Hash of the content's identity (used as a cache key).
    train, val
        Segments of text, in a fixed order.
    """

    spec: str
    name: str
    fingerprint: str
    train: tuple[str, ...]
    val: tuple[str, ...]

    @property
    def chars(self) -> int:
        """Characters in both splits."""
        return sum(map(len, self.train)) + sum(map(len, self.val))


def corpus_name(spec: str) -> str:
    """The dataset label of a corpus spec, without loading it."""
    if spec in BUILTIN_CORPORA:
        return spec
    path, _, _ = spec.partition("#")
    return Path(path).stem or path


def _stdlib_documents() -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):
        # pruning while walking: site-packages and the test suites are most of the tree
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_STDLIB_DIRS)
        files += [Path(folder, n) for n in names if n.endswith(".py")]
    for path in sorted(files):
        yield str(path.relative_to(root)), path.read_text(encoding="utf-8", errors="replace")


def _docs_documents() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield name, topics[name]


def _records(path: Path, field: str) -> Iterator[tuple[str, str]]:
    source = str(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as err:  # pyarrow's errors derive from these
            raise InputError(f"cannot read as Parquet: {err}", source=source) from None
        if field not in table.column_names:
            raise InputError(
                f"no column '{field}' (columns: {', '.join(table.column_names)}); "
                f"name the text column as '{path}#COLUMN'",
                source=source,
                column=field,
            )
        for row, value in enumerate(table.column(field).to_pylist(), start=1):
            if not isinstance(value, str):
                raise InputError("text must be a string", source=source, row=row, column=field)
            yield f"{row}", value
        return
    with path.open(encoding="utf-8") as fh:
        try:
            lines = list(fh)
        except UnicodeDecodeError as err:
            raise InputError(
                f"not UTF-8 text (byte {err.start} of a line)", source=source
            ) from None
        for row, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"invalid JSON ({err.msg})", source=source, row=row) from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise InputError(
                    f"each line must be an object with a string field '{field}'; "
                    f"name another field as '{path}#FIELD'",
                    source=source,
                    row=row,
                    column=field,
                )
            yield f"{row}", record[field]


def _folder_documents(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            yield str(rel), path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary files are not text


def _documents(spec: str) -> Iterator[tuple[str, str]]:
    if spec == "python-stdlib":
        return _stdlib_documents()
    if spec == "python-docs":
        return _docs_documents()
    path_text, _, field = spec.partition("#")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise SpecError(
            f"corpus '{spec}' is neither a built-in ({', '.join(BUILTIN_CORPORA)}) "
            f"nor an existing file or folder"
        )
    if path.is_dir():
        return _folder_documents(path)
    if path.suffix in (".jsonl", ".parquet"):
        return _records(path, field or "text")
    if field:
        raise SpecError(f"corpus '{spec}': '#{field}' applies to .jsonl and .parquet files only")
    return iter([(path.name, path.read_text(encoding="utf-8", errors="replace"))])


def _segments(doc_id: str, text: str) -> Iterator[tuple[str, str]]:
    """Cut ``text`` into pieces of at most SEGMENT_CHARS, preferably at line ends."""
    start, index = 0, 0
    while start < len(text):
        end = min(start + SEGMENT_CHARS, len(text))
        if end < len(text):
            newline = text.rfind("\n", start, end)
            if newline > start:
                end = newline + 1
        yield f"{doc_id}#{index}", text[start:end]
        start, index = end, index + 1


def _stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_corpus(spec: str, *, val_fraction: float = 0.1) -> Corpus:
    """Load a corpus and split it deterministically into train and validation text.

    Parameters
    ----------
    spec
        ``python-stdlib``, ``python-docs``, or a path (see the module docstring).
    val_fraction
        Share of characters held out for validation, in (0, 1).

    Raises
    ------
    SpecError
        Unknown corpus, bad fraction, or a corpus without any text.
    InputError
        A JSONL/Parquet file without the text field (with the row).
    """
    if not 0.0 < val_fraction < 1.0:
        raise SpecError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    segments: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for doc_id, text in _documents(spec):
        for seg_id, seg in _segments(doc_id, text):
            content = _stable_hash(seg)
            # exact duplicates (copied files, boilerplate) would leak between the splits
            if seg.strip() and content not in seen:
                seen.add(content)
                segments.append((_stable_hash(seg_id), seg_id, seg))
    if not segments:
        raise SpecError(f"corpus '{spec}' is empty: it holds no text")
    total = sum(len(seg) for _, _, seg in segments)
    # ordering by hash makes membership depend on the segment's identity only
    by_hash = sorted(segments)
    val_ids: set[str] = set()
    val_chars = 0
    for _, seg_id, seg in by_hash:
        if val_chars >= val_fraction * total:
            break
        val_ids.add(seg_id)
        val_chars += len(seg)
    if len(val_ids) == len(segments):
        if len(segments) == 1:
            raise SpecError(
                f"corpus '{spec}' is too small to split: {total} characters in one segment"
            )
        val_ids.discard(by_hash[-1][1])
    digest = hashlib.sha256()
    for _, seg_id, seg in segments:
        digest.update(f"{seg_id}\0{len(seg)}\0".encode())
        digest.update(seg.encode("utf-8"))
    digest.update(f"{val_fraction!r}/{SEGMENT_CHARS}".encode())
    return Corpus(
        spec=spec,
        name=corpus_name(spec),
        fingerprint=digest.hexdigest()[:16],
        train=tuple(seg for _, seg_id, seg in segments if seg_id not in val_ids),
        val=tuple(seg for _, seg_id, seg in segments if seg_id in val_ids),
    )
