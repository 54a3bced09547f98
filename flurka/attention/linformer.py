"""Linformer (Wang et al., 2020): learned projections E, F ∈ R^{d_k×N} of keys and values along the sequence.

softmax(Q (E K)ᵀ/√d) (F V): attention over d_k rows instead of N. E and F mix all positions, so Linformer is
non-causal (linformer #4) and needs a fixed maximum length; shorter inputs use the first n columns.
`SequenceDownsampling` is shared with FLuRKA, which applies it to the input X before the K/V projections.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention.base import Attention


class SequenceDownsampling(nn.Module):
    """E (and F unless share_kv) of shape [d_k, max_len], or [H, d_k, max_len] when not shared across heads."""

    def __init__(self, downsample_len: int, max_len: int, *, n_heads: int, share_heads: bool, share_kv: bool):
        super().__init__()
        if downsample_len <= 0:
            raise ValueError(f"downsample_len must be positive; got {downsample_len}")
        shape = (downsample_len, max_len) if share_heads else (n_heads, downsample_len, max_len)
        # std 1/√N keeps each downsampled row at the scale of one token (a sum over N tokens)
        self.E = nn.Parameter(torch.randn(shape) / max_len**0.5)
        self.F = None if share_kv else nn.Parameter(torch.randn(shape) / max_len**0.5)
        self.share_heads, self.downsample_len = share_heads, downsample_len

    def matrix(self, which: str, n: int) -> torch.Tensor:
        """E ('k') or F ('v') restricted to the first n positions."""
        M = self.E if which == "k" or self.F is None else self.F
        return M[..., :n]

    def forward(self, t: torch.Tensor, keep: torch.Tensor | None, which: str) -> torch.Tensor:
        """Downsample t ([B, N, d] or [B, N, H, D]) along N; padded rows (keep False) contribute nothing."""
        if keep is not None:
            t = t * keep.view(*keep.shape, *([1] * (t.dim() - 2))).to(t.dtype)
        M = self.matrix(which, t.shape[1]).to(t.dtype)
        if self.share_heads:
            return torch.einsum("kn,bn...->bk...", M, t)
        return torch.einsum("hkn,bnhd->bkhd", M, t)

    def row_sums(self, which: str, n: int, keep: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Σ_n E[k, n] over kept positions, [B, d_k]: what a projection bias becomes after downsampling."""
        M = self.matrix(which, n)
        if keep is None:
            return M.sum(-1).expand(batch, -1)
        return keep.to(M.dtype) @ M.T


class LinformerAttention(Attention):
    name = "linformer"
    supports_causal = False
    needs_fixed_length = True
    supports_rope = False

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        downsample_len: int = 64,
        share_heads: bool = True,
        share_kv: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(d_model, n_heads, **kwargs)
        self.downsample = SequenceDownsampling(
            downsample_len, self.max_len, n_heads=n_heads, share_heads=share_heads, share_kv=share_kv
        )

    def attend(self, q, k, v, *, padding_mask):
        # In the inputs' dtype (the GEMMs accumulate in fp32 either way), then SDPA over the d_k rows: casting to
        # fp32 first, as this did, ran the bf16 benchmarks' einsums in fp32 without tensor cores (issue 15).
        # Padding is already out of E K and F V, so the attention itself takes no mask.
        k_low = self.downsample(k, padding_mask, "k")
        v_low = self.downsample(v, padding_mask, "v")
        out = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k_low.transpose(1, 2), v_low.transpose(1, 2)
        )
        return out.transpose(1, 2)

    def flops(self, n, d_model=None, n_heads=None):
        d, k = d_model or self.d_model, self.downsample.downsample_len
        return self.projection_flops(n, d) + 2 * 2 * k * n * d + 2 * 2 * n * k * d
