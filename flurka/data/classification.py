"""Classification and regression over fixed arrays: the shared task for GLUE, LRA, sequential MNIST and images.

A split is a dict of equal-length arrays (`input_ids` [N, L] padded with `pad_id`, `lengths` [N], optional
`token_type_ids` [N, L] or `pixels`, and `labels` [N]). The training batch of step s is a pure function of
(seed, s) — rows drawn with a generator seeded by both — so runs resume exactly and DDP ranks cut their rows
from the same global batch. `evaluate` walks a split in order and computes the task's metrics on the
predictions (argmax of the logits, or the regression output).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flurka.data.base import run_eval_batches
from flurka.data.sources import DataError

MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]


@dataclass
class ArrayClassificationTask:
    name: str
    splits: dict[str, dict[str, np.ndarray]]
    num_labels: int
    metric_fn: MetricFn
    vocab_size: int | None = None  # None for pixel inputs
    max_len: int | None = None
    head: str = "classification"  # "classification" | "regression"
    kind: str = "classification"
    extra_model_kwargs: dict[str, Any] = field(default_factory=dict)
    pixel_transform: Callable[[np.ndarray], torch.Tensor] | None = None  # uint8 images -> float tensor
    stats: dict[str, Any] = field(default_factory=dict)  # e.g. how many examples were truncated, per split
    description: str = ""
    causal: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.head not in ("classification", "regression"):
            raise ValueError(f"head must be 'classification' or 'regression'; got {self.head!r}")
        for split, arrays in self.splits.items():
            sizes = {k: len(v) for k, v in arrays.items()}
            if len(set(sizes.values())) != 1 or not sizes or next(iter(sizes.values())) == 0:
                raise DataError(f"{self.name}/{split}: arrays must be non-empty and equal length; got {sizes}")

    def model_kwargs(self) -> dict[str, Any]:
        if self.kind == "image_classification":
            return dict(self.extra_model_kwargs)
        return {
            "vocab_size": self.vocab_size,
            "max_len": self.max_len,
            "head": self.head,
            "num_labels": self.num_labels,
            **self.extra_model_kwargs,
        }

    def num_examples(self, split: str) -> int:
        return len(self.splits[split]["labels"])

    def batch(self, split: str, rows: np.ndarray) -> dict[str, torch.Tensor]:
        arrays = self.splits[split]
        out: dict[str, torch.Tensor] = {}
        if "pixels" in arrays:
            out["pixels"] = self.pixel_transform(np.asarray(arrays["pixels"][rows]))
        if "input_ids" in arrays:
            out["input_ids"] = torch.from_numpy(np.asarray(arrays["input_ids"][rows], dtype=np.int64))
        if "token_type_ids" in arrays:
            out["token_type_ids"] = torch.from_numpy(np.asarray(arrays["token_type_ids"][rows], dtype=np.int64))
        if "lengths" in arrays:
            lengths = torch.from_numpy(np.asarray(arrays["lengths"][rows], dtype=np.int64))
            out["padding_mask"] = torch.arange(out["input_ids"].shape[1])[None, :] < lengths[:, None]
        labels = np.asarray(arrays["labels"][rows])
        out["labels"] = torch.from_numpy(labels.astype(np.float32 if self.head == "regression" else np.int64))
        return out

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        return self.batch("train", rng.integers(0, self.num_examples("train"), size=batch_size))

    def eval_batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[dict]:
        n = self.num_examples(split)
        if max_batches is not None:
            n = min(n, max_batches * batch_size)
        for first in range(0, n, batch_size):
            yield self.batch(split, np.arange(first, min(first + batch_size, n)))

    def evaluate(
        self,
        model: torch.nn.Module,
        split: str,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> dict[str, float]:
        """Mean loss (weighted by examples) and the task's metrics on `split` (unlabelled splits: refused)."""
        if split in self.splits and (np.asarray(self.splits[split]["labels"][:1]) < 0).any():
            raise DataError(f"{self.name}/{split} has no labels (GLUE test sets are unlabelled); evaluate on 'valid'")
        batches = self.eval_batches(split, batch_size, max_batches)
        out = evaluate_predictions(model, batches, self.head, self.metric_fn, device=device, autocast=autocast)
        return out | self.majority_baseline(split, None if max_batches is None else max_batches * batch_size)

    def majority_baseline(self, split: str, n: int | None = None) -> dict[str, float]:
        """The task's metrics for always predicting the most frequent training label, on the same (first `n`)
        examples of `split`, as `majority_<metric>`: the chance level a score must beat to mean anything (MRPC's
        F1 is 81 and RTE's accuracy 53 for a model that learned nothing). Empty for regression heads."""
        if self.head != "classification" or "train" not in self.splits:
            return {}
        majority = np.bincount(np.asarray(self.splits["train"]["labels"], dtype=np.int64)).argmax()
        gold = np.asarray(self.splits[split]["labels"][:n])
        return {f"majority_{k}": v for k, v in self.metric_fn(np.full_like(gold, majority), gold).items()}


def evaluate_predictions(
    model: torch.nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    head: str,
    metric_fn: MetricFn,
    *,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """Loss averaged over examples plus `metric_fn(predictions, labels)`; argmax of logits or the regression value."""
    preds, golds, loss_sum, n = [], [], 0.0, 0
    for batch, out in run_eval_batches(model, batches, device=torch.device(device), autocast=autocast):
        logits = out["logits"].float()
        pred = logits.reshape(-1) if head == "regression" else logits.argmax(-1)
        preds.append(pred.cpu().numpy())
        golds.append(batch["labels"].cpu().numpy())
        loss_sum += float(out["loss"]) * len(pred)
        n += len(pred)
    if n == 0:
        raise DataError("evaluation saw no examples")
    pred, gold = np.concatenate(preds), np.concatenate(golds)
    return {"loss": loss_sum / n, **metric_fn(pred, gold)}
