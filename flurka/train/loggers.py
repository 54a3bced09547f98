"""Run logging: `metrics.jsonl` in the run folder always (rank 0), plus Weights & Biases when configured.

W&B runs offline by default and online when `WANDB_API_KEY` is set (`mode: auto`); group = the experiment or
table, name = the row, config = the resolved config. The run id is stored in every checkpoint so a resumed
run continues the same W&B run instead of starting a new one. Only rank 0 ever talks to W&B.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# the numbers tables are built from, with the summary W&B should keep for each
SUMMARY_METRICS = {
    "eval/loss": "min",
    "eval/ppl": "min",
    "eval/bpc": "min",
    "train/loss": "min",
    "train/tokens_per_s": "mean",
    "train/mfu": "mean",
}


def wandb_mode(mode: str) -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"logger.mode must be auto, online, offline or disabled; got {mode!r}")
    return mode


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        backend: str,
        config: dict[str, Any],
        project: str = "flurka",
        entity: str | None = None,
        group: str | None = None,
        name: str | None = None,
        job_type: str = "pretrain",
        mode: str = "auto",
        run_id: str | None = None,
        is_main: bool = True,
    ) -> None:
        if backend not in ("wandb", "none"):
            raise ValueError(f"logger backend must be 'wandb' or 'none'; got {backend!r}")
        self.is_main = is_main
        self.run_dir = Path(run_dir)
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.wandb_run = None
        self.run_id = run_id
        if not is_main or backend == "none":
            return
        import wandb

        self.wandb_run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            name=name,
            job_type=job_type,
            config=config,
            dir=str(self.run_dir),
            mode=wandb_mode(mode),
            id=run_id,
            resume="allow" if run_id else None,
        )
        self.run_id = self.wandb_run.id
        for metric, summary in SUMMARY_METRICS.items():
            self.wandb_run.define_metric(metric, summary=summary)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.is_main:
            return
        with self.metrics_file.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for key, value in values.items():
                if isinstance(value, int | float | str | bool):
                    self.wandb_run.summary[key] = value

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
