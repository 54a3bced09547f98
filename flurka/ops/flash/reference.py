"""Plain-PyTorch softmax attention: the truth the Triton kernel is checked against.

Layout `[B, N, H, D]`. Computed in fp32 (fp64 stays fp64), returned in the input dtype. A query row that sees no
key (all keys padded, or a causal row before the first key when Nq > Nk) outputs exactly 0 with zero gradients,
rather than the NaN a plain `softmax` over an all-`-inf` row would give.
"""

from __future__ import annotations

import torch

from flurka.ops._backend import check_bnhd, without_autocast


def visible_mask(
    nq: int,
    nk: int,
    *,
    causal: bool,
    padding_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Bool mask broadcastable to `[B, H, Nq, Nk]` (True = attend), or None when every key is visible.

    Causal with Nq != Nk is bottom-right aligned: query i sees key j iff j <= i + (Nk - Nq), so the last query
    always sees every key (the decoding convention of FlashAttention-2 and SDPA's `causal_lower_right`).
    """
    mask = None
    if causal:
        i = torch.arange(nq, device=device)[:, None]
        j = torch.arange(nk, device=device)[None, :]
        mask = (j <= i + (nk - nq))[None, None]
    if padding_mask is not None:
        pad = padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
        mask = pad if mask is None else mask & pad
    return mask


def masked_softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """softmax(q kᵀ·scale, masked) v on `[B, H, N, D]` tensors; rows with no visible key give 0.

    The masked logits are filled with -inf and empty rows are replaced by a finite row before the softmax so
    that neither the output nor the gradient sees a NaN; the probabilities of those rows are then zeroed. In the
    inputs' dtype, under autocast too (the references pass fp32 or fp64: the truth must not drop to bf16).
    """
    with without_autocast(q):
        s = torch.matmul(q, k.transpose(-1, -2)) * scale
        if mask is None:
            return torch.matmul(torch.softmax(s, dim=-1), v)
        s = s.masked_fill(~mask, float("-inf"))
        empty = ~mask.any(dim=-1, keepdim=True)
        s = s.masked_fill(empty, 0.0)
        p = torch.softmax(s, dim=-1).masked_fill(empty, 0.0)
        return torch.matmul(p, v)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale) v with optional causal (bottom-right) and key-padding masks.

    q: `[B, Nq, H, D]`; k, v: `[B, Nk, H, D]`; padding_mask: `[B, Nk]` bool, True = real key.
    scale defaults to D^-1/2. Returns `[B, Nq, H, D]` in q's dtype.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_bnhd(name, t)
    B, nq, H, D = q.shape
    nk = k.shape[1]
    if k.shape != (B, nk, H, D) or v.shape[:3] != (B, nk, H):
        raise ValueError(
            f"k, v must be [B, Nk, H, D] matching q {tuple(q.shape)}; got {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if padding_mask is not None and tuple(padding_mask.shape) != (B, nk):
        raise ValueError(f"padding_mask must be [B, Nk] = {(B, nk)}; got {tuple(padding_mask.shape)}")
    scale = D**-0.5 if scale is None else float(scale)
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    qh, kh, vh = (t.to(compute).transpose(1, 2) for t in (q, k, v))
    mask = visible_mask(nq, nk, causal=causal, padding_mask=padding_mask, device=q.device)
    out = masked_softmax_attention(qh, kh, vh, mask, scale)
    return out.transpose(1, 2).to(q.dtype)
