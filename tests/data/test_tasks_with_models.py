"""Each task family drives the project's models through the task contract: model_kwargs() builds the model,
train_batch() feeds its forward, evaluate() returns the paper's metric (tiny untrained models, CPU)."""

from __future__ import annotations

import math

import pytest

from tests.helpers import use_fixture_corpora


@pytest.fixture(autouse=True)
def _fixture_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    use_fixture_corpora(monkeypatch)


SMALL = dict(n_layers=1, n_heads=2, d_model=32)


def test_glue_task_with_bert():
    from flurka.data.glue import build_glue_task
    from flurka.models.bert import BERT

    task = build_glue_task("mrpc", max_len=32, vocab_size=300)
    model = BERT(**task.model_kwargs(), **SMALL)
    out = model(**task.train_batch(0, 4, seed=0))
    out["loss"].backward()
    result = task.evaluate(model, "valid", batch_size=5)
    assert (
        set(result) == {"loss", "f1", "accuracy", "majority_f1", "majority_accuracy"} and 0 <= result["accuracy"] <= 1
    )
    assert result["loss"] == pytest.approx(math.log(2), abs=0.3)  # an untrained 2-way classifier


def test_stsb_regression_and_mlm_with_bert():
    from flurka.data.glue import build_glue_task, build_mlm_task
    from flurka.models.bert import BERT

    task = build_glue_task("stsb", max_len=32, vocab_size=300)
    model = BERT(**task.model_kwargs(), **SMALL)
    assert set(task.evaluate(model, "valid", batch_size=4)) == {"loss", "pearson", "spearman"}
    mlm = build_mlm_task(max_len=32, vocab_size=300)
    model = BERT(**mlm.model_kwargs(), **SMALL)
    model(**mlm.train_batch(0, 2, seed=0))["loss"].backward()
    result = mlm.evaluate(model, "valid", batch_size=2, max_batches=2)
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]))


def test_image_tasks_with_vit_and_gpt():
    from flurka.data.images import build_mnist_ar, build_mnist_image
    from flurka.models.gpt import GPT
    from flurka.models.vit import ViT

    task = build_mnist_image()
    vit = ViT(**task.model_kwargs(), patch_size=7, **SMALL)
    vit(**task.train_batch(0, 4, seed=0))["loss"].backward()
    assert 0 <= task.evaluate(vit, "valid", batch_size=6)["accuracy"] <= 1
    ar = build_mnist_ar(seq_len=64)
    gpt = GPT(**ar.model_kwargs(), **SMALL)
    loss = gpt(**ar.train_batch(0, 2, seed=0))["loss"]
    assert ar.eval_metrics(loss.item())["bpd"] == pytest.approx(loss.item() / math.log(2))


def test_translation_task_with_seq2seq_beam_search():
    from flurka.data.translation import build_translation_task
    from flurka.models.seq2seq import Seq2Seq

    task = build_translation_task("multi30k", src="en", tgt="de", vocab_size=200, max_len=96, beam_size=2)
    task.max_new_tokens = 8
    model = Seq2Seq(**task.model_kwargs(), **SMALL)
    model(**task.train_batch(0, 2, seed=0))["loss"].backward()
    result = task.evaluate(model, "test", batch_size=4, max_batches=1, bleu_examples=3)
    assert result["bleu_examples"] == 3 and 0 <= result["bleu"] <= 100 and math.isfinite(result["loss"])


def test_listops_with_bert_classifier():
    from flurka.data.lra import build_listops
    from flurka.models.bert import BERT

    task = build_listops(seq_len=32, num_train=6, num_valid=2, num_test=2, min_length=10, max_length=60)
    model = BERT(**task.model_kwargs(), **SMALL)
    model(**task.train_batch(0, 3, seed=0))["loss"].backward()
    assert set(task.evaluate(model, "valid", batch_size=2)) == {"loss", "accuracy", "majority_accuracy"}
