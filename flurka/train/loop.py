"""One training loop for every model, task and attention variant, on one device or under torchrun.

    summary = train(cfg)   # cfg: the composed Hydra config (or a plain dict of the same shape)

The global batch is fixed in sequences (trainer.batch_size × seq_len tokens); each rank takes its rows of the
step's global batch and splits them into micro-batches, so 1 and N processes train on the same data with the
same loss. Only rank 0 writes files or talks to W&B. See DESIGN.md "Runs and results" for the run folder.
The loss and the clock stay on the device between read points (log, eval, checkpoint and final steps): see
flurka.train.readout for when the loop waits for the GPU and how the NaN stop and the timing survive that.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from flurka.attention import factory_name
from flurka.data.describe import data_facts
from flurka.models.transfer import strip_wrappers, transfer_weights
from flurka.results.provenance import provenance
from flurka.train import dist
from flurka.train.announce import announce, start_block, start_warnings
from flurka.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from flurka.train.config import InitConfig, TrainerConfig, check_target_node, from_mapping
from flurka.train.loggers import RunLogger
from flurka.train.naming import NothingToResumeError, default_name
from flurka.train.readout import (
    PendingLosses,
    WindowClock,
    device_batch,
    is_read_point,
    skip_update_if_nonfinite,
)
from flurka.train.run_folder import finished_summary, prepare_run_folder, releases_run_folders, truncate_metrics
from flurka.train.schedule import lr_at
from flurka.train.throughput import mfu


def _to_container(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def _instantiate(node: dict[str, Any], **kwargs):
    from hydra.utils import instantiate

    return instantiate(node, **kwargs)


def _pretrained_weights(path: str, model_cfg: dict[str, Any], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Hugging Face weights for `model`, after checking that the run's model config computes the same function."""
    from flurka.models.hf import config_mismatches, fit_positions, pretrained_weights

    weights, kwargs = pretrained_weights(path)
    mismatches = config_mismatches(model_cfg, kwargs)
    if mismatches:
        raise ValueError(
            f"model config does not match the checkpoint in {path}; set these (or pick its size config, e.g. "
            "model=gpt2_small / bert_base / vit_base):\n  " + "\n  ".join(mismatches)
        )
    return fit_positions(weights, model.state_dict())


def run_dir_for(cfg: dict[str, Any], attention: str, model: str, task: str) -> Path:
    """runs/<group>/<name>/seed<seed>: a function of the config only (no timestamps), so every rank agrees.
    The default name ends in a hash of what the config trains, so different configurations get different
    folders (flurka.train.naming)."""
    if cfg.get("run_dir"):
        return Path(cfg["run_dir"])
    name = cfg.get("name") or default_name(cfg, attention, model, task)
    return Path(cfg.get("runs_root", "runs")) / (cfg.get("group") or "default") / name / f"seed{cfg.get('seed', 0)}"


def build_optimizer(model: torch.nn.Module, t: TrainerConfig, new_params: set[str]) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and embeddings-as-vectors (1-d tensors). New (up-trained)
    and loaded parameters get separate groups so a freeze phase can hold the loaded ones at lr 0."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear twice
            continue
        seen.add(id(p))
        groups.setdefault((p.dim() >= 2, name in new_params), []).append(p)
    param_groups = [
        {"params": ps, "weight_decay": t.weight_decay if decay else 0.0, "is_new": is_new}
        for (decay, is_new), ps in sorted(groups.items())
    ]
    params = [p for ps in groups.values() for p in ps]
    return torch.optim.AdamW(param_groups, lr=t.lr, betas=t.betas, **adamw_implementation(params))


def adamw_implementation(params: list[torch.nn.Parameter]) -> dict[str, bool]:
    """fused=True when every parameter is a plain CUDA tensor: one kernel per parameter group and dtype instead
    of foreach's chain of multi-tensor ops, fewer launches where the host, not the GPU, bounds a small model's
    step; it also lets a NaN step be skipped on the device (readout.skip_update_if_nonfinite). The state dict is the
    same as foreach's, so checkpoints resume across the two. Otherwise torch's default: foreach on CUDA, where
    FSDP2's DTensor parameters land (the fused kernel is not tested with them here), and the per-tensor loop on
    the CPU, kept so CPU runs (and the tests' bit-exact comparisons) do not change."""
    fused_ok = "fused" in inspect.signature(torch.optim.AdamW).parameters
    plain_cuda = all(type(p) in (torch.Tensor, torch.nn.Parameter) and p.is_cuda for p in params)
    return {"fused": True} if fused_ok and params and plain_cuda else {}


def nan_loss_message(
    loss: float, step: int, lr: float, attention: str, run_dir: Path, resumed_from: Path | None, start_step: int
) -> str:
    """What to do about a non-finite loss. Checkpoints pass their checksum before training starts, so a NaN at
    the first resumed step means the weights were saved that way, not that the file or the data is damaged."""
    head = f"loss became {loss} at step {step} (lr {lr:.3g}, attention {attention}); stopping."
    if resumed_from is not None and step == start_step:
        return (
            f"{head} It is the first step after resuming from {resumed_from}, which matches its checksum: the "
            "weights were already non-finite when saved. Resume from an earlier checkpoint (init.path=...)."
        )
    return f"{head} The last good checkpoint in {run_dir}/checkpoints is untouched: lower trainer.lr or check the data."


def _fault_injection(step: int) -> None:
    """Tests simulate a crash (no cleanup, like SIGKILL) at a given step through FLURKA_FAULT_AT_STEP."""
    at = os.environ.get("FLURKA_FAULT_AT_STEP")
    if at is not None and step == int(at):
        os._exit(17)


def forward_backward(
    model: torch.nn.Module,
    rank_batch: dict[str, torch.Tensor],
    *,
    accum: int,
    micro: int,
    info: dist.DistInfo,
    fsdp: bool,
    autocast,
) -> torch.Tensor:
    """Gradients of this rank's share of the step (micro-batches accumulated; DDP/FSDP reduce gradients on the
    last only) and the step's mean loss over all ranks, left on the device: reading it here would make the host
    wait for the step (readout)."""
    loss_sum = torch.zeros((), device=info.device)
    for i in range(accum):
        micro_batch = {k: v[i * micro : (i + 1) * micro] for k, v in rank_batch.items()}
        last = i == accum - 1
        if fsdp:
            model.set_requires_gradient_sync(last)
        sync = contextlib.nullcontext() if (last or not info.enabled or fsdp) else model.no_sync()
        with sync, autocast():
            loss = model(**micro_batch)["loss"] / accum
        with sync:
            loss.backward()
        loss_sum += loss.detach()
    return dist.all_reduce_mean(loss_sum, info)


def eval_batch_size(t: TrainerConfig) -> int:
    return t.eval_batch_size or t.micro_batch_size or t.batch_size


@torch.no_grad()
def evaluate(
    model,
    task,
    split: str,
    t: TrainerConfig,
    info: dist.DistInfo,
    autocast,
    shard: bool = True,
    max_batches: int | None = None,
) -> dict[str, float]:
    """The task's own evaluate() when it has one; else the LM path: mean token loss, sharded over ranks
    (`shard=False` under FSDP, whose forward is a collective: every rank then evaluates every batch).
    `max_batches`: the split's first that many batches; None = the whole split."""
    batch_size = eval_batch_size(t)
    if hasattr(task, "evaluate"):
        return task.evaluate(
            model, split, batch_size=batch_size, max_batches=max_batches, device=info.device, autocast=autocast
        )
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=info.device)  # (sum of token losses, tokens)
    for i, batch in enumerate(task.eval_batches(split, batch_size, max_batches)):
        if shard and i % info.world_size != info.rank:
            continue
        batch = {k: v.to(info.device) for k, v in batch.items()}
        with autocast():
            loss = model(**batch)["loss"]
        n = (batch["labels"] != -100).sum()
        total += torch.stack([loss.double() * n, n.double()])
    if info.enabled and shard:
        torch.distributed.all_reduce(total)
    model.train()
    return task.eval_metrics((total[0] / total[1].clamp(min=1)).item())


def check_config(c: dict[str, Any]) -> tuple[TrainerConfig, InitConfig]:
    """Every typed section checked (types, ranges, unknown keys) before anything is built, loaded or written."""
    t = from_mapping(TrainerConfig, c.get("trainer"), "trainer")
    init = from_mapping(InitConfig, c.get("init"), "init")
    check_target_node(c.get("model"), "model")
    check_target_node(c.get("task"), "task")
    from flurka.data.sources import set_verify_mode

    set_verify_mode((c.get("data") or {}).get("verify", "stamp"))
    return t, init


@releases_run_folders
def train(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or up-train) one run; returns the summary also written to summary.json."""
    c = _to_container(cfg)
    t, init = check_config(c)
    info = dist.setup(t.device)
    seed = int(c.get("seed", 0))
    torch.manual_seed(seed)  # the same initial weights on every rank (FSDP shards what each rank built)
    if t.deterministic:
        torch.use_deterministic_algorithms(True)

    task = _instantiate(c["task"])
    if t.test_at_end and "test" not in getattr(task, "splits", {}):  # say so now, not after the training
        raise ValueError(f"trainer.test_at_end: task {task.name} has no test split here (its splits: "
                         f"{', '.join(getattr(task, 'splits', {})) or 'train and valid only'})")  # fmt: skip
    attention = _instantiate(c["attention"])
    model = _instantiate(c["model"], **task.model_kwargs(), attention=attention)
    if getattr(task, "causal", False) and not getattr(model, "causal", False):
        raise ValueError(f"task {task.name} is causal language modelling; use a causal model (model=gpt)")
    model.to(info.device)
    torch.manual_seed(seed + info.rank)  # dropout etc. differ per rank; data does not (it is step-seeded)
    att_name = factory_name(attention)
    model_name = c["model"].get("_target_", "model").rsplit(".", 1)[-1].lower()
    run_dir = run_dir_for(c, att_name, model_name, task.name)
    prepare_run_folder(run_dir, resume=init.mode == "resume", overwrite=init.overwrite, info=info)

    # ---- where do the weights come from?
    start_step, best, wandb_id, new_params, train_seconds = 0, math.inf, None, set(), 0.0
    # what trainer.time_budget_s counts: training time without each process's first throughput_skip_steps steps
    # (Triton compilation and autotuning, a one-off cost that a mini-scale budget of a minute would otherwise
    # charge to the kernel-backed variants only): earlier processes' (from the checkpoint) + this one's timed_seconds
    budget_before = budget_seconds = 0.0
    ckpt_path = None
    if init.mode == "resume":
        ckpt_path = Path(init.path) if init.path else latest_checkpoint(run_dir)
        if ckpt_path is None:
            raise NothingToResumeError(
                f"init.mode=resume but {run_dir}/checkpoints has no checkpoint to resume from (a default name "
                "follows the config: repeat the run's own overrides, or give its name=)"
            )
    state, train_loss = None, float("nan")
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path, info.device)
        model.load_state_dict(strip_wrappers(state["model"]))
        start_step, best = int(state["step"]), float(state["meta"].get("best_eval_loss", math.inf))
        train_seconds = float(state["meta"].get("train_seconds", 0.0))
        budget_before = budget_seconds = float(state["meta"].get("budget_seconds", train_seconds))
        wandb_id = state["meta"].get("wandb_run_id")
        train_loss = float(state["meta"].get("train_loss", math.nan))
        finished = finished_summary(run_dir, start_step, budget_seconds, t.max_steps, t.time_budget_s)
        if finished is not None:  # a finished run: nothing to train, nothing to rewrite
            if info.is_main:
                print(f"[flurka] {run_dir} already finished at step {start_step} (trainer.max_steps={t.max_steps}); "
                      "nothing to do. Raise trainer.max_steps to continue it.")  # fmt: skip
            return finished
        if info.is_main:
            truncate_metrics(run_dir, start_step)
    elif init.mode in ("from_checkpoint", "from_pretrained"):
        if not init.path:
            raise ValueError(f"init.mode={init.mode} needs init.path=<checkpoint file or Hugging Face folder>")
        weights = (
            load_checkpoint(Path(init.path), info.device)["model"]
            if init.mode == "from_checkpoint"
            else _pretrained_weights(init.path, c["model"], model)
        )
        report = transfer_weights(model, weights)
        new_params = set(report.new)
        if info.is_main:
            print(f"[flurka] up-training from {init.path}: {report.summary()}")

    raw_model = model
    fsdp = info.enabled and t.strategy == "fsdp"
    if fsdp:  # shard in place before the optimizer sees the parameters (FSDP2)
        dist.shard_model(model)
    optimizer = build_optimizer(model, t, new_params)
    if state is not None:
        if state["meta"].get("strategy", "ddp") != ("fsdp" if fsdp else "ddp"):
            raise ValueError(
                f"{ckpt_path} was written with strategy={state['meta'].get('strategy')}; resume it with that strategy"
            )
        dist.load_optimizer_state(model, optimizer, state["optimizer"], fsdp=fsdp)
        set_rng_state(state["rng"])
    if t.compile:
        model = torch.compile(model)
    if info.enabled and not fsdp:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )

    # ---- batch arithmetic, checked (nanoGPT): global = micro × accumulation × world
    if t.batch_size % info.world_size:
        raise ValueError(f"trainer.batch_size={t.batch_size} is not divisible by {info.world_size} processes")
    per_rank = t.batch_size // info.world_size
    micro = t.micro_batch_size or per_rank
    if per_rank % micro:
        raise ValueError(f"per-device batch {per_rank} is not a multiple of trainer.micro_batch_size={micro}")
    accum = per_rank // micro
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and info.device.type == "cuda")

    def autocast():
        if use_bf16:
            return torch.autocast(device_type=info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    seq_len = getattr(task, "seq_len", None) or getattr(raw_model, "max_len", 1)
    if info.is_main:
        block = start_block(c, raw_model, attention=att_name, task=task.name, seq_len=seq_len, device=info.device,
                            precision="bf16 autocast" if use_bf16 else "fp32", run_dir=run_dir,
                            resume_step=start_step if state is not None else None)  # fmt: skip
        announce(block, start_warnings(t, init, c.get("scale_name"), info.device))

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(c)))
    dist.barrier(info)
    logger = RunLogger(
        run_dir,
        backend=c.get("logger", {}).get("backend", "none"),
        config=c,
        project=c.get("logger", {}).get("project", "flurka"),
        entity=c.get("logger", {}).get("entity"),
        group=c.get("group"),
        name=c.get("name") or run_dir.parent.name,
        job_type=c.get("logger", {}).get("job_type", "uptrain" if init.mode == "from_checkpoint" else "pretrain"),
        mode=c.get("logger", {}).get("mode", "auto"),
        run_id=wandb_id,
        is_main=info.is_main,
    )
    wandb_id = dist.broadcast_object(logger.run_id, info)

    budget = t.time_budget_s
    flops_per_token = raw_model.flops_per_sequence(seq_len) / seq_len
    tokens_per_step = t.batch_size * seq_len
    meta = {
        "config": c,
        "wandb_run_id": wandb_id,
        "attention": att_name,
        "strategy": "fsdp" if fsdp else "ddp",
        "provenance": provenance(),
    }

    def checkpoint(step: int, name: str | None = None) -> None:
        # under FSDP gathering the full state is a collective: every rank takes part, rank 0 writes
        model_state, optimizer_state = dist.full_state(raw_model, optimizer, fsdp=fsdp)
        if info.is_main:
            meta.update(
                best_eval_loss=best,
                step=step,
                train_seconds=train_seconds,
                budget_seconds=budget_seconds,
                train_loss=train_loss,
            )
            save_checkpoint(
                run_dir,
                step=step,
                model_state=strip_wrappers(model_state),
                optimizer_state=optimizer_state,
                meta=meta,
                keep_last_k=t.keep_last_k,
                name=name,
            )
        dist.barrier(info)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=t.max_steps,
        initial=start_step,
        disable=not (info.is_main and t.progress),
        desc=f"{att_name}",
        dynamic_ncols=True,
    )
    model.train()
    last_eval: dict[str, float] = {}
    # summary tokens/s: this process's counted (post-warm-up) steps; train/tokens_per_s: the steps since the last log
    timed_tokens, timed_seconds = 0, 0.0
    log_tokens, log_seconds = 0, 0.0
    wall_start = time.perf_counter()
    done = start_step
    rows = slice(info.rank * per_rank, (info.rank + 1) * per_rank)
    pending = PendingLosses()  # the losses since the last read point, on the device (readout)
    clock = WindowClock(info.device)
    clock.start()  # after loading and building: the first window holds only steps
    for step in range(start_step, t.max_steps):
        _fault_injection(step)
        if budget and budget_seconds >= budget:
            break
        # with a time budget the schedule follows the fraction of the budget spent, not the step count
        sched_step = step if not budget else int(budget_seconds / budget * t.max_steps)
        lr = lr_at(sched_step, lr=t.lr, warmup_steps=t.warmup_steps, max_steps=t.max_steps, min_lr_ratio=t.min_lr_ratio)
        frozen = step < init.freeze_steps
        for group in optimizer.param_groups:
            group["lr"] = 0.0 if (frozen and not group["is_new"]) else lr
        rank_batch = device_batch(task.train_batch(step, t.batch_size, seed), rows, info.device)
        loss_all = forward_backward(model, rank_batch, accum=accum, micro=micro, info=info, fsdp=fsdp,
                                    autocast=autocast)  # fmt: skip
        pending.add(step, loss_all, lr)
        skip_update_if_nonfinite(optimizer, loss_all)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        bar.update(1)
        if not is_read_point(done, start_step=start_step, t=t):
            continue
        # ---- read point: the device is drained; losses, clock and NaN check for the steps since the last one
        window_steps = len(pending)
        window_seconds = clock.stop()
        train_loss, bad = pending.read()
        if bad is not None:  # checked before any eval or checkpoint: nothing is written from a bad step on
            bar.close()
            logger.finish()
            raise FloatingPointError(nan_loss_message(bad.loss, bad.step, bad.lr, att_name, run_dir, ckpt_path,
                                                      start_step))  # fmt: skip
        train_seconds += window_seconds
        # a window is all warm-up or all counted: the end of the warm-up is a read point
        if done - window_steps - start_step >= t.throughput_skip_steps:
            timed_tokens += window_steps * tokens_per_step
            timed_seconds += window_seconds
            budget_seconds = budget_before + timed_seconds
        log_tokens += window_steps * tokens_per_step
        log_seconds += window_seconds
        # the budget is shared by all ranks: rank 0's clock decides, so every rank stops at the same step
        final = done == t.max_steps or bool(budget and dist.broadcast_object(budget_seconds, info) >= budget)
        if done % t.log_every == 0 or final:
            tps = log_tokens / max(log_seconds, 1e-9)
            metrics = {"train/loss": train_loss, "train/lr": lr, "train/tokens_per_s": tps}
            util = mfu(flops_per_token, tps, info.device, info.world_size)
            if util is not None:
                metrics["train/mfu"] = util
            logger.log(metrics, done)
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tps:,.0f}")
            log_tokens, log_seconds = 0, 0.0
        if (t.eval_every and done % t.eval_every == 0) or final:
            # periodic evals read a subset (cheap curves); the final one, which the summary reports, the split
            # (unless trainer.final_eval_batches says otherwise, which the summary and the tables then state)
            cap = t.final_eval_batches if final else t.eval_batches
            last_eval = evaluate(model, task, "valid", t, info, autocast, shard=not fsdp, max_batches=cap)
            logger.log({f"eval/{k}": v for k, v in last_eval.items()}, done)
            if last_eval["loss"] < best:
                best = last_eval["loss"]
                checkpoint(done, name="best.pt")
        if (t.checkpoint_every and done % t.checkpoint_every == 0) or final:
            checkpoint(done)
        if final:
            break
        clock.start()  # logging, eval and checkpoints are not training time
    bar.close()
    if done == start_step:  # resumed at its end, before summary.json was written: evaluate what the run made
        last_eval = evaluate(model, task, "valid", t, info, autocast, shard=not fsdp, max_batches=t.final_eval_batches)
    test_eval: dict[str, float] = {}
    if t.test_at_end:  # the final model, on data no choice was made on (the papers' LRA/WMT numbers are test)
        test_eval = evaluate(model, task, "test", t, info, autocast, shard=not fsdp, max_batches=t.final_eval_batches)
        logger.log({f"test/{k}": v for k, v in test_eval.items()}, done)

    tokens_per_s = timed_tokens / timed_seconds if timed_seconds > 0 else None
    summary = {
        "task": task.name,
        "model": model_name,
        "attention": att_name,
        "seed": seed,
        "steps": done,
        "seq_len": seq_len,
        "tokens_seen": done * tokens_per_step,
        "train_seconds": train_seconds,
        "time_budget_s": budget,
        "budget_seconds": budget_seconds,  # train_seconds less the first throughput_skip_steps steps of a process
        "params": sum(p.numel() for p in raw_model.parameters()),
        **data_facts(task, c["task"]),  # what was read, for the table's data label
        "final_train_loss": train_loss,
        **{f"eval_{k}": v for k, v in last_eval.items()},
        **{f"test_{k}": v for k, v in test_eval.items()},
        "best_eval_loss": best,
        # None: eval_* / test_* scored the whole split; else only its first this many examples
        "eval_examples_cap": None if t.final_eval_batches is None else t.final_eval_batches * eval_batch_size(t),
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_device": tokens_per_s / info.world_size if tokens_per_s else None,
        "mfu": mfu(flops_per_token, tokens_per_s or 0.0, info.device, info.world_size),
        "world_size": info.world_size,
        # >1: other runs shared this GPU (run_table.py --streams), so tokens/s above is not a solo speed
        "concurrent_runs": int(os.environ.get("FLURKA_CONCURRENT_RUNS") or 1),
        "peak_mem_gb": torch.cuda.max_memory_allocated(info.device) / 2**30 if info.device.type == "cuda" else None,
        "wall_seconds": time.perf_counter() - wall_start,
        "wandb_run_id": wandb_id,
        "run_dir": str(run_dir),
        **provenance(),
    }
    if info.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    logger.summary(summary)
    logger.finish()
    return summary
