"""Exact softmax attention: `full` (PyTorch SDPA, or explicit math) and `flash` (our Triton kernel)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from flurka.attention.base import Attention
from flurka.attention.positional import alibi_bias
from flurka.ops._backend import resolve_backend, without_autocast

log = logging.getLogger(__name__)


def visibility_mask(
    n_q: int, n_k: int, *, causal: bool, padding_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """[B or 1, 1, Nq, Nk] bool, True = query may see key; None when everything is visible.

    Causal masks are bottom-right aligned when Nq ≠ Nk (query i sees key j iff j ≤ i + Nk − Nq), as in
    FlashAttention ≥ 2.1 and our ops.
    """
    mask = None
    if causal:
        i = torch.arange(n_q, device=device)[:, None] + (n_k - n_q)
        mask = (torch.arange(n_k, device=device)[None, :] <= i)[None, None]
    if padding_mask is not None:
        pad = padding_mask[:, None, None, :]
        mask = pad if mask is None else mask & pad
    return mask


class FullAttention(Attention):
    """softmax(QKᵀ/√d)V. `impl="sdpa"` uses PyTorch's fused kernels; `impl="math"` spells the math out."""

    name = "full"
    supports_alibi = True

    def __init__(self, d_model: int, n_heads: int, *, impl: str = "sdpa", **kwargs) -> None:
        super().__init__(d_model, n_heads, **kwargs)
        if impl not in ("sdpa", "math"):
            raise ValueError(f"full attention impl must be 'sdpa' or 'math'; got {impl!r}")
        self.impl = impl

    def attend(self, q, k, v, *, padding_mask):
        B, n_q, _, D = q.shape
        n_k = k.shape[1]
        if (
            self.impl == "sdpa"
            and padding_mask is None
            and self.positional != "alibi"
            and (not self.causal or n_q == n_k)
        ):
            # no mask tensor: SDPA's flash/cuDNN backends (which refuse an explicit mask) can run, and causal ones
            # skip the blocks above the diagonal. Square causal is where top-left (SDPA) = bottom-right (ours).
            qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
            return F.scaled_dot_product_attention(qh, kh, vh, is_causal=self.causal).transpose(1, 2)
        mask = visibility_mask(n_q, n_k, causal=self.causal, padding_mask=padding_mask, device=q.device)
        empty_rows = None
        if mask is not None:
            # A query that sees no key (e.g. left padding under a causal mask) would give softmax(−inf) = NaN;
            # let it see every key for the arithmetic, then zero its output, so values and grads stay finite.
            mask = mask.expand(B, 1, n_q, n_k)
            empty_rows = ~mask.any(dim=-1, keepdim=True)  # [B, 1, Nq, 1]
            mask = mask | empty_rows
        bias = None
        if self.positional == "alibi":
            bias = alibi_bias(self.alibi_slopes, n_q, n_k, causal=self.causal)[None].to(torch.float32)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # SDPA wants [B, H, N, D]
        if self.impl == "sdpa":
            attn_mask = mask
            if bias is not None:
                neg = torch.finfo(q.dtype).min
                attn_mask = bias.to(q.dtype) if mask is None else bias.to(q.dtype).masked_fill(~mask, neg)
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask)
        else:
            ct = torch.promote_types(q.dtype, torch.float32)  # fp32 math for half inputs, fp64 stays fp64
            with without_autocast(q):  # under autocast too: the einsums would run in bf16
                scores = torch.einsum("bhid,bhjd->bhij", qh.to(ct), kh.to(ct)) / D**0.5
                if bias is not None:
                    scores = scores + bias
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                out = torch.einsum("bhij,bhjd->bhid", scores.softmax(dim=-1), vh.to(ct)).to(q.dtype)
        if empty_rows is not None:
            out = out.masked_fill(empty_rows, 0.0)
        return out.transpose(1, 2)

    def flops(self, n, d_model=None, n_heads=None):
        d = d_model or self.d_model
        core = 2 * 2 * n * n * d  # QKᵀ and AV
        return self.projection_flops(n, d) + (core // 2 if self.causal else core)


class FlashAttention(Attention):
    """The same function as `full`, computed by our Triton FlashAttention kernel (`flurka.ops.flash`).

    On a CUDA device it runs the kernel; elsewhere (`backend="auto"` on CPU) it runs the op's PyTorch
    reference and says so once in the log.
    """

    name = "flash"
    _told_fallback = False

    def attend(self, q, k, v, *, padding_mask):
        from flurka.ops.flash import flash_attention

        if resolve_backend(self.backend, q) == "torch" and not FlashAttention._told_fallback:
            log.warning("flash attention: no CUDA device here, running the PyTorch reference of the kernel")
            FlashAttention._told_fallback = True
        return flash_attention(q, k, v, causal=self.causal, padding_mask=padding_mask, backend=self.backend)

    def flops(self, n, d_model=None, n_heads=None):
        d = d_model or self.d_model
        core = 2 * 2 * n * n * d
        return self.projection_flops(n, d) + (core // 2 if self.causal else core)
