"""The block a run prints at start, and its warnings: what ran, where, and settings that will surprise."""

from __future__ import annotations

import torch

from flurka.train.announce import start_warnings
from flurka.train.config import InitConfig, TrainerConfig
from flurka.train.loop import train
from tests.helpers import compose

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.eval_batches=1"]


def test_start_block_names_the_resolved_run_and_a_resume_says_where_it_continues(tmp_path, capsys):
    cfg = [*SMOKE, f"run_dir={tmp_path}", "attention=performer", "attention.n_features=16", "model.n_layers=3"]
    summary = train(compose([*cfg, "trainer.max_steps=2"]))
    out = capsys.readouterr().out
    model = next(line for line in out.splitlines() if line.startswith("[flurka] model"))
    assert model.endswith(f"GPT: 3 layers, 2 heads, width 64, {summary['params']:,} parameters")
    assert "[flurka] attention  performer (n_features=16," in out
    assert f"[flurka] task       shakespeare, sequence length {summary['seq_len']} (scale=smoke)" in out
    assert "[flurka] device     cpu (fp32)" in out and f"[flurka] run folder {tmp_path}" in out
    assert "resuming" not in out
    train(compose([*cfg, "trainer.max_steps=4", "init.mode=resume"]))
    assert "[flurka] resuming from step 2" in capsys.readouterr().out


def _warnings(scale: str | None = "smoke", device: str = "cpu", **trainer) -> list[str]:
    t = TrainerConfig(**{"max_steps": 20, "eval_every": 10, **trainer})
    return start_warnings(t, InitConfig(), scale, torch.device(device))


def test_a_smoke_run_on_the_cpu_has_nothing_to_warn_about():
    assert _warnings() == []
    assert _warnings("mini", "cuda", max_steps=2000, eval_every=250) == []


def test_a_gpu_scale_on_the_cpu_is_warned_about():
    for scale in ("mini", "full"):
        (warning,) = _warnings(scale, max_steps=2000, eval_every=250)
        assert f"scale={scale}" in warning and "CPU" in warning


def test_a_freeze_that_outlasts_the_run_is_warned_about():
    t = TrainerConfig(max_steps=100, eval_every=0)
    (warning,) = start_warnings(t, InitConfig(freeze_steps=100), "smoke", torch.device("cpu"))
    assert "init.freeze_steps=100 >= trainer.max_steps=100" in warning
    assert start_warnings(t, InitConfig(freeze_steps=99), "smoke", torch.device("cpu")) == []


def test_frequent_evaluation_over_a_long_run_is_warned_about(capsys, tmp_path):
    (warning,) = _warnings(max_steps=1000, eval_every=100)  # the README's lightning example, default eval
    assert "trainer.eval_every=100 evaluates 10 times" in warning
    assert _warnings(max_steps=1000, eval_every=250) == []  # the mini scale's spacing
    assert _warnings(max_steps=100000, eval_every=10, time_budget_s=2.0) == []  # max_steps only a ceiling
    train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=7", "trainer.eval_every=1"]))
    assert "[flurka] warning: trainer.eval_every=1 evaluates 7 times" in capsys.readouterr().out
