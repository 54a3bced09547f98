"""What the training loop needs from a task — the contract between `flurka/data` and `flurka/train`.

A task is any object with:

- `name: str`, `kind: str` ("lm", "mlm", "classification", "regression", "seq2seq", "image_classification"),
  `causal: bool` (True when the model must be causal: language modelling).
- `model_kwargs() -> dict`: what the model constructor needs from the data, e.g. `{"vocab_size", "max_len"}`
  for GPT; `{"vocab_size", "max_len", "head", "num_labels"}` for a BERT classifier; `{"image_size",
  "channels", "num_classes"}` for ViT; `{"src_vocab_size", "tgt_vocab_size", "max_len", "pad_id", "bos_id",
  "eos_id"}` for seq2seq.
- `train_batch(step, batch_size, seed) -> dict[str, Tensor]`: the *global* batch of a step, a pure function of
  (seed, step) so runs resume exactly and DDP ranks can take their rows. Keys are the model's forward
  arguments (`input_ids`, `labels`, `padding_mask`, `token_type_ids`, `pixels`, `src_ids`, `tgt_ids`, ...);
  every tensor has the batch as its first dimension. The model returns `{"loss", "logits", ...}` (GPT, given
  labels, only `{"loss"}`: its chunked head never forms the logits, which LM evaluation does not need).
- `evaluate(model, split, *, batch_size, max_batches, device, autocast) -> dict[str, float]`: the task's
  metrics on a split (always including "loss"; the paper's metric too: perplexity, bits per character,
  accuracy, Matthews correlation, F1, Pearson/Spearman, BLEU ...). Optional for LM tasks, which the loop
  evaluates (sharded across ranks) from `eval_batches` and `eval_metrics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch


class Task(Protocol):
    name: str
    kind: str
    causal: bool

    def model_kwargs(self) -> dict[str, Any]: ...

    def train_batch(self, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]: ...


def run_eval_batches(
    model: torch.nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    *,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Yield (batch on device, model outputs) in eval mode without gradients — the loop every evaluate() needs."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast():
                    out = model(**batch)
                yield batch, out
    finally:
        model.train(was_training)
