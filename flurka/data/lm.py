"""Language-modelling tasks: a token stream per split, random training windows, contiguous eval windows.

The training batch of step s is a pure function of (seed, s): its windows start at offsets drawn from a
generator seeded by both. Resuming at step s therefore continues with exactly the data an uninterrupted run
would have seen, and every DDP rank can cut its own rows out of the same global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from flurka.data.sources import DataError
from flurka.data.tokenizers import Tokenizer


@dataclass
class LMTask:
    """Next-token prediction over token streams (`splits`: name -> 1-d integer array)."""

    name: str
    splits: dict[str, np.ndarray]
    tokenizer: Tokenizer
    seq_len: int
    metric: str = "ppl"  # "ppl" (perplexity per token) or "bpc" (bits per character, byte-level)
    description: str = ""
    kind: str = field(default="lm", init=False)
    causal: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.metric not in ("ppl", "bpc"):
            raise ValueError(f"metric must be 'ppl' or 'bpc'; got {self.metric!r}")
        for split, tokens in self.splits.items():
            if len(tokens) < self.seq_len + 2:
                raise DataError(
                    f"{self.name}/{split} has {len(tokens)} tokens, fewer than one window of seq_len={self.seq_len}"
                )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def model_kwargs(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size, "max_len": self.seq_len}

    def num_tokens(self, split: str) -> int:
        return len(self.splits[split])

    def _windows(self, tokens: np.ndarray, starts: np.ndarray) -> dict[str, torch.Tensor]:
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))
        return {"input_ids": chunk[:, :-1].contiguous(), "labels": chunk[:, 1:].contiguous()}

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
        """The global training batch of `step`: `batch_size` random windows, a pure function of (seed, step)."""
        tokens = self.splits["train"]
        rng = np.random.default_rng([seed, step])
        starts = rng.integers(0, len(tokens) - self.seq_len - 1, size=batch_size)
        return self._windows(tokens, starts)

    def eval_batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[dict]:
        """Non-overlapping windows from the start of a split (the same every time: comparable eval losses)."""
        tokens = self.splits[split]
        n_windows = (len(tokens) - 1) // self.seq_len
        if max_batches is not None:
            n_windows = min(n_windows, max_batches * batch_size)
        for first in range(0, n_windows, batch_size):
            starts = np.arange(first, min(first + batch_size, n_windows)) * self.seq_len
            yield self._windows(tokens, starts)

    def eval_metrics(self, mean_loss: float) -> dict[str, float]:
        """Loss (nats per token) -> the task's reported metric."""
        if self.metric == "bpc":
            return {"loss": mean_loss, "bpc": mean_loss / math.log(2)}
        return {"loss": mean_loss, "ppl": math.exp(min(mean_loss, 50.0))}


def split_stream(tokens: np.ndarray, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> dict:
    """Cut one stream into contiguous train/valid/test parts (for corpora published without splits)."""
    n = len(tokens)
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return {"train": tokens[:a], "valid": tokens[a:b], "test": tokens[b:]}
