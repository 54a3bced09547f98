"""A smoke training run per model family, through Hydra and the real loop, lowers its loss on fixture data.

Each family trains on its own task's committed fixture (a few KB of the real dataset): GPT on Shakespeare
(bundled), BERT on masked-LM over WikiText-2, ViT on MNIST, seq2seq on Multi30k en-de. The first and the last
logged train losses are compared; the run must also evaluate with the task's metric."""

from __future__ import annotations

import math

import pytest

from flurka.train.loop import train
from tests.helpers import FIXTURE_DATA, compose, logged_losses, losses, use_fixture_corpora

COMMON = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.log_every=1", "trainer.eval_every=0"]

FAMILIES = {
    "gpt": (["model=gpt", "task=shakespeare", "trainer.lr=3e-3"], "eval_loss"),
    "bert": (
        ["model=bert", "task=glue_mlm_wikitext2", "task.vocab_size=300", "trainer.lr=3e-3", "trainer.max_steps=60"],
        "eval_ppl",
    ),
    "vit": (
        ["model=vit", "task=mnist_image", "model.patch_size=7", "trainer.lr=2e-3", "trainer.max_steps=150"],
        "eval_accuracy",
    ),
    "seq2seq": (
        ["model=seq2seq", "task=multi30k_en_de", "task.vocab_size=200", "task.bleu_examples=0", "trainer.lr=3e-3"],
        "eval_loss",
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_smoke_training_lowers_the_loss(family, tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    use_fixture_corpora(monkeypatch)
    overrides, metric = FAMILIES[family]
    cfg = compose([*COMMON, *overrides, f"data.root={FIXTURE_DATA}", f"run_dir={tmp_path / 'run'}"])
    summary = train(cfg)
    trace = [loss for _, loss in logged_losses(tmp_path / "run")]
    assert len(trace) == cfg.trainer.max_steps
    first, last = sum(trace[:5]) / 5, sum(trace[-5:]) / 5  # averaged: single steps are noisy at batch 8
    assert last < first - 0.3, trace  # nats; BERT's MLM on a few KB mostly learns token frequencies (5.7 -> 5.1)
    assert math.isfinite(summary[metric]), summary


class SimulatedCrashError(Exception):
    pass


@pytest.mark.parametrize("family", ["bert", "vit", "seq2seq"])
def test_resume_continues_exactly_for_every_family(family, tmp_path, monkeypatch):
    """A crash at step 6 (checkpoint at 4), then init.mode=resume: the same losses as an uninterrupted run, with
    dropout on, so data order, RNG streams and optimizer state must all come back (in-process crash here; the
    subprocess kill of tests/train/test_training.py covers GPT)."""
    import flurka.train.loop as loop

    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    use_fixture_corpora(monkeypatch)
    overrides, _ = FAMILIES[family]
    common = [*COMMON, *overrides, f"data.root={FIXTURE_DATA}", "trainer.max_steps=10", "trainer.checkpoint_every=4",
              "model.dropout=0.1"]  # fmt: skip
    train(compose([*common, f"run_dir={tmp_path / 'whole'}"]))

    real = loop._fault_injection

    def crash_at_6(step: int) -> None:
        if step == 6:
            raise SimulatedCrashError
        real(step)

    monkeypatch.setattr(loop, "_fault_injection", crash_at_6)
    with pytest.raises(SimulatedCrashError):
        train(compose([*common, f"run_dir={tmp_path / 'crashed'}"]))
    assert 5 in dict(logged_losses(tmp_path / "crashed"))  # the crash came after the step-4 checkpoint
    monkeypatch.setattr(loop, "_fault_injection", real)
    train(compose([*common, f"run_dir={tmp_path / 'crashed'}", "init.mode=resume"]))

    steps = [step for step, _ in logged_losses(tmp_path / "crashed")]
    assert steps == list(range(1, 11))  # one row per step: the crashed attempt's rows after step 4 were replaced
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "crashed")
    assert sorted(whole) == sorted(resumed) == list(range(1, 11))
    assert whole == resumed
