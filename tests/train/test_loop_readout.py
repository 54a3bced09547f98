"""Issue 15: the loop reads the loss and the clock back from the device only at read points (log, eval,
checkpoint, final, end of warm-up, every step of a budget run), yet the NaN stop names the first bad step, no
checkpoint is written after it, and tokens/s keeps its meaning."""

from __future__ import annotations

import math

import pytest
import torch

import flurka.train.loop as loop
from flurka.train.checkpoint import latest_checkpoint, load_checkpoint
from flurka.train.config import TrainerConfig
from flurka.train.readout import PendingLosses, device_batch, is_read_point, skip_update_if_nonfinite
from tests.helpers import compose, losses

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false"]


@pytest.fixture
def read_steps(monkeypatch) -> list[list[int]]:
    """The steps each read point read back, in order."""
    reads: list[list[int]] = []
    real = PendingLosses.read

    def recording(self):
        reads.append(list(self._steps))
        return real(self)

    monkeypatch.setattr(PendingLosses, "read", recording)
    return reads


def poison_training_step(monkeypatch, at: int, finite_weights: list[bool]) -> None:
    """Make the model's loss NaN in training step `at` (one forward per step: no accumulation), and record for
    every training forward whether the weights it ran on were all finite."""
    build = loop._instantiate
    calls = []

    def hook(module, args, output):
        if not module.training:
            return output
        finite_weights.append(all(bool(torch.isfinite(p).all()) for p in module.parameters()))
        calls.append(1)
        return {**output, "loss": output["loss"] * math.nan} if len(calls) - 1 == at else output

    def with_hook(node, **kwargs):
        obj = build(node, **kwargs)
        if "attention" in kwargs:  # the model (the task and the attention are built without it)
            obj.register_forward_hook(hook)
        return obj

    monkeypatch.setattr(loop, "_instantiate", with_hook)


def test_the_loss_is_read_only_at_read_points(tmp_path, read_steps):
    train = [
        *SMOKE,
        "trainer.max_steps=20",
        "trainer.log_every=5",
        "trainer.eval_every=10",
        "trainer.checkpoint_every=0",
    ]
    summary = loop.train(compose([*train, "trainer.throughput_skip_steps=2", f"run_dir={tmp_path}"]))
    # end of warm-up (2), log steps (5, 15), eval steps (10, 20; 20 is also final): every step read exactly once
    assert read_steps == [[0, 1], [2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    assert sorted(losses(tmp_path)) == [5, 10, 15, 20]
    assert summary["final_train_loss"] == losses(tmp_path)[20]


def test_a_time_budget_reads_every_step(tmp_path, read_steps):
    summary = loop.train(compose([*SMOKE, "trainer.max_steps=100000", "trainer.time_budget_s=0.5",
                                  "trainer.eval_every=0", f"run_dir={tmp_path}"]))  # fmt: skip
    assert read_steps == [[s] for s in range(summary["steps"])]  # the stop is exact to the step, as before


def test_nan_stop_names_the_first_bad_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, read_steps):
    """The NaN of step 6 is noticed at the step-8 read point (a checkpoint step): the message names step 6, not
    7 or 8, and the step-8 checkpoint is never written; the step-4 one is there, with finite weights."""
    finite: list[bool] = []
    poison_training_step(monkeypatch, at=6, finite_weights=finite)
    cfg = [*SMOKE, "trainer.max_steps=20", "trainer.log_every=5", "trainer.eval_every=0", "trainer.checkpoint_every=4"]
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 6 \(lr ") as err:
        loop.train(compose([*cfg, f"run_dir={tmp_path}"]))
    assert "last good checkpoint" in str(err.value)
    assert read_steps[-1] == [5, 6, 7]  # steps 5-7 ran before the read
    assert not finite[7]  # CPU AdamW has no device-side skip: step 6's NaN update reached the weights
    kept = load_checkpoint(latest_checkpoint(tmp_path))
    assert kept["step"] == 4 and all(bool(torch.isfinite(v).all()) for v in kept["model"].values())
    assert sorted(losses(tmp_path)) == [5]


def test_a_fused_adamw_skips_the_nan_step_on_the_device(tmp_path, monkeypatch):
    """With the fused AdamW of a CUDA run (forced here on the CPU, which torch also fuses), the NaN step's update
    is a no-op on the device: the steps until the read point run on the last good weights."""
    monkeypatch.setattr(loop, "adamw_implementation", lambda params: {"fused": True})
    finite: list[bool] = []
    poison_training_step(monkeypatch, at=6, finite_weights=finite)
    cfg = [*SMOKE, "trainer.max_steps=20", "trainer.log_every=5", "trainer.eval_every=0", "trainer.checkpoint_every=4"]
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 6 "):
        loop.train(compose([*cfg, f"run_dir={tmp_path}"]))
    assert finite == [True] * 8  # steps 0-7, step 7 included
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 4


def test_summary_tokens_per_s_is_the_counted_steps_over_their_seconds(tmp_path):
    summary = loop.train(compose([*SMOKE, "trainer.max_steps=12", "trainer.log_every=5", "trainer.eval_every=0",
                                  "trainer.throughput_skip_steps=2", f"run_dir={tmp_path}"]))  # fmt: skip
    tokens_per_step = 8 * summary["seq_len"]  # scale=smoke: batch_size 8
    counted = (summary["steps"] - 2) * tokens_per_step
    assert summary["tokens_per_s"] == pytest.approx(counted / summary["budget_seconds"], rel=1e-9)
    assert 0 < summary["budget_seconds"] < summary["train_seconds"] <= summary["wall_seconds"]
    assert summary["mfu"] is None  # no peak rate for a CPU


def test_read_points_follow_the_config():
    t = TrainerConfig(max_steps=30, log_every=10, eval_every=0, checkpoint_every=0, throughput_skip_steps=3)
    assert [d for d in range(1, 31) if is_read_point(d, start_step=0, t=t)] == [3, 10, 20, 30]
    # a resumed process warms up again: its own first throughput_skip_steps steps
    assert [d for d in range(8, 31) if is_read_point(d, start_step=7, t=t)] == [10, 20, 30]
    assert [d for d in range(12, 31) if is_read_point(d, start_step=11, t=t)] == [14, 20, 30]
    t = TrainerConfig(max_steps=30, log_every=10, eval_every=4, checkpoint_every=6, throughput_skip_steps=0)
    assert [d for d in range(1, 31) if is_read_point(d, start_step=0, t=t)] == [4, 6, 8, 10, 12, 16, 18, 20, 24, 28, 30]
    t = TrainerConfig(max_steps=30, time_budget_s=1.0)
    assert all(is_read_point(d, start_step=0, t=t) for d in range(1, 31))


def test_pending_losses_read_once_and_find_the_first_bad_step():
    pending = PendingLosses()
    for step, value in [(3, 2.0), (4, math.inf), (5, math.nan), (6, 1.5)]:
        pending.add(step, torch.tensor(value), lr=0.1 * step)
    last, bad = pending.read()
    assert last == 1.5 and bad is not None and (bad.step, bad.loss, bad.lr) == (4, math.inf, pytest.approx(0.4))
    assert len(pending) == 0
    pending.add(7, torch.tensor(1.0), lr=0.1)
    assert pending.read() == (1.0, None)


def test_the_guard_leaves_non_fused_optimizers_alone_and_arms_fused_ones():
    p = torch.nn.Parameter(torch.ones(3))
    plain = torch.optim.AdamW([p])
    skip_update_if_nonfinite(plain, torch.tensor(math.nan))
    assert not hasattr(plain, "found_inf")  # foreach and the per-tensor loop reject found_inf
    fused = torch.optim.AdamW([p], fused=True)
    skip_update_if_nonfinite(fused, torch.tensor(math.nan))
    assert fused.found_inf.item() == 1.0
    skip_update_if_nonfinite(fused, torch.tensor(2.0))
    assert fused.found_inf.item() == 0.0


def test_adamw_stays_torchs_default_on_the_cpu():
    model = torch.nn.Linear(3, 3)
    assert loop.adamw_implementation(list(model.parameters())) == {}
    optimizer = loop.build_optimizer(model, TrainerConfig(), set())
    assert not any(group.get("fused") for group in optimizer.param_groups)


def test_device_batch_takes_this_ranks_rows():
    batch = {"input_ids": torch.arange(24).view(8, 3), "labels": torch.arange(24).view(8, 3) + 100}
    out = device_batch(batch, slice(4, 8), torch.device("cpu"))
    assert torch.equal(out["input_ids"], batch["input_ids"][4:]) and torch.equal(out["labels"], batch["labels"][4:])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_adamw_is_fused_and_batches_copy_through_pinned_memory():
    model = torch.nn.Linear(3, 3).cuda()
    assert loop.adamw_implementation(list(model.parameters())) == {"fused": True}
    optimizer = loop.build_optimizer(model, TrainerConfig(), set())
    assert all(group["fused"] for group in optimizer.param_groups)
    batch = {"input_ids": torch.randint(0, 100, (64, 1024))}
    out = device_batch(batch, slice(32, 64), torch.device("cuda"))
    torch.cuda.synchronize()
    assert out["input_ids"].is_cuda and torch.equal(out["input_ids"].cpu(), batch["input_ids"][32:])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_nan_step_is_named_and_skipped(tmp_path, monkeypatch):
    finite: list[bool] = []
    poison_training_step(monkeypatch, at=6, finite_weights=finite)
    cfg = [*SMOKE, "trainer.device=cuda", "trainer.max_steps=20", "trainer.log_every=5", "trainer.eval_every=0",
           "trainer.checkpoint_every=4"]  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 6 "):
        loop.train(compose([*cfg, f"run_dir={tmp_path}"]))
    assert finite == [True] * 8
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 4
