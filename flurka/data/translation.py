"""Translation: Multi30k (task 1) and WMT14 en-de / en-fr, newstest2021 as an extra test set, BLEU via sacrebleu.

Layouts under the data root:

    multi30k/task1/raw/{train,val,test_2016_flickr}.{en,de,fr}.gz      official Multi30k files (MANIFEST.md)
        HF: "bentrevett/multi30k" (en-de); the official repository is multi30k/dataset
    wmt14/<en-de|en-fr>/{train,newstest2013,newstest2014}.{en,de|fr}   plain text (or .gz), one aligned
        sentence per line, as produced by e.g. `sacrebleu -t wmt14 -l en-de --echo src` for the test sets and
        the WMT14 training corpora (Europarl, Common Crawl, News Commentary[, UN, Gigaword for en-fr])
        concatenated for train.  HF: "wmt/wmt14" (configs "de-en", "fr-en")
    wmt/newstest2021/newstest2021.en-de.{src.en,ref.A.de}             WMT21 news test (MANIFEST.md), en-de only

A shared sentencepiece BPE vocabulary is trained locally on the source + target training text and cached,
with PAD=0, BOS=1, EOS=2 and the learned pieces after them. Batches: {"src_ids" (tokens + EOS), "src_mask"
(bool, True = real token), "tgt_ids" (BOS + tokens), "labels" (tokens + EOS, -100 on padding)}, padded to
`max_len` (fixed shapes, which length-projecting attention variants need) or, with `pad_to="longest"`, to
the longest sequence in the batch.

Length policy (never silent; counts in `task.stats`): training pairs whose source or target (with EOS/BOS)
exceeds `max_len` are skipped, as fairseq does; in evaluation splits the over-long source or target is cut to
`max_len` for the loss, while BLEU is always computed against the full raw reference.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flurka.data import metrics
from flurka.data.base import run_eval_batches
from flurka.data.files import cached_arrays, checked, missing_dataset, register, source_key
from flurka.data.sources import DataError, cache_root, data_root
from flurka.data.tokenizers import SentencePieceTokenizer, Tokenizer

log = logging.getLogger(__name__)

MULTI30K = "multi30k/task1/raw"
register(
    {
        f"{MULTI30K}/train.en.gz": ("sha256", "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
        f"{MULTI30K}/train.de.gz": ("sha256", "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
        f"{MULTI30K}/train.fr.gz": ("sha256", "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
        f"{MULTI30K}/val.en.gz": ("sha256", "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
        f"{MULTI30K}/val.de.gz": ("sha256", "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
        f"{MULTI30K}/val.fr.gz": ("sha256", "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
        f"{MULTI30K}/test_2016_flickr.en.gz": (
            "sha256",
            "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        ),
        f"{MULTI30K}/test_2016_flickr.de.gz": (
            "sha256",
            "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        ),
        f"{MULTI30K}/test_2016_flickr.fr.gz": (
            "sha256",
            "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
        ),
        "wmt/newstest2021/newstest2021.en-de.src.en": (
            "sha256",
            "63925ded38b5354d19717df308d81274854f95ac2be5d94fd29b7b13c5dddcb7",
        ),
        "wmt/newstest2021/newstest2021.en-de.ref.A.de": (
            "sha256",
            "3363b4a490bdcf55f3565bcc5dfadabaf3554f17cfb3540e25781e6bad67f854",
        ),
    }
)


@dataclass(frozen=True)
class ParallelCorpus:
    name: str
    src: str
    tgt: str
    files: dict[str, tuple[str, str]]  # split -> (source file, target file), relative to the data root
    hf_name: str
    note: str = ""


def corpus_spec(corpus: str, src: str, tgt: str) -> ParallelCorpus:
    pair = f"{src}-{tgt}"
    if corpus == "multi30k":
        if {src, tgt} - {"en", "de", "fr", "cs"}:
            raise ValueError(f"Multi30k task 1 languages are en, de, fr, cs; got {pair}")
        stems = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
        files = {s: (f"{MULTI30K}/{stem}.{src}.gz", f"{MULTI30K}/{stem}.{tgt}.gz") for s, stem in stems.items()}
        return ParallelCorpus(f"multi30k_{src}_{tgt}", src, tgt, files, "bentrevett/multi30k")
    if corpus == "wmt14":
        if pair not in ("en-de", "en-fr"):
            raise ValueError(f"WMT14 pairs here are en-de and en-fr; got {pair}")
        stems = {"train": "train", "valid": "newstest2013", "test": "newstest2014"}
        files = {s: (f"wmt14/{pair}/{stem}.{src}", f"wmt14/{pair}/{stem}.{tgt}") for s, stem in stems.items()}
        return ParallelCorpus(
            f"wmt14_{src}_{tgt}",
            src,
            tgt,
            files,
            f"wmt/wmt14 ({tgt}-{src})",
            note="Plain text or .gz, one sentence per line, source and target files line-aligned.\n",
        )
    raise ValueError(f"unknown parallel corpus {corpus!r}; valid: multi30k, wmt14")


NEWSTEST2021 = {"en-de": ("wmt/newstest2021/newstest2021.en-de.src.en", "wmt/newstest2021/newstest2021.en-de.ref.A.de")}


def read_lines(root: str | Path | None, rel: str, *, hint: str) -> list[str]:
    """Lines of a (possibly .gz) text file, checked against its published sha256 when one is registered."""
    base = data_root(root)
    for candidate in (rel, rel + ".gz") if not rel.endswith(".gz") else (rel,):
        if (base / candidate).is_file():
            rel = candidate
            break
    path = checked(root, rel, hint=hint)
    try:
        raw = gzip.decompress(path.read_bytes()) if rel.endswith(".gz") else path.read_bytes()
        text = raw.decode("utf-8")
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); replace it") from err
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class Seq2SeqTokenizer:
    """A shared sentencepiece vocabulary with PAD=0, BOS=1, EOS=2 in front of the learned pieces."""

    def __init__(self, base: Tokenizer) -> None:
        self.base = base
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.offset = 3
        self.vocab_size = base.vocab_size + self.offset
        self.id = f"{base.id}+seq2seq3"

    def encode(self, text: str) -> list[int]:
        return [i + self.offset for i in self.base.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self.base.decode([int(i) - self.offset for i in ids if int(i) >= self.offset])


def train_shared_tokenizer(
    train_src: list[str], train_tgt: list[str], name: str, vocab_size: int, model_type: str = "bpe"
) -> Seq2SeqTokenizer:
    """Train (or reuse) one sentencepiece model on the source and target training sentences together."""
    text = "\n".join(train_src + train_tgt) + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = cache_root() / "translation" / name
    corpus = folder / f"spm-train-{key}.txt"
    if not corpus.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = corpus.with_name(corpus.name + f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, corpus)
    base = SentencePieceTokenizer.train(corpus, folder, vocab_size=vocab_size, model_type=model_type)
    return Seq2SeqTokenizer(base)


def _ragged(tok: Seq2SeqTokenizer, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All lines' token ids as one flat array plus offsets (a ragged array that memory-maps)."""
    encoded = [tok.encode(line) for line in lines]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    flat = np.fromiter((i for e in encoded for i in e), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


@dataclass
class TranslationTask:
    name: str
    splits: dict[str, dict[str, np.ndarray]]  # src_tokens, src_offsets, tgt_tokens, tgt_offsets, rows (kept)
    references: dict[str, list[str]]  # split -> raw target sentences (BLEU references)
    tokenizer: Seq2SeqTokenizer
    max_len: int
    pad_to: str = "max_len"
    beam_size: int = 4
    bleu_examples: int = 200
    max_new_tokens: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    kind: str = field(default="seq2seq", init=False)
    causal: bool = field(default=False, init=False)

    def model_kwargs(self) -> dict[str, int]:
        t = self.tokenizer
        return {
            "src_vocab_size": t.vocab_size,
            "tgt_vocab_size": t.vocab_size,
            "max_len": self.max_len,
            "pad_id": t.pad_id,
            "bos_id": t.bos_id,
            "eos_id": t.eos_id,
        }

    def num_examples(self, split: str) -> int:
        return len(self.splits[split]["src_offsets"]) - 1

    def batch(self, split: str, rows: np.ndarray) -> dict[str, torch.Tensor]:
        a, t, L = self.splits[split], self.tokenizer, self.max_len
        srcs, tgts = [], []
        for r in rows:
            s = np.asarray(a["src_tokens"][a["src_offsets"][r] : a["src_offsets"][r + 1]])[: L - 1]
            g = np.asarray(a["tgt_tokens"][a["tgt_offsets"][r] : a["tgt_offsets"][r + 1]])[: L - 1]
            srcs.append(np.append(s, t.eos_id))
            tgts.append(g)
        width = L if self.pad_to == "max_len" else max(max(len(s) for s in srcs), max(len(g) + 1 for g in tgts))
        b = len(rows)
        src = np.full((b, width), t.pad_id, dtype=np.int64)
        tgt_in = np.full((b, width), t.pad_id, dtype=np.int64)
        labels = np.full((b, width), -100, dtype=np.int64)
        for i, (s, g) in enumerate(zip(srcs, tgts, strict=True)):
            src[i, : len(s)] = s
            tgt_in[i, : len(g) + 1] = np.concatenate([[t.bos_id], g])
            labels[i, : len(g) + 1] = np.concatenate([g, [t.eos_id]])
        src_t = torch.from_numpy(src)
        return {
            "src_ids": src_t,
            "src_mask": src_t != t.pad_id,
            "tgt_ids": torch.from_numpy(tgt_in),
            "labels": torch.from_numpy(labels),
        }

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        return self.batch("train", rng.integers(0, self.num_examples("train"), size=batch_size))

    def eval_batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[dict]:
        n = self.num_examples(split)
        if max_batches is not None:
            n = min(n, max_batches * batch_size)
        for first in range(0, n, batch_size):
            yield self.batch(split, np.arange(first, min(first + batch_size, n)))

    def hypothesis_text(self, ids: list[int]) -> str:
        """Generated ids -> detokenised text: drop a leading BOS, stop at EOS, drop padding."""
        t = self.tokenizer
        out = []
        for i in ids:
            if i == t.eos_id:
                break
            if i not in (t.pad_id, t.bos_id):
                out.append(int(i))
        return t.decode(out)

    def evaluate(
        self,
        model: torch.nn.Module,
        split: str,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        bleu_examples: int | None = None,
    ) -> dict[str, float]:
        """Token-level loss (and perplexity) over the split, and BLEU of beam-search output on its first
        `bleu_examples` sentences against the raw references (sacrebleu, 13a)."""
        device = torch.device(device)
        loss_sum, n_tok = 0.0, 0
        for batch, out in run_eval_batches(
            model, self.eval_batches(split, batch_size, max_batches), device=device, autocast=autocast
        ):
            k = int((batch["labels"] != -100).sum())
            loss_sum += float(out["loss"]) * k
            n_tok += k
        result = {"loss": loss_sum / max(n_tok, 1), "ppl": metrics.perplexity(loss_sum / max(n_tok, 1))}
        n_bleu = min(self.bleu_examples if bleu_examples is None else bleu_examples, self.num_examples(split))
        if n_bleu > 0:
            rows = self.splits[split]["rows"]
            hyps, refs = [], []
            was_training = model.training
            model.eval()
            try:
                for first in range(0, n_bleu, batch_size):
                    idx = np.arange(first, min(first + batch_size, n_bleu))
                    b = self.batch(split, idx)
                    with torch.no_grad(), autocast():
                        gen = model.generate(
                            b["src_ids"].to(device),
                            b["src_mask"].to(device),
                            beam_size=self.beam_size,
                            max_new_tokens=self.max_new_tokens or self.max_len - 1,
                        )
                    hyps += [self.hypothesis_text(row) for row in gen.cpu().tolist()]
                    refs += [self.references[split][int(rows[i])] for i in idx]
            finally:
                model.train(was_training)
            result["bleu"] = metrics.bleu(hyps, refs)
            result["bleu_examples"] = float(n_bleu)
        return result


def build_translation_task(
    corpus: str = "multi30k",
    *,
    src: str = "en",
    tgt: str = "de",
    max_len: int = 128,
    seq_len: int | None = None,
    vocab_size: int = 8000,
    extra_test: bool = False,
    pad_to: str = "max_len",
    beam_size: int = 4,
    bleu_examples: int = 200,
    root: str | None = None,
    allow_download: bool = False,
) -> TranslationTask:
    """A seq2seq task over Multi30k or WMT14. `extra_test=True` adds newstest2021 (en-de) as split "newstest2021".

    `seq_len`, when a scale config sets it, overrides `max_len`. `allow_download=True` fetches WMT14 from
    "wmt/wmt14" through flurka.data.hub when it is absent (Multi30k has no Hub copy with these exact splits).
    """
    if pad_to not in ("max_len", "longest"):
        raise ValueError(f"pad_to must be 'max_len' or 'longest'; got {pad_to!r}")
    max_len = int(seq_len or max_len)
    if bleu_examples > 0:
        metrics.require_sacrebleu()
    spec = corpus_spec(corpus, src, tgt)
    all_files = [f for pair in spec.files.values() for f in pair]

    def present(where: str | Path | None) -> bool:
        base = data_root(where)
        return all((base / f).is_file() or (base / (f + ".gz")).is_file() for f in all_files)

    extra_root = root  # newstest2021 stays in the data root
    if not present(root) and allow_download and corpus == "wmt14":
        from flurka.data import hub

        root = str(hub.hub_root() if present(hub.hub_root()) else hub.fetch_wmt14(src, tgt))
    if not present(root):
        raise missing_dataset(spec.name, root, all_files, hf_name=spec.hf_name, extra=spec.note)
    hint = f"see the layout in flurka/data/translation.py (corpus {spec.name})"
    files = dict(spec.files)
    if extra_test:
        if f"{src}-{tgt}" not in NEWSTEST2021:
            raise ValueError(f"newstest2021 is staged for {', '.join(NEWSTEST2021)} only; got {src}-{tgt}")
        files["newstest2021"] = NEWSTEST2021[f"{src}-{tgt}"]
    text = {
        s: (read_lines(r, a, hint=hint), read_lines(r, b, hint=hint))
        for s, (a, b) in files.items()
        for r in [extra_root if s == "newstest2021" else root]
    }
    for s, (a, b) in text.items():
        if len(a) != len(b):
            raise DataError(f"{spec.name}/{s}: {len(a)} source lines but {len(b)} target lines; files misaligned")
    tok = train_shared_tokenizer(text["train"][0], text["train"][1], spec.name, vocab_size)

    splits, refs, stats = {}, {}, {"skipped_too_long": 0, "truncated": {}}
    for s, (a, b) in text.items():
        content = hashlib.sha256(("\n".join(a) + "\0" + "\n".join(b)).encode()).hexdigest()[:16]
        key = source_key([], spec.name, s, content, tok.id)

        def build(a: list[str] = a, b: list[str] = b) -> dict[str, np.ndarray]:
            st, so = _ragged(tok, a)
            tt, to = _ragged(tok, b)
            return {"src_tokens": st, "src_offsets": so, "tgt_tokens": tt, "tgt_offsets": to}

        arr = cached_arrays("translation", key, ["src_tokens", "src_offsets", "tgt_tokens", "tgt_offsets"], build)
        src_len, tgt_len = np.diff(arr["src_offsets"]) + 1, np.diff(arr["tgt_offsets"]) + 1  # + EOS / BOS
        too_long = (src_len > max_len) | (tgt_len > max_len)
        if s == "train":
            keep = np.flatnonzero(~too_long)
            stats["skipped_too_long"] = int(too_long.sum())
            if too_long.any():
                log.warning(
                    "%s/train: skipping %d of %d pairs longer than max_len=%d",
                    spec.name,
                    int(too_long.sum()),
                    len(too_long),
                    max_len,
                )
            arr = _select(arr, keep)
            arr["rows"] = keep
        else:
            stats["truncated"][s] = int(too_long.sum())
            if too_long.any():
                log.warning(
                    "%s/%s: %d pairs cut to max_len=%d for the loss (BLEU uses full references)",
                    spec.name,
                    s,
                    int(too_long.sum()),
                    max_len,
                )
            arr = dict(arr) | {"rows": np.arange(len(a))}
        if len(arr["rows"]) == 0:
            raise DataError(f"{spec.name}/{s}: no sentence pair fits max_len={max_len}")
        splits[s], refs[s] = arr, b
    return TranslationTask(
        name=spec.name if not extra_test else spec.name + "+nt21",
        splits=splits,
        references=refs,
        tokenizer=tok,
        max_len=max_len,
        pad_to=pad_to,
        beam_size=beam_size,
        bleu_examples=bleu_examples,
        stats=stats,
    )


def _select(arr: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The kept rows of a ragged split, re-packed (in memory) so rows index 0..len(keep)-1."""
    n = len(arr["src_offsets"]) - 1
    if len(keep) == n:
        return dict(arr)  # nothing skipped: keep the memory-mapped arrays as they are
    mask = np.zeros(n, dtype=bool)
    mask[keep] = True
    out = {}
    for side in ("src", "tgt"):
        offsets = np.asarray(arr[f"{side}_offsets"])
        lengths = np.diff(offsets)
        token_row = np.repeat(np.arange(n), lengths)  # the row each token belongs to
        out[f"{side}_tokens"] = np.asarray(arr[f"{side}_tokens"])[mask[token_row]]
        new_offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        new_offsets[1:] = np.cumsum(lengths[keep])
        out[f"{side}_offsets"] = new_offsets
    return out
