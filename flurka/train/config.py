"""Typed trainer and init settings: a typo in a key is an error that lists the valid keys, not a silent default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class TrainerConfig:
    max_steps: int = 200
    time_budget_s: float | None = None  # stop when this much training time is spent (eval excluded)
    batch_size: int = 16  # global batch, in sequences (× seq_len tokens)
    micro_batch_size: int | None = None  # per device; None = the whole per-device share in one pass
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 20  # periodic evaluations (curves, best.pt) read the split's first eval_batches batches
    final_eval_batches: int | None = None  # the final/test evaluation (the summary's numbers): None = whole split
    eval_batch_size: int | None = None
    test_at_end: bool = False  # also evaluate the final model on the task's test split (summary: test_*)
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    keep_last_k: int = 2
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU; or "bf16" / "fp32"
    device: str = "auto"
    compile: bool = False
    strategy: str = "ddp"  # under torchrun: ddp (replicated) or fsdp (sharded parameters, FSDP2)
    throughput_skip_steps: int = 5  # compilation and autotuning happen here; kept out of summary tokens/s
    progress: bool = True
    deterministic: bool = False


@dataclass
class InitConfig:
    mode: str = "scratch"  # scratch | resume | from_checkpoint | from_pretrained (a local Hugging Face folder)
    path: str | None = None  # resume: a checkpoint (default: the run's latest); the other two: required
    freeze_steps: int = 0  # up-training: train only the new attention parameters for this many steps


def from_mapping(cls: type, values: dict[str, Any] | None, where: str):
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {where} keys {unknown}; valid: {', '.join(sorted(names))}")
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return cls(**values)
