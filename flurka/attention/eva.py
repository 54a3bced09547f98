"""EVA: Efficient attention via control variates (Zheng, Wang, Kong; ICLR 2023).

Each query attends *exactly* to the keys of its own chunk (the local window) and, for every other chunk c it
may see, to one summary "key" k̄_c carrying the value β_c: the randomized-attention (self-normalised
importance sampling) estimate of that chunk's softmax-weighted value under one random-feature sample ω_c,

    β_c = Σ_{j∈c} softmax_j(ω_c·k_j/√D − ‖k_j‖²/(2√D)) v_j,      ω_c ~ N(μ_c, I) in training, ω_c = μ_c in eval,

with the proposal mean μ_c = ½(MLP_q(mean of the chunk's queries) + MLP_k(mean of its keys)) and
k̄_c = MLP_k(mean of its keys). Local logits q·k/√D and summary logits q·k̄_c/√D share one softmax.
Causal: the local window is causal and only *earlier* chunks are summarised, so nothing leaks.

`eva_core` also takes precomputed summary rows per chunk (causal FLuRKA-EVA summarises each past chunk from a
few downsampled rows instead of all its tokens); with summaries = the chunk's own keys it is plain EVA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flurka.attention.base import Attention

NEG_INF = float("-inf")


def _pad_to(t: torch.Tensor, length: int, value: float = 0.0) -> torch.Tensor:
    pad = length - t.shape[1]
    if pad == 0:
        return t
    spec = [0, 0] * (t.dim() - 2) + [0, pad]
    return F.pad(t, spec, value=value)


def eva_core(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    chunk_size: int,
    mu_q: nn.Module,
    mu_k: nn.Module,
    sample: bool,
    key_keep: torch.Tensor | None = None,
    summary_k: torch.Tensor | None = None,
    summary_v: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EVA on [B, N, H, D] tensors (k, v may have another length than q when non-causal); returns q's dtype.

    Key chunks have `chunk_size` keys. With Nq == Nk, query i belongs to chunk i // chunk_size; otherwise
    (FLuRKA-EVA: Nk = the downsampled length) the queries are split into as many equal chunks as the keys.
    """
    B, Nq, H, D = q.shape
    Nk = k.shape[1]
    if causal and Nq != Nk:
        raise ValueError("causal EVA needs as many keys as queries")
    n_chunks = math.ceil(Nk / chunk_size)
    lq = chunk_size if Nq == Nk else math.ceil(Nq / n_chunks)
    dtype = torch.promote_types(q.dtype, torch.float32)
    scale = D**-0.5

    keep = torch.ones(B, Nk, dtype=torch.bool, device=q.device) if key_keep is None else key_keep
    qc = _pad_to(q.to(dtype), n_chunks * lq).view(B, n_chunks, lq, H, D)
    kc = _pad_to(k.to(dtype), n_chunks * chunk_size).view(B, n_chunks, chunk_size, H, D)
    vc = _pad_to(v.to(dtype), n_chunks * chunk_size).view(B, n_chunks, chunk_size, H, D)
    keep_c = _pad_to(keep, n_chunks * chunk_size, False).view(B, n_chunks, chunk_size)
    q_valid = (torch.arange(n_chunks * lq, device=q.device) < Nq).view(1, n_chunks, lq)
    if key_keep is not None and Nq == Nk:  # self-attention: padded positions are padded queries too
        q_valid = q_valid & keep_c

    # ---- local window: exact softmax logits inside the query's own chunk
    local = torch.einsum("bcihd,bcjhd->bchij", qc, kc) * scale  # [B, C, H, Lq, Lk]
    local_ok = keep_c[:, :, None, None, :]
    if causal:
        local_ok = local_ok & torch.ones(lq, chunk_size, dtype=torch.bool, device=q.device).tril()
    local = local.masked_fill(~local_ok, NEG_INF)

    # ---- one summary per chunk: k̄_c and β_c (from the chunk's keys, or from the given summary rows)
    if summary_k is None:
        sk, sv, s_keep = kc, vc, keep_c
    else:
        sk, sv = summary_k.to(dtype), summary_v.to(dtype)
        s_keep = torch.ones(sk.shape[:3], dtype=torch.bool, device=q.device)
    s_keepf = s_keep[..., None, None].to(dtype)
    counts = s_keepf.sum(dim=2).clamp(min=1.0)  # [B, C, 1, 1]
    k_mean = (sk * s_keepf).sum(dim=2) / counts  # [B, C, H, D]
    q_validf = q_valid[..., None, None].to(dtype)  # [B or 1, C, Lq, 1, 1]
    q_mean = (qc * q_validf).sum(dim=2) / q_validf.sum(dim=2).clamp(min=1.0)
    w_dtype = next(mu_k.parameters()).dtype  # the proposal MLPs run in the model's dtype, the rest in fp32+
    k_bar = mu_k(k_mean.to(w_dtype)).to(dtype)
    omega = 0.5 * (mu_q(q_mean.to(w_dtype)).to(dtype) + k_bar)
    if sample:
        omega = omega + torch.randn(omega.shape, generator=generator, device=omega.device, dtype=omega.dtype)
    rf_logits = (torch.einsum("bchd,bcjhd->bchj", omega, sk) - 0.5 * sk.pow(2).sum(-1).transpose(2, 3)) * scale
    rf_logits = rf_logits.masked_fill(~s_keep[:, :, None, :], NEG_INF)
    rf_weights = torch.nan_to_num(rf_logits.softmax(dim=-1))  # a chunk of padding only has no weight
    beta = torch.einsum("bchj,bcjhd->bchd", rf_weights, sv)  # [B, C, H, D]

    summary = torch.einsum("bcihd,bkhd->bchik", qc, k_bar) * scale  # [B, Cq, H, Lq, Ck]
    own = torch.arange(n_chunks, device=q.device)
    visible = own[None, :] < own[:, None] if causal else own[None, :] != own[:, None]  # [Cq, Ck]
    chunk_has_keys = s_keep.any(dim=2)  # [B, Ck]
    summary_ok = visible[None, :, None, None, :] & chunk_has_keys[:, None, None, None, :]
    summary = summary.masked_fill(~summary_ok, NEG_INF)

    # ---- one softmax over local keys and chunk summaries; rows that see nothing output 0
    logits = torch.cat([local, summary], dim=-1)
    empty = torch.isneginf(logits).all(dim=-1, keepdim=True)
    probs = logits.masked_fill(empty, 0.0).softmax(dim=-1).masked_fill(empty, 0.0)
    p_local, p_summary = probs.split([chunk_size, n_chunks], dim=-1)
    out = torch.einsum("bchij,bcjhd->bcihd", p_local, vc) + torch.einsum("bchik,bkhd->bcihd", p_summary, beta)
    return out.reshape(B, n_chunks * lq, H, D)[:, :Nq].to(q.dtype)


def proposal_mlp(head_dim: int) -> nn.Module:
    """EVA's adaptive proposal network: Linear + LayerNorm on a head's pooled vector (shared by heads)."""
    return nn.Sequential(nn.Linear(head_dim, head_dim), nn.LayerNorm(head_dim))


class EVAAttention(Attention):
    """EVA with a local window equal to one chunk of `chunk_size` keys, non-causal and causal."""

    name = "eva"

    def __init__(self, d_model: int, n_heads: int, *, chunk_size: int = 16, **kwargs) -> None:
        super().__init__(d_model, n_heads, **kwargs)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive; got {chunk_size}")
        self.chunk_size = chunk_size
        self.mu_q = proposal_mlp(self.head_dim)
        self.mu_k = proposal_mlp(self.head_dim)

    def kernel_attend(self, q, k, v, *, padding_mask, summary_kv=None):
        sk, sv = summary_kv if summary_kv is not None else (None, None)
        return eva_core(
            q,
            k,
            v,
            causal=self.causal,
            chunk_size=self.chunk_size,
            mu_q=self.mu_q,
            mu_k=self.mu_k,
            sample=self.training,
            key_keep=padding_mask,
            summary_k=sk,
            summary_v=sv,
        )

    def attend(self, q, k, v, *, padding_mask):
        return self.kernel_attend(q, k, v, padding_mask=padding_mask)

    def eva_core_flops(self, n_q: int, n_k: int, d: int, h: int) -> int:
        c = math.ceil(n_k / self.chunk_size)
        local = 2 * 2 * n_q * self.chunk_size * d // (2 if self.causal else 1)
        summaries = 2 * 2 * n_k * d + 2 * 2 * c * h * (d // h) ** 2  # β_c logits and sums; proposal MLPs
        summary_attn = 2 * 2 * n_q * c * d // (2 if self.causal else 1)
        return local + summaries + summary_attn

    def flops(self, n, d_model=None, n_heads=None):
        d, h = d_model or self.d_model, n_heads or self.n_heads
        return self.projection_flops(n, d) + self.eva_core_flops(n, n, d, h)
