"""Text LM data: tokenizers, corpora from a data root with checksums, deterministic batches, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flurka.data.lm import LMTask
from flurka.data.sources import DataError
from flurka.data.text import build_lm_task
from flurka.data.tokenizers import ByteTokenizer, SentencePieceTokenizer
from tests.helpers import FIXTURE_DATA, use_fixture_corpora


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))


def test_byte_tokenizer_round_trips_any_text():
    tok = ByteTokenizer()
    text = "Thou art — ça va? 雪"
    assert tok.decode(tok.encode(text)) == text and max(tok.encode(text)) < 256


def test_sentencepiece_trains_locally_caches_and_round_trips(tmp_path):
    train = FIXTURE_DATA / "wikitext-2" / "train.txt"
    tok = SentencePieceTokenizer.train(train, tmp_path, vocab_size=300)
    assert tok.vocab_size == 300
    sentence = "The game was released in Japan in 2011 ."
    assert tok.decode(tok.encode(sentence)) == sentence
    again = SentencePieceTokenizer.train(train, tmp_path, vocab_size=300)  # cached: same model file
    assert again.model_file == tok.model_file and len(list(tmp_path.glob("*.model"))) == 1


def test_bundled_corpus_loads_and_splits_contiguously():
    task = build_lm_task("shakespeare", seq_len=32)
    sizes = {k: len(v) for k, v in task.splits.items()}
    assert sum(sizes.values()) == len(
        task.tokenizer.encode((__import__("flurka").data.text.BUNDLED / "shakespeare.txt").read_text())
    )
    assert sizes["train"] > 10 * sizes["valid"] > 0
    assert task.tokenizer.decode(list(task.splits["train"][:14])) == "First Citizen:"


def test_training_batches_are_a_function_of_seed_and_step():
    task = build_lm_task("shakespeare", seq_len=16)
    a, b = task.train_batch(3, 4, seed=1), task.train_batch(3, 4, seed=1)
    assert (a["input_ids"] == b["input_ids"]).all()
    assert not (task.train_batch(4, 4, seed=1)["input_ids"] == a["input_ids"]).all()
    assert (a["labels"][:, :-1] == a["input_ids"][:, 1:]).all()  # labels are the next tokens


def test_eval_windows_tile_the_split_in_order():
    tokens = np.arange(100, dtype=np.int32)
    task = LMTask("toy", {"train": tokens, "valid": tokens}, ByteTokenizer(), seq_len=10, metric="bpc")
    batches = list(task.eval_batches("valid", batch_size=4))
    ids = np.concatenate([b["input_ids"].numpy().ravel() for b in batches])
    assert (ids == np.arange(90)).all()
    assert task.eval_metrics(math.log(4.0))["bpc"] == pytest.approx(2.0)


def test_wikitext2_loads_from_a_data_root(monkeypatch):
    root = use_fixture_corpora(monkeypatch)
    task = build_lm_task("wikitext-2", seq_len=16, tokenizer="spm_bpe", vocab_size=300, root=str(root))
    assert task.metric == "ppl" and set(task.splits) == {"train", "valid", "test"}
    assert task.eval_metrics(1.0)["ppl"] == pytest.approx(math.e)


def test_published_checksum_rejects_a_file_that_is_not_the_release():
    with pytest.raises(DataError, match="checksum mismatch .*wikitext-2/train.txt"):
        build_lm_task("wikitext-2", seq_len=16, root=str(FIXTURE_DATA))


def test_missing_dataset_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"missing data file .*tiny_shakespeare/input.txt.*FLURKA_DATA"):
        build_lm_task("tiny_shakespeare", seq_len=16, root=str(tmp_path))


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown corpus 'wikitext-3'; valid: shakespeare, tiny_shakespeare"):
        build_lm_task("wikitext-3", seq_len=16)
