"""Text corpora for language modelling: the bundled Shakespeare sample, tiny-shakespeare, WikiText-2, and any
folder of train/valid/test text files.

    task = build_lm_task("wikitext-2", tokenizer="spm_bpe", seq_len=256)

Offline, each corpus is read from the data root in the layout of `../shared/data/MANIFEST.md` and checked
against its published sha256. Tokenised splits are cached as .npy arrays under the cache root (keyed by the
file's hash and the tokenizer), so a second run starts in seconds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flurka.data.lm import LMTask, split_stream
from flurka.data.sources import DataError, cache_root, data_root, verified_file
from flurka.data.tokenizers import ByteTokenizer, SentencePieceTokenizer, Tokenizer

BUNDLED = Path(__file__).parent / "bundled"


@dataclass(frozen=True)
class Corpus:
    name: str
    files: dict[str, str]  # split -> path relative to the data root ("all" = one file to split 90/5/5)
    sha256: dict[str, str | None]
    hf_name: str | None = None  # the canonical Hugging Face dataset, for users with internet
    description: str = ""


CORPORA = {
    "shakespeare": Corpus(
        "shakespeare",
        {"all": str(BUNDLED / "shakespeare.txt")},
        {"all": "d48b8b09f2897bd9046088795c8ba6060e7a4394a2f1e58a562a4cea0a0a74dc"},
        description="the first 200 kB of tiny-shakespeare, bundled with flurka (public domain)",
    ),
    "tiny_shakespeare": Corpus(
        "tiny_shakespeare",
        {"all": "tiny_shakespeare/input.txt"},
        {"all": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
        hf_name="karpathy/tiny_shakespeare",
        description="tiny-shakespeare (karpathy/char-rnn), 1.1 MB",
    ),
    "wikitext-2": Corpus(
        "wikitext-2",
        {"train": "wikitext-2/train.txt", "valid": "wikitext-2/valid.txt", "test": "wikitext-2/test.txt"},
        {
            "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
            "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        },
        hf_name="Salesforce/wikitext (wikitext-2-v1)",
        description="WikiText-2 v1 (tokenized), Merity et al.",
    ),
}


def corpus_files(corpus: Corpus, root: str | Path | None) -> dict[str, Path]:
    base = data_root(root)
    out = {}
    for split, rel in corpus.files.items():
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        hint = (
            f"Put the {corpus.name} files at {base}/{'/'.join(Path(rel).parts[:-1]) or '.'} "
            f"(layout: {', '.join(corpus.files.values())}; see shared/data/MANIFEST.md), or set FLURKA_DATA / "
            f"data.root to the folder that holds them."
        )
        out[split] = verified_file(path, corpus.sha256.get(split), hint=hint)
    return out


def make_tokenizer(kind: str, train_file: Path, cache_dir: Path, vocab_size: int) -> Tokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind in ("spm_bpe", "spm_unigram"):
        return SentencePieceTokenizer.train(train_file, cache_dir, vocab_size=vocab_size, model_type=kind[4:])
    raise ValueError(f"unknown tokenizer {kind!r}; valid: byte, spm_bpe, spm_unigram")


def tokenize_cached(path: Path, tokenizer: Tokenizer, cache_dir: Path) -> np.ndarray:
    """Token ids of a text file, cached as .npy keyed by the file's content and the tokenizer."""
    raw = path.read_bytes()
    key = hashlib.sha256(raw).hexdigest()[:16]
    cache = cache_dir / f"{path.stem}-{key}-{tokenizer.id}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    ids = np.asarray(tokenizer.encode(raw.decode("utf-8")), dtype=np.int32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}.npy")
    np.save(tmp, ids)
    os.replace(tmp, cache)
    return ids


def build_lm_task(
    corpus: str,
    *,
    seq_len: int,
    tokenizer: str = "byte",
    vocab_size: int = 8000,
    root: str | None = None,
    files: dict[str, str] | None = None,
    metric: str | None = None,
) -> LMTask:
    """An LM task over a named corpus, or over your own `files` ({"train": path, "valid": ..., "test": ...})."""
    if files is not None:
        spec = Corpus(corpus, dict(files), {k: None for k in files})
    elif corpus in CORPORA:
        spec = CORPORA[corpus]
    else:
        raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)} (or pass files=...)")
    paths = corpus_files(spec, root)
    cache_dir = cache_root() / spec.name
    train_file = paths.get("train", paths.get("all"))
    tok = make_tokenizer(tokenizer, train_file, cache_dir, vocab_size)
    if "all" in paths:
        splits = split_stream(tokenize_cached(paths["all"], tok, cache_dir))
    else:
        missing = {"train", "valid"} - set(paths)
        if missing:
            raise DataError(f"corpus {spec.name} needs train and valid files; missing: {sorted(missing)}")
        splits = {split: tokenize_cached(p, tok, cache_dir) for split, p in paths.items()}
    return LMTask(
        name=spec.name,
        splits=splits,
        tokenizer=tok,
        seq_len=seq_len,
        metric=metric or ("bpc" if tokenizer == "byte" else "ppl"),
        description=spec.description,
    )


__all__ = ["CORPORA", "Corpus", "DataError", "build_lm_task"]
