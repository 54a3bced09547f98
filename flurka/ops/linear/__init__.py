"""Linear attention (causal chunked and non-causal), with an optional normaliser and per-head decay.

    o, state = linear_attention(q, k, v, causal=True, decay=None, normalize=True)

See `reference.py` for the exact math, the state layout and the eps policy. Backends: "torch" (the chunked
PyTorch path in `chunked.py`, any device, autograd), "triton" (our kernels, `triton_linear.py`), "auto" (Triton on
CUDA, torch elsewhere).

Both backends trace under `torch.compile(fullgraph=True)`: the torch path is plain PyTorch, the Triton path runs
its kernels inside torch.library custom ops (`custom_ops.py`).
"""

from __future__ import annotations

import torch

from flurka.ops._backend import resolve_backend
from flurka.ops.linear._common import DEFAULT_EPS
from flurka.ops.linear.chunked import linear_attention_chunked
from flurka.ops.linear.reference import linear_attention_parallel, linear_attention_recurrent


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    decay: torch.Tensor | None = None,
    normalize: bool = True,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    eps: float = DEFAULT_EPS,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Linear attention on `[B, N, H, D]` tensors; returns `(o [B, Nq, H, Dv], final state or None)`. Both paths
    check their arguments with the one `check_args` (same errors either way; once per call, not twice: it is
    host time a host-bound step pays per layer)."""
    kw = dict(
        causal=causal,
        decay=decay,
        normalize=normalize,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        eps=eps,
    )
    if resolve_backend(backend, q) == "torch":
        return linear_attention_chunked(q, k, v, **kw)
    from flurka.ops.linear.triton_linear import linear_attention_triton

    return linear_attention_triton(q, k, v, **kw)


__all__ = [
    "DEFAULT_EPS",
    "linear_attention",
    "linear_attention_chunked",
    "linear_attention_parallel",
    "linear_attention_recurrent",
]
