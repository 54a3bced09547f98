"""Long Range Arena: ListOps (regenerated with LRA's published procedure), Text, Retrieval, Image, Pathfinder.

All five are `classification` tasks over token sequences, batches {"input_ids", "padding_mask", "labels"}
(+ "token_type_ids" for Retrieval), metric accuracy. Sequences longer than `seq_len` are cut to it, as LRA's
input pipelines do (`inputs[:max_length]`); the number cut per split is in `task.stats` and logged.

Sources under the data root:

- ListOps: generated here (no download), or LRA's released `lra_release/listops-1000/basic_{train,val,test}.tsv`
  with `source="release"`. The generator follows `lra_benchmarks/data/listops.py`: trees of MIN/MAX/MED/SUM_MOD
  over digits 0-9, a node is a leaf with probability 0.75 (always at depth 10), 2-10 arguments, kept when
  500 < length < 2000 tokens, unique trees, 96k/2k/2k. Two deliberate differences, both for reproducibility:
  the generator is seeded (`seed`), and unique trees keep their generation order (LRA collected them in a
  Python set, whose order changes from run to run). Parentheses are not tokens (LRA's lengths count
  operators, digits and "]" only). Vocabulary: 0 = PAD, 1-10 = digits, 11-14 = [MIN [MAX [MED [SM, 15 = ].
- Text: byte-level IMDB from the official release folder `aclImdb/{train,test}/{pos,neg}/*.txt`
  (aclImdb_v1.tar.gz; HF "stanfordnlp/imdb"), 4,000 bytes. LRA evaluated on the test set and had no
  validation split; here "valid" and "test" are both the IMDB test set.
- Retrieval: LRA's `lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv` (label, id1, id2, text1, text2),
  byte-level, 4,000 bytes per document. The pair is one input `doc1 [SEP] doc2` with token types 0/1
  (LRA's reference model encodes the two documents separately; a two-tower model can split on token types).
- Image: CIFAR-10 (see images.py) in greyscale, 1,024 pixel tokens (0-255), 45k/5k/10k.
- Pathfinder: `lra_release/pathfinder32/curv_contour_length_14/{metadata/*.npy, imgs/...}` (LRA's "hard"
  setting by default; `difficulty` picks curv_baseline or curv_contour_length_9), 1,024 pixel tokens,
  80/10/10 split of the metadata order, as LRA does.
Byte-level texts use ids 1..256 for bytes 0..255 and 0 for padding (and 257 as the Retrieval separator).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from flurka.data import metrics
from flurka.data.classification import ArrayClassificationTask
from flurka.data.files import cached_arrays, checked, missing_dataset, source_key
from flurka.data.sources import DataError, data_root

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ ListOps

MIN, MAX, MED, SUM_MOD, END = "[MIN", "[MAX", "[MED", "[SM", "]"
OPERATORS = (MIN, MAX, MED, SUM_MOD)
VALUE_P = 0.25  # LRA: a node below max depth becomes an operator when random() <= 0.25
LISTOPS_VOCAB = {str(d): d + 1 for d in range(10)} | {op: 11 + i for i, op in enumerate(OPERATORS)} | {END: 15}


def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> tuple[object, int]:
    """One random ListOps tree as LRA builds it (nested pairs), and its length in tokens (parentheses excluded)."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.choice(range(10)), 1
    length = 2  # the operator and its closing "]"
    values = []
    for _ in range(rng.randint(2, max_args)):
        sub, sub_len = generate_tree(rng, depth + 1, max_depth, max_args)
        values.append(sub)
        length += sub_len
    tree: object = (rng.choice(OPERATORS), values[0])
    for v in values[1:]:
        tree = (tree, v)
    return (tree, END), length


def tree_tokens(tree: object) -> list[str]:
    """The token sequence (LRA's string without its parentheses)."""
    if isinstance(tree, tuple):
        return tree_tokens(tree[0]) + tree_tokens(tree[1])
    return [str(tree)]


def evaluate_tokens(tokens: list[str]) -> int:
    """The value of a ListOps expression given as tokens (independent of the tree: used to check labels)."""
    stack: list[list] = []
    result = None
    for t in tokens:
        if t in OPERATORS:
            stack.append([t])
        elif t == END:
            op, *args = stack.pop()
            if op == MIN:
                value = min(args)
            elif op == MAX:
                value = max(args)
            elif op == MED:
                value = int(np.median(args))  # LRA: int(np.median(...)), i.e. the mean of the middle two, floored
            else:
                value = sum(args) % 10
            if stack:
                stack[-1].append(value)
            else:
                result = value
        else:
            if stack:
                stack[-1].append(int(t))
            else:
                result = int(t)
    if result is None or stack:
        raise DataError(f"malformed ListOps expression: {' '.join(tokens)[:200]}")
    return result


def generate_listops(
    n: int, *, seed: int, max_depth: int = 10, max_args: int = 10, min_length: int = 500, max_length: int = 2000
) -> list[tuple[list[str], int]]:
    """`n` unique (tokens, label) examples with min_length < length < max_length, in generation order."""
    rng = random.Random(seed)
    seen: dict[str, list[str]] = {}
    while len(seen) < n:
        tree, length = generate_tree(rng, 1, max_depth, max_args)
        if min_length < length < max_length:
            tokens = tree_tokens(tree)
            seen.setdefault(" ".join(tokens), tokens)
    return [(tokens, evaluate_tokens(tokens)) for tokens in seen.values()]


class _RaggedRows:  # a light list-like view: rows of a flat token array, without copying
    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens, self.offsets = tokens, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _pad_tokens(seqs, seq_len: int, dtype=np.int16) -> tuple[np.ndarray, np.ndarray, int]:
    """Right-padded [N, seq_len] ids (0 = pad), lengths, and how many sequences were cut to seq_len."""
    if isinstance(seqs, _RaggedRows):  # slices of one flat array: no per-row arrays are built
        full = np.diff(seqs.offsets)
        kept = np.minimum(full, seq_len)
        out = np.zeros((len(full), seq_len), dtype=dtype)
        for i, (start, k) in enumerate(zip(seqs.offsets[:-1].tolist(), kept.tolist(), strict=True)):
            out[i, :k] = seqs.tokens[start : start + k]
        return out, kept.astype(np.int32), int((full > seq_len).sum())
    out = np.zeros((len(seqs), seq_len), dtype=dtype)
    lengths = np.zeros(len(seqs), dtype=np.int32)
    cut = 0
    for i, s in enumerate(seqs):
        cut += len(s) > seq_len
        s = s[:seq_len]
        out[i, : len(s)] = s
        lengths[i] = len(s)
    return out, lengths, cut


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {"accuracy": metrics.accuracy(pred, gold)}


def _task(name: str, splits: dict, vocab_size: int, seq_len: int, num_labels: int, description: str, stats: dict):
    for split, n_cut in stats.get("truncated", {}).items():
        if n_cut:
            log.warning("%s/%s: %d sequences cut to seq_len=%d (LRA's policy)", name, split, n_cut, seq_len)
    return ArrayClassificationTask(
        name=name,
        splits=splits,
        num_labels=num_labels,
        metric_fn=_accuracy,
        vocab_size=vocab_size,
        max_len=seq_len,
        stats=stats,
        description=description,
    )


def build_listops(
    root: str | None = None,
    *,
    seq_len: int = 2000,
    source: str = "generate",
    seed: int = 0,
    num_train: int = 96_000,
    num_valid: int = 2_000,
    num_test: int = 2_000,
    min_length: int = 500,
    max_length: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
) -> ArrayClassificationTask:
    """ListOps, 10 classes. Generated sets are cached by all generator options."""
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    if source == "generate":
        key = source_key([], "listops-v1", seed, sizes, min_length, max_length, max_depth, max_args)

        def build() -> dict[str, np.ndarray]:
            examples = generate_listops(
                sum(sizes.values()),
                seed=seed,
                max_depth=max_depth,
                max_args=max_args,
                min_length=min_length,
                max_length=max_length,
            )
            ids = [np.asarray([LISTOPS_VOCAB[t] for t in tokens], dtype=np.int16) for tokens, _ in examples]
            lengths = np.asarray([len(x) for x in ids], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            return {"tokens": np.concatenate(ids), "offsets": offsets, "labels": np.asarray([y for _, y in examples])}

        raw = cached_arrays("listops", key, ["tokens", "offsets", "labels"], build)
        offsets = np.asarray(raw["offsets"])
        tokens = np.asarray(raw["tokens"])
        labels = np.asarray(raw["labels"], dtype=np.int64)
        bounds = np.cumsum([0, num_train, num_valid, num_test])
        parts = {}
        for i, split in enumerate(sizes):
            lo, hi = bounds[i], bounds[i + 1]
            parts[split] = (_RaggedRows(tokens, offsets[lo : hi + 1]), labels[lo:hi])
        description = f"ListOps regenerated (LRA procedure, seed {seed})"
    elif source == "release":
        parts = {}
        for split, stem in (("train", "train"), ("valid", "val"), ("test", "test")):
            rel = f"lra_release/listops-1000/basic_{stem}.tsv"
            if not (data_root(root) / rel).is_file():
                raise missing_dataset(
                    "LRA ListOps (released files)",
                    root,
                    [f"lra_release/listops-1000/basic_{s}.tsv" for s in ("train", "val", "test")],
                    hf_name=None,
                    extra="(from LRA's lra_release.gz; or use source=generate to regenerate ListOps locally)\n",
                )
            lines = checked(root, rel, hint="from lra_release.gz").read_text().splitlines()[1:]  # header Source\tTarget
            seqs, labels = [], []
            for i, line in enumerate(lines, start=2):
                fields = line.split("\t")
                if len(fields) != 2:
                    raise DataError(f"{rel} line {i}: expected 'Source<TAB>Target'")
                tokens = [t for t in fields[0].split() if t not in ("(", ")")]
                unknown = set(tokens) - set(LISTOPS_VOCAB)
                if unknown:
                    raise DataError(f"{rel} line {i}: unknown tokens {sorted(unknown)[:5]}")
                seqs.append(np.asarray([LISTOPS_VOCAB[t] for t in tokens], dtype=np.int16))
                labels.append(int(fields[1]))
            parts[split] = (seqs, np.asarray(labels, dtype=np.int64))
        description = "ListOps, LRA's released files"
    else:
        raise ValueError(f"source must be 'generate' or 'release'; got {source!r}")
    splits, stats = {}, {"truncated": {}}
    for split, (seqs, labels) in parts.items():
        ids, lengths, cut = _pad_tokens(seqs, seq_len)
        splits[split] = {"input_ids": ids, "lengths": lengths, "labels": labels}
        stats["truncated"][split] = cut
    return _task("listops", splits, len(LISTOPS_VOCAB) + 1, seq_len, 10, description, stats)


# ---------------------------------------------------------------------------------------- byte-level texts


def _bytes_ids(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int16) + 1  # 0 stays the pad id


def build_lra_text(
    root: str | None = None, *, seq_len: int = 4000, allow_download: bool = False
) -> ArrayClassificationTask:
    """Byte-level IMDB sentiment (2 classes) from aclImdb/{train,test}/{pos,neg}/*.txt.

    `allow_download=True` fetches "stanfordnlp/imdb" through flurka.data.hub when the folder is absent."""

    def present(where: str | Path | None) -> bool:
        return all((data_root(where) / "aclImdb" / s / c).is_dir() for s in ("train", "test") for c in ("neg", "pos"))

    if allow_download and not present(root):
        from flurka.data import hub

        root = str(hub.hub_root() if present(hub.hub_root()) else hub.fetch_imdb())
    base = data_root(root) / "aclImdb"
    folders = [f"aclImdb/{s}/{c}/*.txt" for s in ("train", "test") for c in ("neg", "pos")]
    if not all((base / s / c).is_dir() for s in ("train", "test") for c in ("neg", "pos")):
        raise missing_dataset(
            "LRA Text (IMDB)",
            root,
            folders,
            hf_name="stanfordnlp/imdb",
            extra="(the official aclImdb_v1.tar.gz from ai.stanford.edu/~amaas/data/sentiment, extracted)\n",
        )
    parts = {}
    for split in ("train", "test"):
        files = [(p, label) for label, c in enumerate(("neg", "pos")) for p in sorted((base / split / c).glob("*.txt"))]
        if not files:
            raise DataError(f"{base / split} has no review files")
        texts = [p.read_text(encoding="utf-8", errors="strict") for p, _ in files]
        parts[split] = ([_bytes_ids(t) for t in texts], np.asarray([y for _, y in files], dtype=np.int64))
    parts["valid"] = parts["test"]
    splits, stats = {}, {"truncated": {}}
    for split, (seqs, labels) in parts.items():
        ids, lengths, cut = _pad_tokens(seqs, seq_len)
        splits[split] = {"input_ids": ids, "lengths": lengths, "labels": labels}
        stats["truncated"][split] = cut
    return _task("lra_text", splits, 257, seq_len, 2, "byte-level IMDB (LRA Text)", stats)


def build_lra_retrieval(root: str | None = None, *, seq_len: int = 8000) -> ArrayClassificationTask:
    """Byte-level AAN citation pairs (2 classes): `doc1 [SEP] doc2`, each document cut to seq_len // 2 - 1."""
    rels = {
        s: f"lra_release/tsv_data/new_aan_pairs.{s2}.tsv"
        for s, s2 in (("train", "train"), ("valid", "eval"), ("test", "test"))
    }
    if not all((data_root(root) / r).is_file() for r in rels.values()):
        raise missing_dataset(
            "LRA Retrieval (AAN)",
            root,
            list(rels.values()),
            hf_name=None,
            extra="(from LRA's lra_release.gz: lra_release/tsv_data/)\n",
        )
    per_doc = seq_len // 2 - 1
    sep = 257
    splits, stats = {}, {"truncated": {}}
    for split, rel in rels.items():
        lines = checked(root, rel, hint="from lra_release.gz").read_text(encoding="utf-8").splitlines()
        ids = np.zeros((len(lines), seq_len), dtype=np.int16)
        types = np.zeros((len(lines), seq_len), dtype=np.int8)
        lengths = np.zeros(len(lines), dtype=np.int32)
        labels = np.zeros(len(lines), dtype=np.int64)
        cut = 0
        for i, line in enumerate(lines):
            fields = line.split("\t")
            if len(fields) != 5:
                raise DataError(f"{rel} line {i + 1}: {len(fields)} fields, expected label id1 id2 text1 text2")
            a, b = _bytes_ids(fields[3]), _bytes_ids(fields[4])
            cut += len(a) > per_doc or len(b) > per_doc
            a, b = a[:per_doc], b[:per_doc]
            row = np.concatenate([a, [sep], b, [sep]])
            ids[i, : len(row)] = row
            types[i, len(a) + 1 : len(row)] = 1
            lengths[i] = len(row)
            labels[i] = int(float(fields[0]))
        splits[split] = {"input_ids": ids, "token_type_ids": types, "lengths": lengths, "labels": labels}
        stats["truncated"][split] = cut
    return _task("lra_retrieval", splits, 258, seq_len, 2, "byte-level AAN pairs (LRA Retrieval)", stats)


# ---------------------------------------------------------------------------------------------- pixel tasks


def greyscale(images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, H, W] uint8 with TensorFlow's rgb_to_grayscale weights (what LRA used)."""
    grey = images.astype(np.float32) @ np.asarray([0.2989, 0.5870, 0.1140], dtype=np.float32)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def build_lra_image(root: str | None = None, *, seq_len: int = 1024) -> ArrayClassificationTask:
    """CIFAR-10 in greyscale as 1,024 pixel tokens (vocabulary 256), 10 classes."""
    from flurka.data.images import _cifar_splits, resize_to_tokens

    # 1024 = the benchmark; a smaller square (e.g. 64 = 8x8) area-downsamples, for smoke runs only
    splits = {
        s: {"input_ids": resize_to_tokens(greyscale(np.asarray(x)), seq_len), "labels": np.asarray(y)}
        for s, (x, y) in _cifar_splits(root).items()
    }
    return _task("lra_image", splits, 256, seq_len, 10, f"CIFAR-10 greyscale, {seq_len} pixels (LRA Image)", {})


PATHFINDER_DIFFICULTY = {
    "easy": "curv_baseline",
    "intermediate": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}


def build_pathfinder(
    root: str | None = None, *, seq_len: int = 1024, difficulty: str = "hard", resolution: int = 32
) -> ArrayClassificationTask:
    """Pathfinder (2 classes: are the two dots connected?) from LRA's released PNGs and metadata."""
    if difficulty not in PATHFINDER_DIFFICULTY:
        raise ValueError(f"difficulty must be one of {list(PATHFINDER_DIFFICULTY)}; got {difficulty!r}")
    rel = f"lra_release/pathfinder{resolution}/{PATHFINDER_DIFFICULTY[difficulty]}"
    base = data_root(root) / rel
    metadata = sorted((base / "metadata").glob("*.npy"), key=lambda p: (len(p.stem), p.stem))
    if not metadata:
        raise missing_dataset(
            f"LRA Pathfinder{resolution} ({difficulty})",
            root,
            [
                f"{rel}/metadata/<n>.npy  (text lines: <img dir> <file name> <unused> <label> ...)",
                f"{rel}/imgs/<n>/*.png",
            ],
            hf_name=None,
            extra="(from LRA's lra_release.gz)\n",
        )
    from PIL import Image

    from flurka.data.images import resize_to_tokens

    entries = []
    for meta in metadata:
        for line in meta.read_text().splitlines():
            fields = line.split(" ")
            if len(fields) < 4:
                raise DataError(f"{meta}: malformed metadata line {line[:80]!r}")
            entries.append((base / fields[0] / fields[1], int(fields[3])))
    key = source_key(metadata, "pathfinder", len(entries))

    def build() -> dict[str, np.ndarray]:
        pixels = np.zeros((len(entries), resolution * resolution), dtype=np.uint8)
        for i, (path, _) in enumerate(entries):
            try:
                img = np.asarray(Image.open(path).convert("L"))
            except OSError as err:
                raise DataError(f"Pathfinder image {path} is missing or corrupt ({err})") from err
            if img.shape != (resolution, resolution):
                raise DataError(f"{path}: {img.shape}, expected {resolution}x{resolution}")
            pixels[i] = img.reshape(-1)
        return {"pixels": pixels, "labels": np.asarray([y for _, y in entries], dtype=np.int64)}

    arrays = cached_arrays(f"pathfinder{resolution}", key, ["pixels", "labels"], build)
    n = len(entries)
    a, b = int(n * 0.8), int(n * 0.9)  # LRA's 80/10/10 split of the metadata order
    side = resolution  # seq_len < resolution**2 (a square) area-downsamples, for smoke runs only
    pixels = (
        arrays["pixels"]
        if seq_len == side * side
        else resize_to_tokens(np.asarray(arrays["pixels"]).reshape(-1, side, side), seq_len)
    )
    splits = {
        s: {"input_ids": pixels[lo:hi], "labels": arrays["labels"][lo:hi]}
        for s, (lo, hi) in {"train": (0, a), "valid": (a, b), "test": (b, n)}.items()
    }
    return _task(f"pathfinder{resolution}", splits, 256, seq_len, 2, f"Pathfinder{resolution} {difficulty}", {})


__all__ = [
    "build_listops",
    "build_lra_image",
    "build_lra_retrieval",
    "build_lra_text",
    "build_pathfinder",
    "evaluate_tokens",
    "generate_listops",
]
