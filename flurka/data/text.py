"""Text corpora for language modelling: the bundled Shakespeare sample, tiny-shakespeare, WikiText-2, and any
folder of train/valid/test text files.

    task = build_lm_task("wikitext-2", tokenizer="spm_bpe", seq_len=256)

Offline, each corpus is read from the data root in the layout given in the README's Data section and checked
against its published sha256. Tokenised splits are cached as .npy arrays under the cache root (keyed by the
file's hash and the tokenizer), so a second run starts in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flurka.data.lm import LMTask, split_stream
from flurka.data.sources import DataError, cache_root, cache_write, data_root, read_utf8, verified_file, writable_cache
from flurka.data.tokenizers import ByteTokenizer, GPT2BPETokenizer, SentencePieceTokenizer, Tokenizer

BUNDLED = Path(__file__).parent / "bundled"


@dataclass(frozen=True)
class Corpus:
    name: str
    files: dict[str, str]  # split -> path relative to the data root ("all" = one file to split 90/5/5)
    sha256: dict[str, str | None]
    hf_name: str | None = None  # the canonical Hugging Face dataset, for users with internet
    description: str = ""
    note: str = ""  # added to the missing-data message (e.g. the published size and sha256)


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
    # enwik8: the first 10^8 bytes of the English Wikipedia dump of 2006-03-03 (Hutter Prize), byte level,
    # split 90M/5M/5M as in every enwik8 paper (split_stream's 0.9/0.05/0.05 of exactly 10^8 bytes).
    "enwik8": Corpus(
        "enwik8",
        {"all": "enwik8/enwik8"},
        {"all": "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"},
        hf_name="LTCB/enwik8",
        description="enwik8 (Hutter Prize), byte level, 90M/5M/5M, bits per character",
        note="enwik8 is the raw 100,000,000-byte file (unzipped from mattmahoney.net/dc/enwik8.zip), "
        "sha256 2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8, "
        "md5 a1fa5ffddb56f4953e226637dabbb36a.",
    ),
    # WikiText-103 v1 (tokenized), the same layout as WikiText-2: wiki.{train,valid,test}.tokens renamed.
    # No sha256 of the individual files is recorded in MANIFEST.md, so none is checked.
    "wikitext-103": Corpus(
        "wikitext-103",
        {"train": "wikitext-103/train.txt", "valid": "wikitext-103/valid.txt", "test": "wikitext-103/test.txt"},
        {"train": None, "valid": None, "test": None},
        hf_name="Salesforce/wikitext (wikitext-103-v1)",
        description="WikiText-103 v1 (tokenized), Merity et al.",
        note="These are wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens from wikitext-103-v1.zip, "
        "renamed train.txt, valid.txt, test.txt.",
    ),
}


def corpus_files(corpus: Corpus, root: str | Path | None) -> dict[str, Path]:
    base = data_root(root)
    out = {}
    for split, rel in corpus.files.items():
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        hint = (
            f"Put the {corpus.name} files at {base}/{'/'.join(Path(rel).parts[:-1]) or '.'} "
            f"(layout: {', '.join(corpus.files.values())}; see the README's Data section), or set FLURKA_DATA / "
            f"data.root to the folder that holds them. {corpus.note}"
        ).rstrip()
        out[split] = verified_file(path, corpus.sha256.get(split), hint=hint)
    return out


def make_tokenizer(
    kind: str, train_file: Path, cache_dir: Path, vocab_size: int, tokenizer_path: str | None = None
) -> Tokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind == "gpt2":
        if not tokenizer_path:
            raise ValueError("tokenizer=gpt2 needs tokenizer_path: a folder with GPT-2's vocab.json and merges.txt")
        return GPT2BPETokenizer(tokenizer_path)
    if kind in ("spm_bpe", "spm_unigram"):
        return SentencePieceTokenizer.train(train_file, cache_dir, vocab_size=vocab_size, model_type=kind[4:])
    raise ValueError(f"unknown tokenizer {kind!r}; valid: byte, spm_bpe, spm_unigram, gpt2")


def tokenize_cached(path: Path, tokenizer: Tokenizer, cache_dir: Path) -> np.ndarray:
    """Token ids of a text file, cached as .npy keyed by the file's content and the tokenizer."""
    raw = path.read_bytes()
    key = hashlib.sha256(raw).hexdigest()[:16]
    cache = cache_dir / f"{path.stem}-{key}-{tokenizer.id}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    if tokenizer.id == "byte":
        ids = np.frombuffer(raw, dtype=np.uint8).astype(np.int32)  # = encode(decode(raw)) for UTF-8; any bytes
    else:
        ids = np.asarray(tokenizer.encode(read_utf8(path)), dtype=np.int32)
    with cache_write(cache.parent):
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
    tokenizer_path: str | None = None,
    allow_download: bool = False,
) -> LMTask:
    """An LM task over a named corpus, or over your own `files` ({"train": path, "valid": ..., "test": ...}).

    `allow_download=True` (WikiText-103 only) fetches "Salesforce/wikitext" through flurka.data.hub when the
    files are absent from the data root.
    """
    if allow_download and corpus == "wikitext-103" and files is None:
        from flurka.data import hub

        local = [data_root(root) / rel for rel in CORPORA[corpus].files.values()]
        cached = [hub.hub_root() / rel for rel in CORPORA[corpus].files.values()]
        if not all(p.is_file() for p in local):
            root = str(hub.hub_root() if all(p.is_file() for p in cached) else hub.fetch_wikitext103())
    if files is not None:
        spec = Corpus(corpus, dict(files), {k: None for k in files})
    elif corpus in CORPORA:
        spec = CORPORA[corpus]
    else:
        raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)} (or pass files=...)")
    paths = corpus_files(spec, root)
    cache_dir = writable_cache(spec.name)
    train_file = paths.get("train", paths.get("all"))
    tok = make_tokenizer(tokenizer, train_file, cache_dir, vocab_size, tokenizer_path)
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


# ------------------------------------------------------------------------------------------- OpenWebText2

OWT2_LAYOUT = (
    "openwebtext2/train/*.jsonl[.gz] and openwebtext2/valid/*.jsonl[.gz] (one JSON object with a 'text' field "
    "per line, as in the released openwebtext2.jsonl.zst.tar shards after `zstd -d`), or *.txt files (one "
    "document per file); optionally openwebtext2/test/ in the same form"
)


def _owt2_documents(path: Path) -> Iterator[str]:
    """The documents of one shard: every JSON line's "text", or a whole .txt file."""
    if path.suffix == ".txt":
        yield read_utf8(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)["text"]
                except (ValueError, KeyError, TypeError) as err:
                    raise DataError(f"{path} line {n}: not a JSON object with a 'text' field ({err})") from err
    except (EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path} is corrupt or truncated ({err}); replace it") from err
    except UnicodeDecodeError:  # the error itself holds a whole block of the file: name the file instead
        raise DataError(f"{path} is not UTF-8 text (bad bytes near line {n + 1}); re-encode it as UTF-8") from None


def _owt2_shards(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.name.endswith((".jsonl", ".jsonl.gz", ".txt")))


def tokenize_documents_cached(shards: list[Path], tokenizer: Tokenizer, eos_id: int, cache_file: Path) -> np.ndarray:
    """Documents of `shards` as one token stream (EOS after each), streamed to a uint16/int32 memory map.

    Written piece by piece to a temporary file and renamed at the end, so corpora larger than memory work and
    an interrupted run never leaves a partial cache behind.
    """
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.int32
    if cache_file.exists():
        return np.memmap(cache_file, dtype=dtype, mode="r")
    with cache_write(cache_file.parent):
        cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}")
    with cache_write(cache_file.parent), tmp.open("wb") as out:
        for shard in shards:
            for doc in _owt2_documents(shard):
                out.write(np.asarray([*tokenizer.encode(doc), eos_id], dtype=dtype).tobytes())
    os.replace(tmp, cache_file)
    return np.memmap(cache_file, dtype=dtype, mode="r")


def build_openwebtext2(
    *,
    seq_len: int,
    tokenizer: str = "gpt2",
    tokenizer_path: str | None = None,
    root: str | None = None,
) -> LMTask:
    """OpenWebText2 with the GPT-2 BPE tokenizer (local `transformers` files at `tokenizer_path`); perplexity.

    HF: "segyges/OpenWebText2" (with internet); offline the layout is OWT2_LAYOUT under the data root.
    """
    base = data_root(root) / "openwebtext2"
    shards = {s: _owt2_shards(base / s) for s in ("train", "valid", "test") if (base / s).is_dir()}
    if not shards.get("train") or not shards.get("valid"):
        raise DataError(
            f"OpenWebText2 is not in {base}. Put {OWT2_LAYOUT} under {data_root(root)}, or set FLURKA_DATA / "
            f"data.root. With internet, the canonical source is the Hugging Face dataset 'segyges/OpenWebText2'."
        )
    if tokenizer != "gpt2":
        raise ValueError(f"OpenWebText2 uses the GPT-2 BPE tokenizer (tokenizer=gpt2); got {tokenizer!r}")
    if not tokenizer_path:
        raise DataError(
            "OpenWebText2 needs the GPT-2 tokenizer files (vocab.json, merges.txt): set task.tokenizer_path to a "
            "folder holding them (e.g. from AutoTokenizer.from_pretrained('openai-community/gpt2')"
            ".save_pretrained(path) on a machine with internet)."
        )
    tok = GPT2BPETokenizer(tokenizer_path)
    splits = {}
    for split, files in shards.items():
        key = hashlib.sha256(
            "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()
        ).hexdigest()[:16]
        splits[split] = tokenize_documents_cached(
            files, tok, tok.eos_id, cache_root() / "openwebtext2" / f"{split}-{key}-{tok.id}.bin"
        )
    return LMTask(
        name="openwebtext2",
        splits=splits,
        tokenizer=tok,
        seq_len=seq_len,
        metric="ppl",
        description="OpenWebText2, GPT-2 BPE",
    )


__all__ = ["CORPORA", "Corpus", "DataError", "build_lm_task", "build_openwebtext2"]
