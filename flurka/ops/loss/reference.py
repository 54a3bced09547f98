"""Plain-PyTorch linear + cross-entropy: the truth the chunked op is tested against.

`loss = mean_{t: labels_t ≠ ignore_index} [logsumexp_v(x_t · W_v) − x_t · W_{labels_t}]`, the GPT LM-head loss.

It builds the full `[T, V]` logits, which is the memory the chunked op exists to avoid (T = 16k tokens and
V = 50k is 3.3 GB of fp32 logits, plus as much again for their gradient). The matmul runs in whatever dtype
PyTorch picks (bf16 under autocast); the softmax math runs in fp32, or in fp64 for fp64 inputs so tests can
check the chunked op to ~1e-12.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_cross_entropy_reference(
    x: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100
) -> torch.Tensor:
    """Mean cross-entropy of `x [..., d] @ weight [V, d]ᵀ` against `labels [...]`, skipping `ignore_index`.

    Returns a 0-dim tensor in fp32 (fp64 for fp64 logits). No valid token gives nan, as `F.cross_entropy` does
    (0 / 0), with zero gradients.
    """
    logits = x.reshape(-1, x.shape[-1]) @ weight.T
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, labels.reshape(-1), ignore_index=ignore_index)
