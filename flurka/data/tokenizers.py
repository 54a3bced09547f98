"""Tokenizers: byte-level (no training, 256 ids) and sentencepiece BPE/unigram trained locally and cached.

Every tokenizer has `encode(str) -> list[int]`, `decode(list[int]) -> str`, `vocab_size` and `id`, a string
that names it exactly (used as part of token-cache keys, so a changed tokenizer never reuses stale tokens).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol


class Tokenizer(Protocol):
    vocab_size: int
    id: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: lossless for any text, vocabulary 256 (enwik8-style byte-level modelling)."""

    vocab_size = 256
    id = "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A sentencepiece model trained on a training split (BPE or unigram), cached by corpus hash and options."""

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece as spm

        self.model_file = Path(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        self.vocab_size = self.sp.get_piece_size()
        self.id = f"spm-{self.model_file.stem}"

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    @classmethod
    def train(
        cls,
        text_file: str | Path,
        cache_dir: str | Path,
        *,
        vocab_size: int = 8000,
        model_type: str = "bpe",
        max_sentence_length: int = 1 << 16,
    ) -> SentencePieceTokenizer:
        """Train (or reuse the cached) model for this text file and options."""
        import sentencepiece as spm

        text_file = Path(text_file)
        digest = hashlib.sha256(text_file.read_bytes()).hexdigest()[:12]
        prefix = str(Path(cache_dir) / f"{model_type}{vocab_size}-{digest}")
        model = Path(prefix + ".model")
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            tmp_prefix = f"{prefix}-tmp{os.getpid()}"
            spm.SentencePieceTrainer.train(
                input=str(text_file),
                model_prefix=tmp_prefix,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=1.0,
                max_sentence_length=max_sentence_length,
                bos_id=-1,
                eos_id=-1,
                num_threads=os.cpu_count() or 1,
                minloglevel=2,
            )
            for suffix in (".model", ".vocab"):  # rename last, so a crash never leaves a half-written model
                os.replace(tmp_prefix + suffix, prefix + suffix)
        return cls(model)
