"""GLUE: the nine tasks from GLUE-format .tsv files, their official metrics, and BERT-style MLM pre-training.

Layout under the data root (MANIFEST.md; HF: "nyu-mll/glue", config = the lower-case task name):

    glue/CoLA/{train,dev,test}.tsv        no header in train/dev (GLUE release); test has `index sentence`
    glue/SST-2/{train,dev,test}.tsv       glue/MRPC/{train,dev,test}.tsv      glue/RTE/{train,dev,test}.tsv
    glue/QQP/  glue/QNLI/  glue/WNLI/     {train,dev,test}.tsv
    glue/MNLI/{train,dev_matched,dev_mismatched,test_matched,test_mismatched}.tsv
    glue/STS-B/STS-B.zip                  read in place (members STS-B/{train,dev,test}.tsv), or the extracted
                                          glue/STS-B/{train,dev,test}.tsv

Columns are found by their header names (GLUE's headers), except CoLA's header-less train/dev. Files whose
sha256 MANIFEST records are checked; STS-B is checked member by member, so the original GLUE zip and the
re-packed copy staged here (same members) are both accepted.

Tokenisation: a sentencepiece model trained locally on the pre-training corpus (WikiText-2 train by default)
with [PAD] [CLS] [SEP] [MASK] as ids 0-3, or BERT WordPiece from local `transformers` files
(`tokenizer="wordpiece", tokenizer_path=...`). Inputs are `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, with
token_type_ids 0 for the first segment and 1 for the second.

Truncation policy (BERT's "longest first"): a pair longer than `max_len` loses tokens from the end of its
longer segment until it fits. Never silent: each split's count of truncated examples is in `task.stats`
and logged.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flurka.data import metrics
from flurka.data.base import run_eval_batches
from flurka.data.classification import ArrayClassificationTask
from flurka.data.files import cached_arrays, checked, is_hub_copy, missing_dataset, register, source_key
from flurka.data.sources import DataError, cache_root, data_root
from flurka.data.tokenizers import OffsetSpecialTokenizer, SentencePieceTokenizer, SpecialTokenizer, WordPieceTokenizer

log = logging.getLogger(__name__)
csv.field_size_limit(1 << 24)


@dataclass(frozen=True)
class GlueSpec:
    folder: str
    text: tuple[str, ...]  # header names of the one or two sentence columns
    label: str
    labels: tuple[str, ...] | None  # label strings in id order; None = a float score (regression)
    metric: str  # "matthews" | "accuracy" | "f1" | "pearson"
    files: dict[str, str] = field(default_factory=lambda: {"train": "train", "valid": "dev", "test": "test"})


# Label orders follow the HF "nyu-mll/glue" configs, so ids agree with models trained elsewhere.
GLUE = {
    "cola": GlueSpec("CoLA", ("sentence",), "label", ("0", "1"), "matthews"),
    "sst2": GlueSpec("SST-2", ("sentence",), "label", ("0", "1"), "accuracy"),
    "mrpc": GlueSpec("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), "f1"),
    "qqp": GlueSpec("QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), "f1"),
    "stsb": GlueSpec("STS-B", ("sentence1", "sentence2"), "score", None, "pearson"),
    "mnli": GlueSpec(
        "MNLI",
        ("sentence1", "sentence2"),
        "gold_label",
        ("entailment", "neutral", "contradiction"),
        "accuracy",
        {
            "train": "train",
            "valid": "dev_matched",
            "valid_mismatched": "dev_mismatched",
            "test": "test_matched",
            "test_mismatched": "test_mismatched",
        },
    ),
    "qnli": GlueSpec("QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment"), "accuracy"),
    "rte": GlueSpec("RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), "accuracy"),
    "wnli": GlueSpec("WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), "accuracy"),
}
COLA_COLUMNS = ("source", "label", "original_label", "sentence")  # CoLA train/dev have no header row

register(
    {
        "glue/CoLA/train.tsv": ("sha256", "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624"),
        "glue/CoLA/dev.tsv": ("sha256", "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd"),
        "glue/CoLA/test.tsv": ("sha256", "3b4df85f7a9a0633574b38d181e18090ac961a24b18fb6bcd74999ddea8ad0b8"),
        "glue/SST-2/train.tsv": ("sha256", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
        "glue/SST-2/dev.tsv": ("sha256", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
        "glue/SST-2/test.tsv": ("sha256", "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13"),
        "glue/MRPC/train.tsv": ("sha256", "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3"),
        "glue/MRPC/dev.tsv": ("sha256", "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17"),
        "glue/MRPC/test.tsv": ("sha256", "aee460ceda833926b8ab2ad952d399f5cf8bc9335cff19afcac03dc449558622"),
        "glue/RTE/train.tsv": ("sha256", "81d25e323e1ab5b2ad7cd445f1a69db89f2b1c104f3e26915a9421aa4a5f4735"),
        "glue/RTE/dev.tsv": ("sha256", "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb"),
        "glue/RTE/test.tsv": ("sha256", "6e33f09b5c2bfd5fd5fde217070f3dd49e484e33b9752b5864cf36fc421a213f"),
    }
)
# STS-B members inside STS-B.zip (or extracted), by content: "glue/STS-B/STS-B.zip!<member>" -> sha256.
STSB_MEMBERS = {
    "STS-B/train.tsv": "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
    "STS-B/dev.tsv": "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59",
    "STS-B/test.tsv": "16b4223d7d44a644fbc10f1b449472cfe81e1715fb07cf44023b0aa88ce856eb",
}


# ------------------------------------------------------------------------------------------------ reading


def _read_stsb(root: str | Path | None, stem: str) -> tuple[str, bytes]:
    """(source description, bytes) of STS-B's `stem`.tsv: from the extracted folder or from inside the zip."""
    base = data_root(root) / "glue" / "STS-B"
    member = f"STS-B/{stem}.tsv"
    if (base / f"{stem}.tsv").is_file():
        where, raw = str(base / f"{stem}.tsv"), (base / f"{stem}.tsv").read_bytes()
    elif (base / "STS-B.zip").is_file():
        where = f"{base / 'STS-B.zip'}!{member}"
        try:
            with zipfile.ZipFile(base / "STS-B.zip") as z:
                raw = z.read(member)
        except (zipfile.BadZipFile, KeyError, EOFError, OSError) as err:
            raise DataError(f"{base / 'STS-B.zip'} is corrupt, truncated or lacks {member} ({err})") from err
    else:
        raise missing_dataset(
            "GLUE STS-B", root, ["glue/STS-B/STS-B.zip  (GLUE's STS-B.zip, unextracted)"], hf_name="nyu-mll/glue (stsb)"
        )
    expected = None if is_hub_copy(base) else STSB_MEMBERS.get(member)
    actual = hashlib.sha256(raw).hexdigest()
    if expected is not None and actual != expected:
        raise DataError(f"checksum mismatch for {where}: sha256 {actual}, expected {expected}. Replace STS-B.zip.")
    return where, raw


def read_glue_rows(task: str, split: str, root: str | Path | None = None) -> tuple[list[tuple[str, ...]], list]:
    """([(sentence,) or (sentence1, sentence2)], labels) of one split; labels are None for unlabelled rows."""
    spec = GLUE[task]
    stem = spec.files[split]
    if spec.folder == "STS-B":
        where, raw = _read_stsb(root, stem)
    else:
        rel = f"glue/{spec.folder}/{stem}.tsv"
        if not (data_root(root) / rel).is_file():
            files = [f"glue/{spec.folder}/{s}.tsv" for s in spec.files.values()]
            raise missing_dataset(f"GLUE {spec.folder}", root, files, hf_name=f"nyu-mll/glue ({task})")
        path = checked(root, rel, hint=f"use the GLUE release's {spec.folder}/{stem}.tsv")
        where, raw = str(path), path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # MRPC's GLUE files start with a byte-order mark
    except UnicodeDecodeError as err:
        raise DataError(f"{where} is not UTF-8 text ({err})") from err
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = [r for r in rows if r]
    if task == "cola" and split != "test":
        header, body = COLA_COLUMNS, rows
    else:
        header, body = tuple(rows[0]), rows[1:]
    col = {name: i for i, name in enumerate(header)}
    missing = [c for c in spec.text if c not in col]
    if missing:
        raise DataError(f"{where}: header {header} lacks the columns {missing}")
    labelled = spec.label in col
    need = max(col[c] for c in (*spec.text, *([spec.label] if labelled else [])))
    sentences, labels = [], []
    for line, row in enumerate(body, start=2 if header is not COLA_COLUMNS else 1):
        if len(row) <= need:
            raise DataError(f"{where} line {line}: {len(row)} fields, expected at least {need + 1} (truncated file?)")
        sentences.append(tuple(row[col[c]] for c in spec.text))
        labels.append(row[col[spec.label]] if labelled else None)
    if not body:
        raise DataError(f"{where} has no examples")
    return sentences, labels


def glue_present(task: str, root: str | Path | None) -> bool:
    """Whether every file of `task` is in `root` (STS-B: the zip or the extracted files)."""
    spec = GLUE[task]
    base = data_root(root) / "glue" / spec.folder
    if spec.folder == "STS-B" and (base / "STS-B.zip").is_file():
        return True
    return all((base / f"{stem}.tsv").is_file() for stem in spec.files.values())


def _label_ids(task: str, raw: list, where: str) -> np.ndarray:
    spec = GLUE[task]
    if raw and raw[0] is None:
        return np.full(len(raw), -1, dtype=np.float32 if spec.labels is None else np.int64)  # unlabelled test
    if spec.labels is None:
        return np.asarray([float(x) for x in raw], dtype=np.float32)
    index = {name: i for i, name in enumerate(spec.labels)}
    bad = sorted({x for x in raw if x not in index})
    if bad:
        raise DataError(f"{where}: unexpected labels {bad[:5]}; valid: {list(spec.labels)}")
    return np.asarray([index[x] for x in raw], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ encoding


def encode_pair(
    tok: SpecialTokenizer, a: list[int], b: list[int] | None, max_len: int
) -> tuple[list[int], list[int], bool]:
    """`[CLS] a [SEP] (b [SEP])`, token types, and whether it was truncated (longest-first, from the end)."""
    budget = max_len - (3 if b is not None else 2)
    if budget < 2:
        raise ValueError(f"max_len={max_len} leaves no room for text after the special tokens")
    a, b = list(a), (list(b) if b is not None else None)
    truncated = False
    while len(a) + (len(b) if b is not None else 0) > budget:
        truncated = True
        if b is not None and len(b) > len(a):
            b.pop()
        else:
            a.pop()
    ids = [tok.cls_id, *a, tok.sep_id]
    types = [0] * len(ids)
    if b is not None:
        ids += [*b, tok.sep_id]
        types += [1] * (len(b) + 1)
    return ids, types, truncated


def make_special_tokenizer(
    tokenizer: str, *, vocab_size: int, tokenizer_corpus: str, tokenizer_path: str | None, root: str | Path | None
) -> SpecialTokenizer:
    """sentencepiece (BPE/unigram) trained on a pre-training corpus from text.CORPORA, or local BERT WordPiece."""
    if tokenizer == "wordpiece":
        if not tokenizer_path:
            raise ValueError("tokenizer=wordpiece needs tokenizer_path: a folder of BERT tokenizer files")
        return WordPieceTokenizer(tokenizer_path)
    if tokenizer not in ("spm_bpe", "spm_unigram"):
        raise ValueError(f"unknown tokenizer {tokenizer!r}; valid: spm_bpe, spm_unigram, wordpiece")
    from flurka.data.text import CORPORA, corpus_files

    if tokenizer_corpus not in CORPORA:
        raise ValueError(f"unknown tokenizer_corpus {tokenizer_corpus!r}; valid: {', '.join(CORPORA)}")
    files = corpus_files(CORPORA[tokenizer_corpus], root)
    train_file = files.get("train", files.get("all"))
    base = SentencePieceTokenizer.train(
        train_file, cache_root() / "tokenizers", vocab_size=vocab_size, model_type=tokenizer[4:]
    )
    return OffsetSpecialTokenizer(base)


def _metric_fn(spec: GlueSpec) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    def fn(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        if spec.metric == "pearson":
            return {"pearson": metrics.pearson(pred, gold), "spearman": metrics.spearman(pred, gold)}
        out = {"accuracy": metrics.accuracy(pred, gold)}
        if spec.metric == "matthews":
            out = {"matthews": metrics.matthews_corrcoef(pred, gold), **out}
        if spec.metric == "f1":
            out = {"f1": metrics.f1_score(pred, gold), **out}
        return out

    return fn


@dataclass
class GlueTask(ArrayClassificationTask):
    """GLUE classification/regression; evaluate("valid") on MNLI also reports the mismatched dev set."""

    tokenizer: Any = None

    def evaluate(
        self,
        model: torch.nn.Module,
        split: str,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> dict[str, float]:
        out = super().evaluate(
            model, split, batch_size=batch_size, max_batches=max_batches, device=device, autocast=autocast
        )
        if split == "valid" and "valid_mismatched" in self.splits:
            mm = super().evaluate(
                model,
                "valid_mismatched",
                batch_size=batch_size,
                max_batches=max_batches,
                device=device,
                autocast=autocast,
            )
            out.update({"accuracy_mm": mm["accuracy"], "loss_mm": mm["loss"]})
        return out


def build_glue_task(
    task: str,
    *,
    max_len: int = 128,
    seq_len: int | None = None,
    tokenizer: str = "spm_bpe",
    vocab_size: int = 8000,
    tokenizer_corpus: str = "wikitext-2",
    tokenizer_path: str | None = None,
    root: str | None = None,
    allow_download: bool = False,
) -> GlueTask:
    """One GLUE task. `seq_len`, when a scale config sets it, overrides `max_len` (the model's length limit).

    `allow_download=True`: when the task's files are absent from the data root, fetch "nyu-mll/glue" through
    flurka.data.hub (a copy under the cache root). The tokenizer corpus is still read from `root`.
    """
    if task not in GLUE:
        raise ValueError(f"unknown GLUE task {task!r}; valid: {', '.join(GLUE)}")
    spec = GLUE[task]
    max_len = int(seq_len or max_len)
    data = root
    if allow_download and not glue_present(task, root):
        from flurka.data import hub

        data = str(hub.fetch_glue(task) if not glue_present(task, hub.hub_root()) else hub.hub_root())
    rows = {split: read_glue_rows(task, split, data) for split in spec.files}  # missing data stops before training
    tok = make_special_tokenizer(
        tokenizer, vocab_size=vocab_size, tokenizer_corpus=tokenizer_corpus, tokenizer_path=tokenizer_path, root=root
    )
    splits, stats = {}, {"truncated": {}, "examples": {}}
    for split, (sentences, raw_labels) in rows.items():
        where = f"glue/{spec.folder}/{spec.files[split]}.tsv"
        labels = _label_ids(task, raw_labels, where)
        digest = hashlib.sha256(repr(sentences).encode()).hexdigest()[:16]  # keyed by the content actually read
        key = source_key([], task, split, digest, tok.id, max_len)

        def build(sentences: list = sentences) -> dict[str, np.ndarray]:
            ids = np.full((len(sentences), max_len), tok.pad_id, dtype=np.int32)
            types = np.zeros((len(sentences), max_len), dtype=np.int8)
            lengths = np.zeros(len(sentences), dtype=np.int32)
            truncated = np.zeros(len(sentences), dtype=bool)
            for i, pair in enumerate(sentences):
                a = tok.encode(pair[0])
                b = tok.encode(pair[1]) if len(pair) > 1 else None
                row, tt, truncated[i] = encode_pair(tok, a, b, max_len)
                ids[i, : len(row)], types[i, : len(row)], lengths[i] = row, tt, len(row)
            return {"input_ids": ids, "token_type_ids": types, "lengths": lengths, "truncated": truncated}

        arrays = cached_arrays("glue", key, ["input_ids", "token_type_ids", "lengths", "truncated"], build)
        n_trunc = int(np.asarray(arrays["truncated"]).sum())
        stats["truncated"][split], stats["examples"][split] = n_trunc, len(labels)
        if n_trunc:
            log.warning(
                "%s/%s: %d of %d examples truncated to max_len=%d (longest first)",
                task,
                split,
                n_trunc,
                len(labels),
                max_len,
            )
        splits[split] = {k: arrays[k] for k in ("input_ids", "token_type_ids", "lengths")} | {"labels": labels}
    return GlueTask(
        name=task,
        splits=splits,
        num_labels=1 if spec.labels is None else len(spec.labels),
        metric_fn=_metric_fn(spec),
        vocab_size=tok.vocab_size,
        max_len=max_len,
        head="regression" if spec.labels is None else "classification",
        stats=stats,
        description=f"GLUE {spec.folder}",
        tokenizer=tok,
    )


# ------------------------------------------------------------------------------------------- MLM pre-training


@dataclass
class MLMTask:
    """BERT masked-LM pre-training over a token stream: windows of max_len - 2 tokens in `[CLS] ... [SEP]`.

    15% of the ordinary tokens of each sequence (rounded, at least one) are chosen; of those 80% become
    [MASK], 10% a random ordinary token and 10% stay; labels hold the original ids there and -100 elsewhere.
    Both the windows and the masking of step s are a pure function of (seed, s). Eval windows tile a split in
    order with a fixed masking per
    window, so eval losses are comparable across runs.
    """

    name: str
    splits: dict[str, np.ndarray]
    tokenizer: Any
    max_len: int
    mask_prob: float = 0.15
    kind: str = field(default="mlm", init=False)
    causal: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for split, tokens in self.splits.items():
            if len(tokens) < self.max_len:
                raise DataError(f"{self.name}/{split} has {len(tokens)} tokens, fewer than max_len={self.max_len}")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "max_len": self.max_len, "head": "mlm"}

    def _batch(self, tokens: np.ndarray, starts: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        tok, body = self.tokenizer, self.max_len - 2
        idx = starts[:, None] + np.arange(body)[None, :]
        window = np.asarray(tokens[idx], dtype=np.int64)
        b = len(starts)
        ids = np.concatenate([np.full((b, 1), tok.cls_id), window, np.full((b, 1), tok.sep_id)], axis=1)
        # exactly max(1, round(15% of the tokens)) targets per sequence, as BERT's create_pretraining_data does
        k = max(1, round(self.mask_prob * body))
        picks = 1 + np.argsort(rng.random((b, body)), axis=1)[:, :k]
        chosen = np.zeros_like(ids, dtype=bool)
        np.put_along_axis(chosen, picks, True, axis=1)
        labels = np.where(chosen, ids, -100)
        action = rng.random(ids.shape)
        to_mask = chosen & (action < 0.8)
        to_random = chosen & (action >= 0.8) & (action < 0.9)
        ids = np.where(to_mask, tok.mask_id, ids)
        ids = np.where(to_random, rng.integers(tok.first_normal_id, tok.vocab_size, size=ids.shape), ids)
        return {
            "input_ids": torch.from_numpy(ids),
            "token_type_ids": torch.zeros(ids.shape, dtype=torch.int64),
            "padding_mask": torch.ones(ids.shape, dtype=torch.bool),
            "labels": torch.from_numpy(labels),
        }

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        tokens = self.splits["train"]
        starts = rng.integers(0, len(tokens) - (self.max_len - 2) + 1, size=batch_size)
        return self._batch(tokens, starts, rng)

    def eval_batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[dict]:
        tokens, body = self.splits[split], self.max_len - 2
        n = len(tokens) // body
        if max_batches is not None:
            n = min(n, max_batches * batch_size)
        for first in range(0, n, batch_size):
            starts = np.arange(first, min(first + batch_size, n)) * body
            yield self._batch(tokens, starts, np.random.default_rng([12345, first]))

    def evaluate(
        self,
        model: torch.nn.Module,
        split: str,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> dict[str, float]:
        """Masked-token loss (mean over targets), its perplexity, and masked-token accuracy."""
        loss_sum, correct, n = 0.0, 0, 0
        batches = self.eval_batches(split, batch_size, max_batches)
        for batch, out in run_eval_batches(model, batches, device=torch.device(device), autocast=autocast):
            target = batch["labels"] != -100
            k = int(target.sum())
            loss_sum += float(out["loss"]) * k
            correct += int((out["logits"].argmax(-1)[target] == batch["labels"][target]).sum())
            n += k
        mean = loss_sum / max(n, 1)
        return {"loss": mean, "ppl": metrics.perplexity(mean), "mlm_accuracy": correct / max(n, 1)}


def build_mlm_task(
    corpus: str = "wikitext-2",
    *,
    max_len: int = 128,
    seq_len: int | None = None,
    tokenizer: str = "spm_bpe",
    vocab_size: int = 8000,
    tokenizer_path: str | None = None,
    mask_prob: float = 0.15,
    root: str | None = None,
) -> MLMTask:
    """MLM over a text.CORPORA corpus, with the tokenizer GLUE fine-tuning uses (same corpus, same options)."""
    from flurka.data.lm import split_stream
    from flurka.data.text import CORPORA, corpus_files, tokenize_cached

    max_len = int(seq_len or max_len)
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)}")
    tok = make_special_tokenizer(
        tokenizer, vocab_size=vocab_size, tokenizer_corpus=corpus, tokenizer_path=tokenizer_path, root=root
    )
    paths = corpus_files(CORPORA[corpus], root)
    cache_dir = cache_root() / CORPORA[corpus].name
    if "all" in paths:
        splits = split_stream(tokenize_cached(paths["all"], tok, cache_dir))
    else:
        splits = {s: tokenize_cached(p, tok, cache_dir) for s, p in paths.items()}
    return MLMTask(name=f"mlm_{corpus}", splits=splits, tokenizer=tok, max_len=max_len, mask_prob=mask_prob)


__all__ = ["GLUE", "GlueTask", "MLMTask", "build_glue_task", "build_mlm_task", "encode_pair", "read_glue_rows"]
