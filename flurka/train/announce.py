"""What a run says when it starts: one block with the resolved model, attention, task, hardware and folder, and
the warnings a newcomer would otherwise find out hours later (a GPU scale on a CPU, a freeze that never ends,
evaluation that eats the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from flurka.train.config import InitConfig, TrainerConfig

GPU_SCALES = ("mini", "full")  # conf/scale/<name>.yaml sized for one or more GPUs (DESIGN.md "Scales")
# Evaluating more often than this, over more than MANY_EVALS evaluations, makes evaluation a large share of a
# run's time; the mini and full scales evaluate every 250 and 1000 steps.
EVAL_EVERY_FLOOR = 200
MANY_EVALS = 5
_CONSTRUCTION_KEYS = ("_target_", "_partial_")


def _options(node: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in node.items() if k not in _CONSTRUCTION_KEYS and v is not None)


def start_block(
    cfg: dict[str, Any],
    model: torch.nn.Module,
    *,
    attention: str,
    task: str,
    seq_len: int,
    device: torch.device,
    precision: str,
    run_dir: Path,
    resume_step: int | None,
) -> str:
    """The lines printed before the first step (the numbers a reader of a log needs to know what ran)."""
    m = cfg.get("model", {})
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"model      {type(model).__name__}: {m.get('n_layers')} layers, {m.get('n_heads')} heads, "
        f"width {m.get('d_model')}, {params:,} parameters",
        f"attention  {attention}" + (f" ({opts})" if (opts := _options(cfg.get("attention", {}))) else ""),
        f"task       {task}, sequence length {seq_len}"
        + (f" (scale={cfg['scale_name']})" if cfg.get("scale_name") else ""),
        f"device     {device} ({precision})",
        f"run folder {run_dir}",
    ]
    if resume_step is not None:
        lines.append(f"resuming from step {resume_step}")
    return "\n".join(f"[flurka] {line}" for line in lines)


def start_warnings(t: TrainerConfig, init: InitConfig, scale: str | None, device: torch.device) -> list[str]:
    """Settings that run, but not as the user most likely meant."""
    out = []
    if init.freeze_steps and init.freeze_steps >= t.max_steps:
        out.append(
            f"init.freeze_steps={init.freeze_steps} >= trainer.max_steps={t.max_steps}: the loaded weights never "
            "train, only the new parameters do. Lower init.freeze_steps or raise trainer.max_steps."
        )
    if scale in GPU_SCALES and device.type == "cpu":
        out.append(
            f"scale={scale} is sized for a GPU and this run is on the CPU: a step can take minutes and the run "
            "days. scale=smoke is the CPU scale."
        )
    # under a time budget max_steps is only a ceiling (and eval time is outside the budget): no count to give
    if not t.time_budget_s and 0 < t.eval_every < EVAL_EVERY_FLOOR and t.max_steps // t.eval_every > MANY_EVALS:
        out.append(
            f"trainer.eval_every={t.eval_every} evaluates {t.max_steps // t.eval_every} times "
            f"({t.eval_batches} batches each) in {t.max_steps} steps; every few hundred steps "
            f"(e.g. trainer.eval_every={max(EVAL_EVERY_FLOOR, t.max_steps // MANY_EVALS)}) keeps evaluation "
            "a small part of the run."
        )
    return out


def announce(block: str, warnings: list[str]) -> None:
    print(block, flush=True)
    for warning in warnings:
        print(f"[flurka] warning: {warning}", flush=True)
