"""Corpora (built-in and the user's), the deterministic split, and the tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scalinglab.errors import InputError, SpecError
from scalinglab.training.corpora import SEGMENT_CHARS, load_corpus
from scalinglab.training.tokenizer import ByteTokenizer, get_tokenizer, tokenize


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))


def _text(n_lines: int, tag: str = "line") -> str:
    return "".join(
        f"{tag} {i}: the quick brown fox jumps over the lazy dog\n" for i in range(n_lines)
    )


@pytest.mark.parametrize("spec", ["python-docs", "python-stdlib"])
def test_builtin_corpora_need_no_download_and_split_deterministically(spec: str) -> None:
    first = load_corpus(spec)
    again = load_corpus(spec)
    assert first.train and first.val
    assert first.fingerprint == again.fingerprint and first.val == again.val
    val_share = sum(map(len, first.val)) / first.chars
    assert 0.1 <= val_share < 0.2  # the last segment taken may overshoot 10 %
    assert not set(first.train) & set(first.val)


def test_split_of_one_long_file_holds_out_whole_segments(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_text(_text(3000))  # ~160k characters: about ten segments
    corpus = load_corpus(str(path), val_fraction=0.2)
    assert corpus.name == "book"
    assert all(len(seg) <= SEGMENT_CHARS for seg in corpus.train + corpus.val)
    assert "".join(corpus.train + corpus.val).count("\n") == 3000
    assert 0.2 <= sum(map(len, corpus.val)) / corpus.chars < 0.35


def test_folder_jsonl_and_parquet_sources(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        (folder / "sub" / f"doc{i}.md").write_text(_text(20, f"doc{i}"))
    (folder / "image.bin").write_bytes(bytes([0xFF, 0xFE, 0x00, 0x81]))
    (folder / ".hidden").write_text("secret")
    corpus = load_corpus(str(folder))
    text = "".join(corpus.train + corpus.val)
    assert "doc5" in text and "secret" not in text and corpus.name == "docs"

    rows = [{"content": _text(10, f"row{i}")} for i in range(8)]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    from_jsonl = load_corpus(f"{jsonl}#content")
    assert len(from_jsonl.train) + len(from_jsonl.val) == 8

    import pandas as pd

    parquet = tmp_path / "data.parquet"
    pd.DataFrame({"text": [r["content"] for r in rows]}).to_parquet(parquet)
    from_parquet = load_corpus(str(parquet))
    assert sorted(from_parquet.train + from_parquet.val) == sorted(
        from_jsonl.train + from_jsonl.val
    )


def test_jsonl_without_the_field_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine"}\n{"body": "no text here"}\n')
    with pytest.raises(InputError, match=r"data.jsonl, row 2, column 'text'"):
        load_corpus(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("   \n\n", "is empty"), ("tiny", "too small to split")],
)
def test_empty_or_tiny_corpus_is_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(SpecError, match=message):
        load_corpus(str(path))


def test_unknown_corpus_is_rejected() -> None:
    with pytest.raises(SpecError, match="neither a built-in"):
        load_corpus("python-stdlibb")


def test_byte_tokenizer_round_trips_utf8() -> None:
    ids = ByteTokenizer().encode(["héllo ", "wörld"])
    assert bytes(ids.astype(np.uint8)).decode("utf-8") == "héllo wörld"


def test_bpe_is_trained_once_cached_and_compresses(tmp_path: Path) -> None:
    corpus = load_corpus("python-docs")
    bpe = get_tokenizer("bpe:512", corpus)
    assert bpe.vocab_size == 512
    assert list((tmp_path / "cache" / "tokenizers").iterdir())
    again = get_tokenizer("bpe:512", corpus)
    assert again.name == bpe.name
    bytes_ = tokenize(corpus, ByteTokenizer())
    pieces = tokenize(corpus, bpe)
    assert pieces.train.dtype == np.uint16 and int(pieces.train.max()) < 512
    assert pieces.train.size < 0.6 * bytes_.train.size
    cached = tokenize(corpus, bpe)  # from the cache file this time
    assert np.array_equal(cached.train, pieces.train)


@pytest.mark.parametrize("spec", ["wordpiece", "bpe:abc", "bpe:100"])
def test_bad_tokenizer_specs(spec: str) -> None:
    with pytest.raises(SpecError, match="tokenizer"):
        get_tokenizer(spec, load_corpus("python-docs"))
