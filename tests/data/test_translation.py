"""Translation on the Multi30k and newstest2021 fixtures (their first lines): vocabulary, batches, BLEU, errors."""

from __future__ import annotations

import gzip
import math
import shutil
import sys

import pytest
import sacrebleu
import torch

from flurka.data import files, translation
from flurka.data.sources import DataError
from tests.helpers import FIXTURE_DATA, use_fixture_checksums

RAW = FIXTURE_DATA / "multi30k/task1/raw"


@pytest.fixture(autouse=True)
def _fixture_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    use_fixture_checksums(monkeypatch)


def lines(name):
    return gzip.decompress((RAW / name).read_bytes()).decode().splitlines()


def build(**kw):
    return translation.build_translation_task("multi30k", src="en", tgt="de", vocab_size=200, **{"max_len": 96, **kw})


class Stub(torch.nn.Module):
    """Uniform logits (loss = ln V) and a `generate` that returns given token rows."""

    def __init__(self, vocab, rows):
        super().__init__()
        self.vocab, self.rows, self.calls = vocab, rows, []

    def forward(self, src_ids, tgt_ids, src_mask=None, labels=None):
        logits = torch.zeros(*tgt_ids.shape, self.vocab)
        return {
            "logits": logits,
            "loss": torch.nn.functional.cross_entropy(logits.view(-1, self.vocab), labels.view(-1)),
        }

    def generate(self, src_ids, src_mask=None, *, beam_size=4, max_new_tokens=None):
        self.calls.append((beam_size, max_new_tokens))
        out, self.rows = self.rows[: len(src_ids)], self.rows[len(src_ids) :]
        width = max(len(r) for r in out)
        return torch.tensor([r + [0] * (width - len(r)) for r in out])


def test_shared_vocabulary_round_trips_both_languages():
    task = build()
    tok = task.tokenizer
    for sentence in (lines("train.en.gz")[3], lines("train.de.gz")[3]):
        ids = tok.encode(sentence)
        assert tok.decode(ids) == sentence and min(ids) >= 3  # PAD/BOS/EOS are never pieces
    assert task.model_kwargs() == {
        "src_vocab_size": 203,
        "tgt_vocab_size": 203,
        "max_len": 96,
        "pad_id": 0,
        "bos_id": 1,
        "eos_id": 2,
    }
    assert task.kind == "seq2seq" and not task.causal


def test_batches_hold_bos_eos_and_ignored_padding():
    task = build()
    assert {s: task.num_examples(s) for s in task.splits} == {"train": 60, "valid": 10, "test": 10}
    b = next(task.eval_batches("valid", 4))
    assert set(b) == {"src_ids", "src_mask", "tgt_ids", "labels"}
    assert all(v.shape == (4, 96) for v in b.values()) and b["src_mask"].dtype == torch.bool
    tok = task.tokenizer
    src0 = tok.encode(lines("val.en.gz")[0])
    tgt0 = tok.encode(lines("val.de.gz")[0])
    assert b["src_ids"][0, : len(src0) + 1].tolist() == [*src0, 2] and int(b["src_mask"][0].sum()) == len(src0) + 1
    assert b["tgt_ids"][0, : len(tgt0) + 1].tolist() == [1, *tgt0]
    assert b["labels"][0, : len(tgt0) + 1].tolist() == [*tgt0, 2] and (b["labels"][0, len(tgt0) + 1 :] == -100).all()
    a, again = task.train_batch(5, 3, seed=2), task.train_batch(5, 3, seed=2)
    assert all((a[k] == again[k]).all() for k in a)
    longest = build(pad_to="longest").batch("valid", [0])
    assert longest["src_ids"].shape == (1, max(len(src0) + 1, len(tgt0) + 1))


def test_bleu_of_generated_output_against_raw_references():
    task = build()
    tok = task.tokenizer
    refs = lines("test_2016_flickr.de.gz")
    exact = [[*tok.encode(r), tok.eos_id] for r in refs]
    stub = Stub(tok.vocab_size, list(exact))
    result = task.evaluate(stub, "test", batch_size=4, bleu_examples=10)
    assert result["bleu"] == pytest.approx(100.0) and result["bleu_examples"] == 10
    assert result["loss"] == pytest.approx(math.log(tok.vocab_size), rel=1e-5)
    assert stub.calls[0] == (4, 95)  # beam_size and max_new_tokens (max_len - 1) reach generate
    shifted = exact[1:] + exact[:1]  # every hypothesis is the next sentence's reference
    result = task.evaluate(Stub(tok.vocab_size, shifted), "test", batch_size=4, bleu_examples=10)
    expected = sacrebleu.corpus_bleu(refs[1:] + refs[:1], [refs]).score
    assert result["bleu"] == pytest.approx(expected) and result["bleu"] < 30


def test_over_long_pairs_are_skipped_in_training_and_counted():
    task = build(max_len=30)
    tok = task.tokenizer
    en, de = lines("train.en.gz"), lines("train.de.gz")
    too_long = sum(len(tok.encode(a)) + 1 > 30 or len(tok.encode(b)) + 1 > 30 for a, b in zip(en, de, strict=True))
    assert too_long > 0 and task.stats["skipped_too_long"] == too_long
    assert task.num_examples("train") == 60 - too_long
    kept = task.splits["train"]["rows"]
    first = task.batch("train", [0])
    assert first["tgt_ids"][0, 1 : 1 + len(tok.encode(de[kept[0]]))].tolist() == tok.encode(de[kept[0]])


def test_newstest2021_is_an_extra_test_split():
    task = build(extra_test=True)
    assert task.num_examples("newstest2021") == 6
    refs = (FIXTURE_DATA / "wmt/newstest2021/newstest2021.en-de.ref.A.de").read_text().splitlines()
    assert task.references["newstest2021"] == refs
    with pytest.raises(ValueError, match="newstest2021 is staged for en-de only"):
        translation.build_translation_task("multi30k", src="en", tgt="fr", vocab_size=200, extra_test=True)


def test_published_checksum_rejects_the_fixture(monkeypatch):
    monkeypatch.setitem(
        files.PUBLISHED,
        "multi30k/task1/raw/train.en.gz",
        ("sha256", "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    )
    with pytest.raises(DataError, match="checksum mismatch .*train.en.gz"):
        build()


def test_misaligned_and_corrupt_files(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE_DATA / "multi30k", tmp_path / "multi30k")
    val = tmp_path / "multi30k/task1/raw/val.de.gz"
    val.write_bytes(gzip.compress("\n".join(lines("val.de.gz")[:9]).encode() + b"\n"))
    monkeypatch.delitem(files.PUBLISHED, "multi30k/task1/raw/val.de.gz")
    with pytest.raises(DataError, match="valid: 10 source lines but 9 target lines"):
        build(root=str(tmp_path))
    val.write_bytes((RAW / "val.de.gz").read_bytes()[:200])
    with pytest.raises(DataError, match="val.de.gz is corrupt or truncated"):
        build(root=str(tmp_path))


def test_missing_wmt14_says_which_files_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"(?s)wmt14/en-de/train.en.*wmt14/en-de/newstest2014.de.*wmt/wmt14"):
        translation.build_translation_task("wmt14", src="en", tgt="de", root=str(tmp_path))


def test_missing_sacrebleu_stops_the_build_not_the_first_evaluation(monkeypatch):
    # None in sys.modules makes `import sacrebleu` raise ImportError, as on a machine without it
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(ImportError, match="pip install sacrebleu"):
        build()
    build(bleu_examples=0)  # a task that never scores BLEU does not need it
