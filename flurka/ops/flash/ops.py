"""`flash_attention`: the public op. Validates, resolves the backend, and runs the Triton kernel or the reference."""

from __future__ import annotations

import torch

from flurka.ops._backend import check_bnhd, resolve_backend
from flurka.ops.flash.reference import attention_reference

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 512  # padded BLOCK_D; D=325 (FLuRKA Fig. 3) pads to 512


@torch.compiler.disable
def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    padding_mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Exact softmax attention, FlashAttention-2 style on the Triton backend.

    q: `[B, Nq, H, D]`, k/v: `[B, Nk, H, D]` (Nk may differ: cross-attention). fp16/bf16/fp32 in, fp32
    accumulation, output in q's dtype. `scale` defaults to D^-1/2. `padding_mask`: `[B, Nk]` bool, True = real
    key. Causal with Nq != Nk is bottom-right aligned (query i sees key j iff j <= i + Nk - Nq). A query with no
    visible key outputs exactly 0 with zero gradients.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_bnhd(name, t)
    B, nq, H, D = q.shape
    nk = k.shape[1]
    if tuple(k.shape) != (B, nk, H, D) or tuple(v.shape) != (B, nk, H, D):
        raise ValueError(
            f"k and v must be [B, Nk, H, D] with q's B, H, D {(B, H, D)}; got {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if padding_mask is not None and tuple(padding_mask.shape) != (B, nk):
        raise ValueError(f"padding_mask must be [B, Nk] = {(B, nk)}; got {tuple(padding_mask.shape)}")
    if resolve_backend(backend, q) == "torch":
        return attention_reference(q, k, v, causal=causal, scale=scale, padding_mask=padding_mask)
    if q.dtype not in _DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"triton flash_attention takes q, k, v of one dtype in {_DTYPES}; got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if D > MAX_HEAD_DIM:
        raise ValueError(f"head_dim {D} > {MAX_HEAD_DIM} is not supported by the Triton kernel; use backend='torch'")
    from flurka.ops.flash.core import attention_core

    sm_scale = D**-0.5 if scale is None else float(scale)
    pad = None
    if padding_mask is not None:
        pad = padding_mask.to(device=q.device, dtype=torch.int8).contiguous()
    if nq == 0 or nk == 0 or B * H == 0:
        # empty problem: zeros, still connected to the graph so backward gives zero grads
        return q * 0.0 + (k.sum() + v.sum()) * 0.0
    return attention_core(q, k, v, causal=causal, scale=sm_scale, pad=pad)
