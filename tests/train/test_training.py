"""The training loop: learning, exact resume after a crash, DDP equivalence, up-training, errors, W&B."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from flurka.train.checkpoint import latest_checkpoint, load_checkpoint
from flurka.train.loop import train
from tests.helpers import compose, losses, run_script

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false"]


def test_smoke_run_learns_and_writes_its_run_folder(tmp_path):
    cfg = compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=30", "trainer.log_every=1", "trainer.lr=3e-3"])
    summary = train(cfg)
    trace = losses(tmp_path)
    assert trace[30] < trace[1] - 0.8, trace  # bytes start near ln 256 = 5.5 and must fall well below
    assert math.isfinite(summary["eval_loss"]) and summary["eval_bpc"] == pytest.approx(
        summary["eval_loss"] / math.log(2)
    )
    for f in ("config.yaml", "metrics.jsonl", "summary.json"):
        assert (tmp_path / f).exists(), f
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["attention"] == "full" and on_disk["commit"] and on_disk["torch"] == torch.__version__
    ckpt = load_checkpoint(latest_checkpoint(tmp_path))
    assert ckpt["step"] == 30 and (tmp_path / "checkpoints" / "best.pt").exists()


def test_resume_after_a_crash_continues_exactly(tmp_path):
    common = [
        *SMOKE,
        "trainer.max_steps=12",
        "trainer.log_every=1",
        "trainer.checkpoint_every=4",
        "trainer.eval_every=0",
    ]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    run_script(["scripts/train.py", *common, f"run_dir={whole}", "attention=performer", "attention.redraw_interval=3"])
    proc = run_script(
        ["scripts/train.py", *common, f"run_dir={crashed}", "attention=performer", "attention.redraw_interval=3"],
        env={"FLURKA_FAULT_AT_STEP": "6"},
        check=False,
    )
    assert proc.returncode == 17 and not (crashed / "summary.json").exists()  # it really died mid-run
    assert load_checkpoint(latest_checkpoint(crashed))["step"] == 4
    run_script(
        [
            "scripts/train.py",
            *common,
            f"run_dir={crashed}",
            "attention=performer",
            "attention.redraw_interval=3",
            "init.mode=resume",
        ]
    )
    a, b = losses(whole), losses(crashed)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert a == b  # bit-for-bit: data, dropout RNG, optimizer state and feature redraws all resume


def test_scratch_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(tmp_path):
    cfg = compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=2"])
    train(cfg)
    with pytest.raises(FileExistsError, match="init.mode=resume"):
        train(cfg)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(compose([*SMOKE, f"run_dir={tmp_path / 'empty'}", "init.mode=resume"]))


def test_unknown_trainer_key_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown trainer keys \\['max_stepz'\\]"):
        train(compose([*SMOKE, f"run_dir={tmp_path}", "+trainer.max_stepz=3"]))


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train(
            compose([*SMOKE, f"run_dir={tmp_path}", "trainer.lr=1e30", "trainer.warmup_steps=0", "trainer.grad_clip=0"])
        )


def test_batch_arithmetic_is_checked(tmp_path):
    with pytest.raises(ValueError, match="not a multiple of trainer.micro_batch_size=3"):
        train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.micro_batch_size=3"]))


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    one = train(compose([*SMOKE, f"run_dir={tmp_path / 'a'}", "trainer.max_steps=4", "trainer.log_every=1"]))
    acc = train(
        compose(
            [
                *SMOKE,
                f"run_dir={tmp_path / 'b'}",
                "trainer.max_steps=4",
                "trainer.log_every=1",
                "trainer.micro_batch_size=2",
            ]
        )
    )
    la, lb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert all(abs(la[s] - lb[s]) < 1e-5 for s in la), (la, lb)
    assert one["final_train_loss"] == pytest.approx(acc["final_train_loss"], abs=1e-5)


@pytest.mark.slow
def test_torchrun_ddp_on_cpu_matches_single_process(tmp_path):
    """2 processes (gloo) on the same global batch see the same data and get the same losses."""
    common = [*SMOKE, "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=3", "trainer.device=cpu"]
    run_script(["scripts/train.py", *common, f"run_dir={tmp_path / 'single'}"])
    run_script(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "scripts/train.py",
            *common,
            f"run_dir={tmp_path / 'ddp'}",
        ],
        env={"OMP_NUM_THREADS": "1"},
    )
    single, ddp = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(single) == sorted(ddp) == list(range(1, 7))
    assert all(abs(single[s] - ddp[s]) < 2e-5 for s in single), (single, ddp)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    s1 = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert summary["eval_loss"] == pytest.approx(s1["eval_loss"], abs=2e-5)


@pytest.mark.slow
def test_fsdp_on_cpu_matches_single_process_and_resumes_after_a_crash(tmp_path):
    """FSDP2 over 2 processes (gloo): same losses as one process; killed mid-run, it resumes exactly."""
    common = [*SMOKE, "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=3", "trainer.device=cpu",
              "trainer.checkpoint_every=2"]  # fmt: skip
    run_script(["scripts/train.py", *common, f"run_dir={tmp_path / 'single'}"])
    fsdp = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "scripts/train.py", *common,
            f"run_dir={tmp_path / 'fsdp'}", "trainer.strategy=fsdp"]  # fmt: skip
    env = {"OMP_NUM_THREADS": "1"}
    crashed = run_script(fsdp, env={**env, "FLURKA_FAULT_AT_STEP": "3"}, check=False)
    assert crashed.returncode != 0 and load_checkpoint(latest_checkpoint(tmp_path / "fsdp"))["step"] == 2
    run_script([*fsdp, "init.mode=resume"], env=env)
    single, sharded = losses(tmp_path / "single"), losses(tmp_path / "fsdp")
    assert sorted(sharded) == list(range(1, 7))
    assert all(abs(single[s] - sharded[s]) < 2e-5 for s in single), (single, sharded)


def test_uptraining_loads_full_attention_and_freezes_the_old_weights(tmp_path, capsys):
    base_dir = tmp_path / "base"
    train(compose([*SMOKE, f"run_dir={base_dir}", "trainer.max_steps=6"]))
    base = load_checkpoint(latest_checkpoint(base_dir))["model"]
    up_dir = tmp_path / "up"
    summary = train(
        compose(
            [
                *SMOKE,
                f"run_dir={up_dir}",
                "attention=flurka_rnn",
                "attention.chunk_size=16",
                "init.mode=from_checkpoint",
                f"init.path={latest_checkpoint(base_dir)}",
                "trainer.max_steps=5",
                "init.freeze_steps=5",
            ]
        )
    )
    assert "new (initialised fresh)" in capsys.readouterr().out
    up = load_checkpoint(latest_checkpoint(up_dir))["model"]
    for key, value in base.items():
        assert torch.equal(up[key], value), key  # frozen: the loaded weights did not move
    new = [k for k in up if k not in base]
    assert new and all(".attn.downsample." in k for k in new)
    assert summary["attention"] == "flurka_rnn"


def test_wandb_offline_run_is_resumed_under_the_same_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = ["scale=smoke", "logger=wandb", "trainer.progress=false", f"run_dir={tmp_path}"]
    first = train(compose([*common, "trainer.max_steps=4"]))
    assert first["wandb_run_id"] and list((tmp_path / "wandb").glob("offline-run-*"))
    second = train(compose([*common, "trainer.max_steps=8", "init.mode=resume"]))
    assert second["wandb_run_id"] == first["wandb_run_id"]


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=4", "trainer.checkpoint_every=2"]))
    good = latest_checkpoint(tmp_path)
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")  # the bytes land, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    from flurka.train.checkpoint import save_checkpoint

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, step=99, model_state={}, optimizer_state={}, meta={})
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(tmp_path) == good and load_checkpoint(good)["step"] == 4
    assert not list((tmp_path / "checkpoints").glob("*.tmp*"))  # no half-written file left behind


def test_time_budget_stops_training_and_is_reported(tmp_path):
    summary = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=100000", "trainer.time_budget_s=1.0",
                             "trainer.eval_every=0"]))  # fmt: skip
    assert 0 < summary["steps"] < 100000 and summary["budget_seconds"] >= 1.0
    assert summary["budget_seconds"] < 1.0 + 5.0  # stops at the first step past the budget
    assert summary["train_seconds"] > summary["budget_seconds"]  # the warm-up steps ran, uncounted
    assert math.isfinite(summary["eval_loss"])  # the final evaluation still runs
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == summary["steps"]


def test_the_time_budget_leaves_out_the_warm_up_steps(tmp_path, monkeypatch):
    """Compilation and autotuning happen in a process's first throughput_skip_steps steps: a budget that counted
    them would charge a one-off cost to the kernel-backed variants only. Here those steps are made slow (0.3 s
    each) and the budget (0.2 s) is smaller than one of them: all of them still run, and the run goes on past
    them until the counted time reaches the budget."""
    import time

    from flurka.data.lm import LMTask

    real = LMTask.train_batch
    calls = []

    def slow_first_batches(self, *args, **kwargs):
        calls.append(1)
        if len(calls) <= 3:
            time.sleep(0.3)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LMTask, "train_batch", slow_first_batches)
    summary = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=100000", "trainer.time_budget_s=0.2",
                             "trainer.throughput_skip_steps=3", "trainer.eval_every=0"]))  # fmt: skip
    assert summary["steps"] > 3 and summary["train_seconds"] >= 0.9
    assert 0.2 <= summary["budget_seconds"] < summary["train_seconds"] - 0.85


def test_test_split_is_evaluated_at_the_end_when_asked(tmp_path):
    """trainer.test_at_end: the final model is also scored on the test split (LRA and WMT report test numbers);
    the test loss differs from the validation loss, so it really is another split."""
    run_dir = tmp_path / "run"
    summary = train(compose([*SMOKE, "trainer.max_steps=3", "trainer.test_at_end=true", f"run_dir={run_dir}"]))
    assert math.isfinite(summary["test_loss"]) and summary["test_loss"] != summary["eval_loss"]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["test_bpc"] == pytest.approx(summary["test_loss"] / math.log(2))


def test_test_at_end_without_a_test_split_stops_before_training(tmp_path, monkeypatch):
    import flurka.train.loop as loop

    build = loop._instantiate

    def without_test(node, **kwargs):
        obj = build(node, **kwargs)
        if hasattr(obj, "splits"):
            obj.splits.pop("test", None)
        return obj

    monkeypatch.setattr(loop, "_instantiate", without_test)
    with pytest.raises(ValueError, match="has no test split"):
        train(compose([*SMOKE, "trainer.test_at_end=true", f"run_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_final_evaluation_scores_the_whole_split(tmp_path, monkeypatch):
    """Periodic evals read trainer.eval_batches batches (curves, best.pt); the final and test evals, whose numbers
    the summary and the tables report, read the whole split unless trainer.final_eval_batches caps them, and the
    summary says which (table-glue once scored STS-B on 1,280 of 1,500 dev pairs)."""
    import flurka.train.loop as loop

    calls: list[tuple[str, int | None]] = []
    real = loop.evaluate

    def recording(model, task, split, t, info, autocast, shard=True, max_batches=None):
        calls.append((split, max_batches))
        return real(model, task, split, t, info, autocast, shard=shard, max_batches=max_batches)

    monkeypatch.setattr(loop, "evaluate", recording)
    common = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.max_steps=4", "trainer.eval_every=2",
              "trainer.eval_batches=1"]  # fmt: skip
    summary = loop.train(compose([*common, "trainer.final_eval_batches=null", f"run_dir={tmp_path / 'a'}"]))
    assert calls == [("valid", 1), ("valid", None)] and summary["eval_examples_cap"] is None
    calls.clear()
    summary = loop.train(compose([*common, "trainer.final_eval_batches=3", f"run_dir={tmp_path / 'b'}"]))
    assert calls == [("valid", 1), ("valid", 3)] and summary["eval_examples_cap"] == 3 * 8
