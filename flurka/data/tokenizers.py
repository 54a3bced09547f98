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


class SpecialTokenizer(Protocol):
    """A tokenizer with BERT-style special ids: what GLUE, MLM pre-training and translation batches need."""

    vocab_size: int
    id: str
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    first_normal_id: int  # ids >= this are ordinary tokens (MLM's random replacements are drawn from them)

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class OffsetSpecialTokenizer:
    """A base tokenizer (e.g. sentencepiece trained locally) with [PAD] [CLS] [SEP] [MASK] as ids 0-3.

    The base ids are shifted up by 4, so the specials never collide with a learned piece and `encode` of any
    text never yields them. `decode` drops special ids.
    """

    SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")

    def __init__(self, base: Tokenizer) -> None:
        self.base = base
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = range(4)
        self.first_normal_id = len(self.SPECIALS)
        self.vocab_size = base.vocab_size + self.first_normal_id
        self.id = f"{base.id}+special4"

    def encode(self, text: str) -> list[int]:
        return [i + self.first_normal_id for i in self.base.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self.base.decode([int(i) - self.first_normal_id for i in ids if int(i) >= self.first_normal_id])


def _local_transformers_tokenizer(path: str | Path, what: str, cls_name: str):
    """A `transformers` fast tokenizer of class `cls_name` from local files only (never a download)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        from flurka.data.sources import DataError

        raise DataError(
            f"{what} tokenizer files not found at {path}. Put the tokenizer files there (for example from "
            f"`AutoTokenizer.from_pretrained(...).save_pretrained('{path}')` on a machine with internet)."
        )
    import transformers

    # the class is named, not inferred: a folder holding only vocab.txt (BERT) or vocab.json + merges.txt
    # (GPT-2), as these models are often shipped, has no config for AutoTokenizer to read
    return getattr(transformers, cls_name).from_pretrained(str(path), local_files_only=True)


class WordPieceTokenizer:
    """BERT WordPiece from local `transformers` files (a folder with vocab.txt / tokenizer.json)."""

    def __init__(self, path: str | Path) -> None:
        self.tok = _local_transformers_tokenizer(path, "BERT WordPiece", "BertTokenizerFast")
        self.vocab_size = len(self.tok)
        self.pad_id, self.cls_id = self.tok.pad_token_id, self.tok.cls_token_id
        self.sep_id, self.mask_id = self.tok.sep_token_id, self.tok.mask_token_id
        self.first_normal_id = max(self.tok.all_special_ids) + 1
        vocab_digest = hashlib.sha256(repr(sorted(self.tok.get_vocab().items())).encode()).hexdigest()[:12]
        self.id = f"wordpiece-{vocab_digest}"

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


class GPT2BPETokenizer:
    """GPT-2 byte-level BPE (50,257 ids) from local `transformers` files (vocab.json + merges.txt)."""

    def __init__(self, path: str | Path) -> None:
        self.tok = _local_transformers_tokenizer(path, "GPT-2 BPE", "GPT2TokenizerFast")
        self.vocab_size = len(self.tok)
        vocab_digest = hashlib.sha256(repr(sorted(self.tok.get_vocab().items())).encode()).hexdigest()[:12]
        self.id = f"gpt2bpe-{vocab_digest}"
        self.eos_id = self.tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)
