"""What data a run actually read — the task, its data root and the size of its training split — recorded in
the run's summary, so a table says which data its rows came from instead of what the scale usually uses."""

from __future__ import annotations

from typing import Any

from flurka.data.sources import data_root


def train_size(task: Any) -> tuple[int, str] | None:
    """(count, unit) of the task's training split: tokens for a token stream, else examples; None if unknown."""
    if hasattr(task, "num_tokens"):
        return int(task.num_tokens("train")), "tokens"
    if hasattr(task, "num_examples"):
        return int(task.num_examples("train")), "examples"
    train = getattr(task, "splits", {}).get("train")
    if train is None:
        return None
    if isinstance(train, dict):  # columns of one table: any column's length is the number of examples
        return len(next(iter(train.values()))), "examples"
    shape = getattr(train, "shape", None)
    return len(train), "tokens" if shape is not None and len(shape) == 1 else "examples"


def data_facts(task: Any, task_cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat summary keys (W&B keeps only scalars): data_task, data_root, data_train_size, data_train_unit (the
    last two None when the task cannot say)."""
    size = train_size(task)
    return {
        "data_task": task.name,
        "data_root": str(data_root(task_cfg.get("root"))),
        "data_train_size": size[0] if size else None,
        "data_train_unit": size[1] if size else None,
    }
