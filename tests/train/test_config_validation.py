"""Issue 13, items 8-9: a bad value stops the run before any work, with the key and what would be valid."""

from __future__ import annotations

import pytest

from flurka.train.config import TrainerConfig, checked_value, from_mapping
from flurka.train.loop import train
from tests.helpers import compose

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false"]

BAD = [
    # item 8: types (raw TypeErrors before, or silently wrong: compile=no read as true, fp16 trained in fp32)
    ("trainer.lr=abc", "trainer.lr must be a number; got 'abc'"),
    ("trainer.batch_size=abc", "trainer.batch_size must be an integer; got 'abc'"),
    ("trainer.max_steps=2.5", "trainer.max_steps must be an integer; got 2.5"),
    ("trainer.compile=no", "trainer.compile must be true or false; got 'no'"),
    ("trainer.precision=fp16", "trainer.precision must be one of auto, bf16, fp32; got 'fp16'"),
    ("model.dropout=lots", "model.dropout must be a number; got 'lots'"),
    ("task.tokenizer=3", "task.tokenizer must be a string; got 3"),
    # item 9: sizes (ZeroDivisionError / numpy errors, NaN with exit 0, or a model without layers)
    ("task.seq_len=0", "task.seq_len must be > 0; got 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be > 0; got 0"),
    ("trainer.batch_size=-4", "trainer.batch_size must be > 0; got -4"),
    ("trainer.max_steps=0", "trainer.max_steps must be > 0; got 0"),
    ("model.n_layers=0", "model.n_layers must be > 0; got 0"),
    ("model.dropout=1.0", "model.dropout must be in \\[0.0, 1.0\\); got 1.0"),
    ("trainer.warmup_steps=-1", "trainer.warmup_steps must be >= 0; got -1"),
    ("trainer.lr=-1e-3", "trainer.lr must be >= 0; got -0.001"),
    ("+model.n_layerz=2", "unknown model key 'n_layerz' for flurka.models.gpt.GPT; valid: .*n_layers"),
    ("data.verify=sometimes", "data.verify must be one of stamp, full; got 'sometimes'"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[o for o, _ in BAD])
def test_a_bad_value_is_refused_before_any_work(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train(compose([*SMOKE, f"run_dir={tmp_path / 'run'}", override]))
    assert not (tmp_path / "run").exists()  # nothing built, nothing written


def test_good_values_are_converted_to_their_declared_types():
    t = from_mapping(TrainerConfig, {"lr": 1, "max_steps": 3.0, "betas": [0.8, 0.9], "time_budget_s": None}, "t")
    assert (t.lr, type(t.lr), t.max_steps, type(t.max_steps), t.betas) == (1.0, float, 3, int, (0.8, 0.9))
    assert checked_value("x.d_ff", None, int | None) is None
    with pytest.raises(ValueError, match="x.n must be an integer; got True"):
        checked_value("x.n", True, int)  # a bool is not a count
    with pytest.raises(ValueError, match="trainer.betas must be in \\[0.0, 1.0\\)"):
        from_mapping(TrainerConfig, {"betas": [0.9, 1.0]}, "trainer")
