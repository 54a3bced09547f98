"""GLUE and MLM pre-training on the GLUE fixtures (a few real rows per task) and the WikiText-2 fixture."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from flurka.data import files, glue
from flurka.data.sources import DataError
from flurka.data.tokenizers import OffsetSpecialTokenizer, SentencePieceTokenizer
from tests.helpers import FIXTURE_DATA, use_fixture_corpora


@pytest.fixture(autouse=True)
def _fixture_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    use_fixture_corpora(monkeypatch)


def build(task, **kw):
    return glue.build_glue_task(task, vocab_size=300, **{"max_len": 64, **kw})


class ConstantModel(torch.nn.Module):
    """Always predicts class `k` (classification) or returns 2*label + 1 (regression: a perfect ranking)."""

    def __init__(self, k=1, regression=False):
        super().__init__()
        self.k, self.regression = k, regression

    def forward(self, input_ids, labels, **_):
        if self.regression:
            out = (2 * labels + 1)[:, None].float()
            return {"logits": out, "loss": torch.nn.functional.mse_loss(out[:, 0], labels)}
        logits = torch.zeros(len(input_ids), 3)
        logits[:, self.k] = 1.0
        return {"logits": logits, "loss": torch.nn.functional.cross_entropy(logits, labels)}


def tsv_column(path, col, skip_header=True):
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [line.split("\t")[col] for line in lines[1 if skip_header else 0 :]]


def test_rows_and_labels_follow_the_glue_files():
    sentences, labels = glue.read_glue_rows("cola", "train")  # CoLA train: no header row
    assert len(sentences) == 24
    assert (
        sentences[0] == ("Our friends won't buy this analysis, let alone the next one we propose.",)
        and labels[0] == "1"
    )
    s, _ = glue.read_glue_rows("sst2", "valid")
    assert s[0] == ("it 's a charming and often affecting journey . ",)
    s, labels = glue.read_glue_rows("mrpc", "train")  # starts with a byte-order mark: the header still parses
    assert len(s) == 24 and len(s[0]) == 2 and set(labels) <= {"0", "1"}
    _, labels = glue.read_glue_rows("rte", "valid")
    assert labels[0] == "not_entailment"
    _, labels = glue.read_glue_rows("stsb", "valid")  # read from inside STS-B.zip
    assert labels[:3] == ["5.000", "4.750", "5.000"]
    _, labels = glue.read_glue_rows("cola", "test")
    assert labels[0] is None


def test_batches_shapes_types_and_special_tokens():
    task = build("rte")
    assert task.model_kwargs() == {"vocab_size": 304, "max_len": 64, "head": "classification", "num_labels": 2}
    b = task.train_batch(0, 4, seed=0)
    assert set(b) == {"input_ids", "token_type_ids", "padding_mask", "labels"}
    assert b["input_ids"].shape == b["token_type_ids"].shape == b["padding_mask"].shape == (4, 64)
    assert b["padding_mask"].dtype == torch.bool and b["labels"].dtype == torch.int64
    tok = task.tokenizer
    for ids, mask, types in zip(b["input_ids"], b["padding_mask"], b["token_type_ids"], strict=True):
        real = ids[mask]
        assert real[0] == tok.cls_id and real[-1] == tok.sep_id and (real == tok.sep_id).sum() == 2
        assert (ids[~mask] == tok.pad_id).all() and mask[: int(mask.sum())].all()  # padding only at the end
        assert types[mask].tolist() == sorted(types[mask].tolist()) and types[mask][-1] == 1
    same = task.train_batch(0, 4, seed=0)
    assert all((same[k] == b[k]).all() for k in b)
    dev = glue.read_glue_rows("rte", "valid")[1]
    assert list(next(task.eval_batches("valid", 12))["labels"]) == [int(x == "not_entailment") for x in dev]


def test_truncation_is_longest_first_and_counted():
    tok = OffsetSpecialTokenizer(
        SentencePieceTokenizer.train(FIXTURE_DATA / "wikitext-2/train.txt", "/tmp", vocab_size=300)
    )
    ids, types, cut = glue.encode_pair(tok, [10, 11, 12, 13, 14], [20, 21], max_len=7)
    assert cut and ids == [tok.cls_id, 10, 11, tok.sep_id, 20, 21, tok.sep_id] and types == [0, 0, 0, 0, 1, 1, 1]
    ids, _, cut = glue.encode_pair(tok, [10], [20, 21, 22, 23], max_len=6)
    assert cut and ids == [tok.cls_id, 10, tok.sep_id, 20, 21, tok.sep_id]
    assert glue.encode_pair(tok, [10], None, max_len=6)[2] is False
    task = build("rte", max_len=24)
    rows, _ = glue.read_glue_rows("rte", "train")
    too_long = sum(len(task.tokenizer.encode(a)) + len(task.tokenizer.encode(b)) + 3 > 24 for a, b in rows)
    assert too_long > 0 and task.stats["truncated"]["train"] == too_long
    assert int(next(task.eval_batches("train", 24))["padding_mask"].sum(1).max()) == 24


def test_official_metrics_per_task():
    cola = build("cola")
    dev = [int(x) for x in tsv_column(FIXTURE_DATA / "glue/CoLA/dev.tsv", 1, skip_header=False)]
    r = cola.evaluate(ConstantModel(1), "valid", batch_size=5)
    assert r["matthews"] == 0.0 and r["accuracy"] == pytest.approx(np.mean(dev))  # constant: MCC undefined -> 0
    mrpc = build("mrpc")
    gold = np.asarray([int(x) for x in tsv_column(FIXTURE_DATA / "glue/MRPC/dev.tsv", 0)])
    r = mrpc.evaluate(ConstantModel(1), "valid", batch_size=5)
    pos, neg = gold.sum(), (1 - gold).sum()
    assert r["f1"] == pytest.approx(2 * pos / (2 * pos + neg)) and r["accuracy"] == pytest.approx(pos / len(gold))
    stsb = build("stsb")
    assert stsb.model_kwargs()["head"] == "regression" and stsb.model_kwargs()["num_labels"] == 1
    r = stsb.evaluate(ConstantModel(regression=True), "valid", batch_size=5)
    assert r["pearson"] == pytest.approx(1.0) and r["spearman"] == pytest.approx(1.0)
    with pytest.raises(DataError, match="no labels"):
        cola.evaluate(ConstantModel(1), "test", batch_size=5)


def test_majority_baseline_is_the_score_of_always_predicting_the_commonest_training_label():
    for name in ("cola", "mrpc", "rte"):
        task = build(name)
        majority = int(np.bincount(np.asarray(task.splits["train"]["labels"])).argmax())
        scored = task.evaluate(ConstantModel(majority), "valid", batch_size=5)  # the model's path
        for key in [k for k in scored if not k.startswith(("majority_", "loss"))]:
            assert scored[f"majority_{key}"] == pytest.approx(scored[key]), (name, key)
        capped = task.evaluate(ConstantModel(1 - majority), "valid", batch_size=2, max_batches=1)
        assert capped["majority_accuracy"] == pytest.approx(np.mean(task.splits["valid"]["labels"][:2] == majority))
    regression = build("stsb").evaluate(ConstantModel(regression=True), "valid", batch_size=5)
    assert not any(k.startswith("majority_") for k in regression)  # no training label to be the commonest


def test_published_checksums_reject_the_fixtures(monkeypatch):
    monkeypatch.setitem(
        files.PUBLISHED,
        "glue/CoLA/train.tsv",
        ("sha256", "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624"),
    )
    with pytest.raises(DataError, match="checksum mismatch .*glue/CoLA/train.tsv"):
        glue.read_glue_rows("cola", "train")
    monkeypatch.setitem(
        glue.STSB_MEMBERS, "STS-B/dev.tsv", "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59"
    )
    with pytest.raises(DataError, match="checksum mismatch for .*STS-B.zip!STS-B/dev.tsv"):
        glue.read_glue_rows("stsb", "valid")


def test_corrupt_and_truncated_files_stop_with_clear_errors(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE_DATA / "glue", tmp_path / "glue")
    (tmp_path / "glue/STS-B/STS-B.zip").write_bytes((FIXTURE_DATA / "glue/STS-B/STS-B.zip").read_bytes()[:300])
    with pytest.raises(DataError, match="STS-B.zip is corrupt, truncated or lacks STS-B/train.tsv"):
        glue.read_glue_rows("stsb", "train", tmp_path)
    rte = tmp_path / "glue/RTE/train.tsv"
    rte.write_text(rte.read_text()[:-400])  # cut inside the last rows
    monkeypatch.delitem(files.PUBLISHED, "glue/RTE/train.tsv")  # no digest to catch it: the parser must
    with pytest.raises(DataError, match=r"RTE/train.tsv line \d+: \d field"):
        glue.read_glue_rows("rte", "train", tmp_path)


def test_missing_tasks_say_which_files_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"(?s)glue/QNLI/train.tsv.*glue/QNLI/dev.tsv.*nyu-mll/glue \(qnli\)"):
        glue.build_glue_task("qnli", vocab_size=300)
    with pytest.raises(DataError, match=r"(?s)dev_matched.tsv.*dev_mismatched.tsv"):
        glue.build_glue_task("mnli", vocab_size=300)
    with pytest.raises(DataError, match="glue/STS-B/STS-B.zip"):
        glue.read_glue_rows("stsb", "train", tmp_path)


def test_special_tokenizer_round_trips_and_never_emits_specials():
    base = SentencePieceTokenizer.train(FIXTURE_DATA / "wikitext-2/train.txt", "/tmp", vocab_size=300)
    tok = OffsetSpecialTokenizer(base)
    text = "The game was released in Japan in 2011 ."
    ids = tok.encode(text)
    assert min(ids) >= 4 and tok.decode(ids) == text and tok.vocab_size == 304
    assert tok.decode([tok.cls_id, *ids, tok.sep_id, tok.pad_id]) == text


def test_mlm_masking_is_bert_80_10_10_and_step_seeded():
    task = glue.build_mlm_task(max_len=32, vocab_size=300)
    assert task.kind == "mlm" and task.model_kwargs() == {"vocab_size": 304, "max_len": 32, "head": "mlm"}
    b = task.train_batch(0, 256, seed=0)
    tok = task.tokenizer
    ids, labels = b["input_ids"], b["labels"]
    assert (ids[:, 0] == tok.cls_id).all() and (ids[:, -1] == tok.sep_id).all()
    target = labels != -100
    assert (target.sum(1) == round(0.15 * 30)).all() and not target[:, [0, -1]].any()  # 15% of 30 tokens, rounded
    masked = (ids == tok.mask_id) & target
    kept = (ids == labels) & target
    assert abs(masked.sum() / target.sum() - 0.8) < 0.04 and abs(kept.sum() / target.sum() - 0.1) < 0.03
    assert (ids[target & ~masked] >= tok.first_normal_id).all()  # random replacements are ordinary tokens
    # unmasked positions hold the corpus window; targets are the original tokens
    window = torch.where(target[0, 1:-1], labels[0, 1:-1], ids[0, 1:-1]).numpy()
    stream = np.asarray(task.splits["train"])
    assert any((stream[s : s + 30] == window).all() for s in range(len(stream) - 29))
    again = task.train_batch(0, 256, seed=0)
    assert (again["input_ids"] == ids).all() and (again["labels"] == labels).all()
    assert not (task.train_batch(1, 256, seed=0)["input_ids"] == ids).all()


def test_mnli_reports_matched_and_mismatched_accuracy(tmp_path):
    """MNLI is not staged: its GLUE file format (header names, five files) is filled with real RTE pairs."""
    import itertools

    shutil.copytree(FIXTURE_DATA / "wikitext-2", tmp_path / "wikitext-2")  # the tokenizer's corpus
    rows = [line.split("\t") for line in (FIXTURE_DATA / "glue/RTE/train.tsv").read_text().splitlines()[1:]]
    header = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
        "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    )
    names = itertools.cycle(["entailment", "neutral", "contradiction"])
    folder = tmp_path / "glue/MNLI"
    folder.mkdir(parents=True)
    gold = {}
    for stem, part in (("train", rows[:12]), ("dev_matched", rows[12:18]), ("dev_mismatched", rows[18:24])):
        labels = [next(names) for _ in part]
        gold[stem] = labels
        body = "".join(
            f"{i}\t0\t0\tg\t-\t-\t-\t-\t{r[1]}\t{r[2]}\t{y}\t{y}\n" for i, (r, y) in enumerate(zip(part, labels))
        )
        (folder / f"{stem}.tsv").write_text(header + "\n" + body)
    for stem in ("test_matched", "test_mismatched"):
        test_header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        test_header += "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
        (folder / f"{stem}.tsv").write_text(test_header + f"\n0\t0\t0\tg\t-\t-\t-\t-\t{rows[0][1]}\t{rows[0][2]}\n")
    task = glue.build_glue_task("mnli", root=str(tmp_path), vocab_size=300, max_len=64)
    assert task.model_kwargs()["num_labels"] == 3 and set(task.splits) == {
        "train",
        "valid",
        "valid_mismatched",
        "test",
        "test_mismatched",
    }
    result = task.evaluate(ConstantModel(2), "valid", batch_size=4)  # always "contradiction" (id 2, HF order)
    assert result["accuracy"] == pytest.approx(np.mean([y == "contradiction" for y in gold["dev_matched"]]))
    assert result["accuracy_mm"] == pytest.approx(np.mean([y == "contradiction" for y in gold["dev_mismatched"]]))


def test_pretraining_and_fine_tuning_share_one_tokenizer():
    mlm = glue.build_mlm_task(max_len=32, vocab_size=300)
    task = build("sst2")
    assert mlm.tokenizer.id == task.tokenizer.id and mlm.vocab_size == task.model_kwargs()["vocab_size"]
