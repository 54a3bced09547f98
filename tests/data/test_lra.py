"""LRA: the ListOps generator (checked against LRA's own tree evaluation), and the released-file loaders."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest
import torch

from flurka.data import lra
from flurka.data.sources import DataError
from tests.helpers import FIXTURE_DATA


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))


def lra_to_value(t):
    """LRA's `to_value` (lra_benchmarks/data/listops.py), evaluating the nested-pair tree directly."""
    if not isinstance(t, tuple):
        return t
    left, right = lra_to_value(t[0]), lra_to_value(t[1])
    if left in lra.OPERATORS:
        return (left, [right])
    if right == lra.END:
        op, args = left
        return {
            lra.MIN: min,
            lra.MAX: max,
            lra.MED: lambda a: int(np.median(a)),
            lra.SUM_MOD: lambda a: sum(a) % 10,
        }[op](args)
    return (left[0], left[1] + [right])


def lra_to_string(t):
    """LRA's source string, with parentheses (the released .tsv format)."""
    if isinstance(t, tuple):
        return "( " + lra_to_string(t[0]) + " " + lra_to_string(t[1]) + " )"
    return str(t)


def toks(expression: str) -> list[str]:
    return expression.split()


def test_expressions_evaluate_as_by_hand():
    assert lra.evaluate_tokens(toks("[MAX 2 9 [MIN 4 7 ] 0 ]")) == 9
    assert lra.evaluate_tokens(toks("[MED 1 5 2 8 ]")) == 3  # median of 1 2 5 8 is 3.5 -> int 3
    assert lra.evaluate_tokens(toks("[SM 7 8 9 ]")) == 4  # 24 mod 10
    assert lra.evaluate_tokens(toks("[SM [MAX 3 8 ] [MED 1 2 9 ] ]")) == 0  # (8 + 2) mod 10
    with pytest.raises(DataError, match="malformed"):
        lra.evaluate_tokens(toks("[MAX 2 9"))


def test_generated_trees_labels_match_lra_tree_evaluation():
    rng = random.Random(5)
    checked = 0
    while checked < 200:
        tree, length = lra.generate_tree(rng, 1, 10, 10)
        tokens = lra.tree_tokens(tree)
        assert len(tokens) == length  # LRA's length counts operators, digits and "]" (no parentheses)
        assert lra.evaluate_tokens(tokens) == lra_to_value(tree)
        checked += 1


def test_generator_is_seeded_unique_and_within_length_bounds():
    a = lra.generate_listops(30, seed=1, min_length=20, max_length=120)
    b = lra.generate_listops(30, seed=1, min_length=20, max_length=120)
    assert a == b and a != lra.generate_listops(30, seed=2, min_length=20, max_length=120)
    assert len({" ".join(t) for t, _ in a}) == 30
    assert all(20 < len(t) < 120 and 0 <= y <= 9 for t, y in a)
    assert all(set(t) <= set(lra.LISTOPS_VOCAB) for t, _ in a)


def test_listops_task_batches_truncation_and_cache():
    kw = dict(seq_len=64, num_train=12, num_valid=3, num_test=3, min_length=20, max_length=120)
    task = lra.build_listops(**kw)
    assert task.kind == "classification" and task.model_kwargs() == {
        "vocab_size": 16,
        "max_len": 64,
        "head": "classification",
        "num_labels": 10,
    }
    assert {s: task.num_examples(s) for s in task.splits} == {"train": 12, "valid": 3, "test": 3}
    examples = lra.generate_listops(18, seed=0, min_length=20, max_length=120)
    assert task.stats["truncated"]["train"] == sum(len(t) > 64 for t, _ in examples[:12])
    b = next(task.eval_batches("train", 12))
    assert b["input_ids"].shape == (12, 64) and b["padding_mask"].dtype == torch.bool
    assert list(b["labels"]) == [y for _, y in examples[:12]]
    first = [lra.LISTOPS_VOCAB[t] for t in examples[0][0]][:64]
    assert b["input_ids"][0, : len(first)].tolist() == first and int(b["padding_mask"][0].sum()) == len(first)
    again = lra.build_listops(**kw)  # from the cache
    assert (next(again.eval_batches("train", 12))["input_ids"] == b["input_ids"]).all()


def test_released_listops_files_parse_with_parentheses(tmp_path):
    rng = random.Random(0)
    folder = tmp_path / "lra_release/listops-1000"
    folder.mkdir(parents=True)
    expected = {}
    for stem in ("train", "val", "test"):
        rows = []
        for _ in range(4):
            tree, _ = lra.generate_tree(rng, 1, 4, 4)
            rows.append((lra_to_string(tree), lra_to_value(tree)))
        expected[stem] = [y for _, y in rows]
        (folder / f"basic_{stem}.tsv").write_text("Source\tTarget\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    task = lra.build_listops(str(tmp_path), source="release", seq_len=200)
    assert list(next(task.eval_batches("valid", 4))["labels"]) == expected["val"]
    with pytest.raises(DataError, match=r"(?s)lra_release/listops-1000/basic_train.tsv.*source=generate"):
        lra.build_listops(str(tmp_path / "nowhere"), source="release")


def test_missing_lra_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"(?s)aclImdb/train/neg/\*\.txt.*stanfordnlp/imdb"):
        lra.build_lra_text(str(tmp_path))
    with pytest.raises(DataError, match=r"(?s)lra_release/tsv_data/new_aan_pairs.train.tsv.*new_aan_pairs.test.tsv"):
        lra.build_lra_retrieval(str(tmp_path))
    with pytest.raises(DataError, match=r"(?s)lra_release/pathfinder32/curv_contour_length_14/metadata"):
        lra.build_pathfinder(str(tmp_path))
    with pytest.raises(DataError, match=r"cifar-10-batches-py"):
        lra.build_lra_image(str(tmp_path))


def wikitext_lines(n):
    text = (FIXTURE_DATA / "wikitext-2/train.txt").read_text().splitlines()
    return [t.strip() for t in text if len(t.strip()) > 40][:n]


def test_byte_level_text_and_retrieval_loaders(tmp_path):
    """The loaders' file formats, filled with real WikiText sentences (IMDB and AAN are not staged here)."""
    texts = wikitext_lines(12)
    for i, t in enumerate(texts[:8]):
        d = tmp_path / "aclImdb" / ("train" if i < 4 else "test") / ("pos" if i % 2 else "neg")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}_7.txt").write_text(t)
    task = lra.build_lra_text(str(tmp_path), seq_len=64)
    b = next(task.eval_batches("train", 4))
    neg = sorted((tmp_path / "aclImdb/train/neg").glob("*.txt"))[0].read_bytes()
    assert b["input_ids"][0, :10].tolist() == [x + 1 for x in neg[:10]] and list(b["labels"]) == [0, 0, 1, 1]
    assert task.stats["truncated"]["train"] == sum(len(t.encode()) > 64 for t in texts[:4])
    tsv = tmp_path / "lra_release/tsv_data"
    tsv.mkdir(parents=True)
    for stem in ("train", "eval", "test"):
        (tsv / f"new_aan_pairs.{stem}.tsv").write_text(
            f"1\tA\tB\t{texts[8]}\t{texts[9]}\n0.0\tC\tD\t{texts[10]}\t{texts[11]}\n"
        )
    task = lra.build_lra_retrieval(str(tmp_path), seq_len=40)
    b = next(task.eval_batches("test", 2))
    assert list(b["labels"]) == [1, 0] and b["input_ids"].shape == (2, 40)
    row = b["input_ids"][0].tolist()
    assert row[:19] == [x + 1 for x in texts[8].encode()[:19]] and row[19] == 257 and row[39] == 257
    assert b["token_type_ids"][0, :20].sum() == 0 and (b["token_type_ids"][0, 20:] == 1).all()


def test_pathfinder_metadata_and_pngs(tmp_path):
    from PIL import Image

    raw = gzip.decompress((FIXTURE_DATA / "mnist/t10k-images-idx3-ubyte.gz").read_bytes())
    digits = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:10]
    base = tmp_path / "lra_release/pathfinder32/curv_contour_length_14"
    (base / "imgs/0").mkdir(parents=True)
    (base / "metadata").mkdir()
    meta = []
    for i, d in enumerate(digits):
        Image.fromarray(np.pad(d, 2)).save(base / f"imgs/0/sample_{i}.png")
        meta.append(f"imgs/0 sample_{i}.png 0 {i % 2} 32 1.5 1 0")
    (base / "metadata/0.npy").write_text("\n".join(meta) + "\n")
    task = lra.build_pathfinder(str(tmp_path))
    assert {s: task.num_examples(s) for s in task.splits} == {"train": 8, "valid": 1, "test": 1}
    b = next(task.eval_batches("train", 8))
    assert (b["input_ids"][3].numpy().reshape(32, 32)[2:30, 2:30] == digits[3]).all()
    assert list(b["labels"]) == [0, 1, 0, 1, 0, 1, 0, 1]
