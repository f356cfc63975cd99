"""Tokenizers: bytes by default; a byte-level BPE trained locally on request, cached.

A tokenizer is named by a spec: ``byte`` (256 ids, no training, loss in nats per byte) or
``bpe:VOCAB`` (Hugging Face ``tokenizers`` byte-level BPE with ``VOCAB`` ids, trained on the
training split of the training corpus and cached under :func:`files.cache_dir`). Tokenized
splits are cached too, so a sweep tokenizes each corpus once.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from scalinglab.errors import SpecError
from scalinglab.training.corpora import Corpus
from scalinglab.training.files import atomic_write, cache_dir

TokenArray = NDArray[np.int32]
#: token ids as stored: uint8 for the byte tokenizer, uint16 for a BPE
TokenIds = NDArray[Any]
#: bump when the cached token format or the tokenizers change meaning
_CACHE_VERSION = 1


class Tokenizer(Protocol):
    """What the trainer needs from a tokenizer."""

    @property
    def name(self) -> str:
        """Identity used in cache keys and run configs (``byte``, ``bpe:4096:<hash>``)."""
        ...

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        ...

    def encode(self, texts: Sequence[str]) -> TokenArray:
        """Token ids of the texts, concatenated in order."""
        ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: 256 ids, nothing to train."""

    name = "byte"
    vocab_size = 256

    def encode(self, texts: Sequence[str]) -> TokenArray:
        """Token ids (the UTF-8 bytes) of the texts, concatenated."""
        data = "".join(texts).encode("utf-8")
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)


class BPETokenizer:
    """A byte-level BPE from Hugging Face ``tokenizers`` (GPT-2 pre-tokenization)."""

    def __init__(self, serialized: str, name: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_str(serialized)
        self._name = name

    @property
    def name(self) -> str:
        """``bpe:<vocab>:<training-corpus fingerprint>``."""
        return self._name

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return int(self._tok.get_vocab_size())

    def encode(self, texts: Sequence[str]) -> TokenArray:
        """Token ids of the texts, concatenated (encoded in parallel batches)."""
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        if not encodings:
            return np.zeros(0, dtype=np.int32)
        return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings])


def _train_bpe(corpus: Corpus, vocab_size: int) -> BPETokenizer:
    name = f"bpe:{vocab_size}:{corpus.fingerprint}"
    path = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{corpus.fingerprint}.json"
    if path.is_file():
        try:
            return BPETokenizer(path.read_text(encoding="utf-8"), name)
        except Exception:  # a damaged cache entry (any error) is trained again
            pass
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.train, trainer=trainer, length=len(corpus.train))
    serialized = tok.to_str()
    atomic_write(path, serialized.encode("utf-8"))
    return BPETokenizer(serialized, name)


def get_tokenizer(spec: str, corpus: Corpus | Callable[[], Corpus]) -> Tokenizer:
    """The tokenizer named by ``spec``, trained on ``corpus``'s training split if it is a BPE.

    ``corpus`` may be a function that loads it: only a BPE needs the text.

    Raises
    ------
    SpecError
        Unknown spec, or a BPE vocabulary outside 257..65536.
    """
    if spec == "byte":
        return ByteTokenizer()
    kind, _, size = spec.partition(":")
    if kind == "bpe":
        try:
            vocab_size = int(size)
        except ValueError:
            raise SpecError(f"tokenizer '{spec}': expected bpe:VOCAB, e.g. bpe:4096") from None
        if not 257 <= vocab_size <= 65536:
            raise SpecError(f"tokenizer '{spec}': vocabulary must be in 257..65536")
        return _train_bpe(corpus if isinstance(corpus, Corpus) else corpus(), vocab_size)
    raise SpecError(f"unknown tokenizer '{spec}'; use 'byte' or 'bpe:VOCAB' (e.g. bpe:4096)")


@dataclass(frozen=True)
class TokenSplits:
    """A corpus tokenized: train and validation token ids (uint8 or uint16 arrays)."""

    name: str
    train: TokenIds
    val: TokenIds


def _read_cached_tokens(path: Path) -> tuple[TokenIds, TokenIds] | None:
    """The cached (train, val) token ids, or None when absent or unreadable (then rebuilt).

    A cache file cut short (a full disk, a copy interrupted) must not stop training: the
    cache is rebuildable, so a damaged entry is treated as missing and written again.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            train, val = np.asarray(data["train"]), np.asarray(data["val"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if train.ndim != 1 or val.ndim != 1 or train.dtype.kind != "u" or val.dtype.kind != "u":
        return None
    return train, val


def tokenize(corpus: Corpus, tokenizer: Tokenizer) -> TokenSplits:
    """Tokenize both splits of ``corpus``, from the cache when it was done before."""
    key = f"{corpus.fingerprint}-{tokenizer.name.replace(':', '_')}-v{_CACHE_VERSION}"
    path = cache_dir() / "tokens" / f"{key}.npz"
    cached = _read_cached_tokens(path)
    if cached is not None:
        return TokenSplits(corpus.name, *cached)
    # the smallest dtype that holds the ids keeps memory and the cache small
    dtype = np.uint8 if tokenizer.vocab_size <= 256 else np.uint16
    train = tokenizer.encode(corpus.train).astype(dtype)
    val = tokenizer.encode(corpus.val).astype(dtype)
    buffer = io.BytesIO()
    np.savez(buffer, train=train, val=val)
    atomic_write(path, buffer.getvalue())
    return TokenSplits(corpus.name, train, val)
