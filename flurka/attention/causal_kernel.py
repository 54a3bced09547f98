"""Causal kernel attention with log-space key features: causal-safe stabilisation, and chunk summaries.

Two things need this beyond the plain causal linear-attention op (`flurka.ops.linear`):

1. FAVOR+ keys are exp(·) of unbounded exponents. A stabiliser shared by all keys (a max over the sequence)
   cancels mathematically, but lets a large *future* key underflow every past feature — a causal leak in
   floating point. Here each query t uses the running max M_t over the keys it can see: past keys are
   scaled by exp(e_j − M_t) ≤ 1 and the state is rescaled as M grows, exactly like the online softmax. The
   result equals num/(den + eps) of the unstabilised features exactly (eps is rescaled with them).

2. Causal FLuRKA lets a query see, besides the keys of its own chunk, a few *summary rows* per completed past
   chunk (a learned downsampling of that chunk). With summaries = the chunks' own keys this is plain causal
   kernel attention.

Query t in chunk c = t // chunk_size attends to keys j of chunk c with j ≤ t, and to the summary rows of every
chunk c' < c. Shapes: queries [B, N, H, M] (non-negative features), key log-features [B, N, H, M], values
[B, N, H, Dv], summaries [B, C, R, H, M] and [B, C, R, H, Dv] with C = ceil(N / chunk_size).
Cost: O(N·chunk·(M + Dv) + C·R·M·Dv) per head; memory holds one [M, Dv] state per chunk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def _exp_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """exp(a − b) with exp(−inf − anything) = 0 (never NaN from −inf − (−inf))."""
    return torch.where(torch.isneginf(a), torch.zeros_like(a), torch.exp(a - torch.where(torch.isneginf(b), 0.0, b)))


def _chunk(t: torch.Tensor, n_chunks: int, chunk: int, fill: float) -> torch.Tensor:
    pad = n_chunks * chunk - t.shape[1]
    if pad:
        t = F.pad(t, (0, 0, 0, 0, 0, pad), value=fill)
    return t.view(t.shape[0], n_chunks, chunk, *t.shape[2:])


def causal_kernel_attention(
    q_feat: torch.Tensor,
    k_logfeat: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int = 64,
    summary_logfeat: torch.Tensor | None = None,
    summary_v: torch.Tensor | None = None,
    key_keep: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Normalised causal kernel attention, stabilised per query; returns [B, N, H, Dv] in fp32 (or fp64).

    `key_keep` ([B, N] bool) drops padded keys (and their own summary rows are then the caller's business).
    """
    B, N, H, M = q_feat.shape
    dtype = torch.promote_types(q_feat.dtype, torch.float32)
    n_chunks = math.ceil(N / chunk_size)
    q = _chunk(q_feat.to(dtype), n_chunks, chunk_size, 0.0)  # [B, C, L, H, M]
    klog = k_logfeat.to(dtype)
    if key_keep is not None:
        klog = klog.masked_fill(~key_keep[:, :, None, None], NEG_INF)
    klog = _chunk(klog, n_chunks, chunk_size, NEG_INF)
    vc = _chunk(v.to(dtype), n_chunks, chunk_size, 0.0)  # [B, C, L, H, Dv]
    if summary_logfeat is None:
        slog, sv = klog, vc
    else:
        if summary_v is None or summary_logfeat.shape[1] != n_chunks:
            raise ValueError(f"summaries must be given for all {n_chunks} chunks, with their values")
        slog, sv = summary_logfeat.to(dtype), summary_v.to(dtype)

    # ---- intra-chunk: exact causal kernel attention, each query stabilised by the running max it can see
    kmax = klog.amax(dim=-1)  # [B, C, L, H], per-token max exponent (−inf for padding)
    run_max = torch.cummax(kmax, dim=2).values  # causal within the chunk
    k_hat = _exp_diff(klog, kmax.unsqueeze(-1))  # ≤ 1

    # ---- inter-chunk: states of the summaries of all earlier chunks, each relative to its own max
    smax = slog.amax(dim=(2, 4))  # [B, C, H]
    states, norms, prev_max = [], [], []
    S = torch.zeros(B, H, M, sv.shape[-1], dtype=dtype, device=q.device)
    z = torch.zeros(B, H, M, dtype=dtype, device=q.device)
    m_prev = torch.full((B, H), NEG_INF, dtype=dtype, device=q.device)
    for c in range(n_chunks):
        states.append(S)
        norms.append(z)
        prev_max.append(m_prev)
        m_new = torch.maximum(m_prev, smax[:, c])
        decay = _exp_diff(m_prev, m_new)[..., None]
        w = _exp_diff(slog[:, c], m_new[:, None, :, None])  # [B, R, H, M]
        S = S * decay[..., None] + torch.einsum("brhm,brhd->bhmd", w, sv[:, c])
        z = z * decay + w.sum(dim=1)
        m_prev = m_new
    S_all = torch.stack(states, dim=1)  # [B, C, H, M, Dv]
    z_all = torch.stack(norms, dim=1)  # [B, C, H, M]
    m_before = torch.stack(prev_max, dim=1)  # [B, C, H]

    m_t = torch.maximum(run_max, m_before[:, :, None, :])  # [B, C, L, H]: the max query t can see
    # intra scores A[t, j] = Σ_m q_t,m exp(klog_j,m − M_t), for j ≤ t in the chunk
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    scale_tj = kmax[:, :, None, :, :] - m_t[:, :, :, None, :]  # [B, C, Lt, Lj, H]
    scale_tj = scale_tj.masked_fill(~causal[None, None, :, :, None], NEG_INF)
    A = torch.einsum("bcthm,bcjhm->bctjh", q, k_hat) * _exp_diff(scale_tj, torch.zeros_like(scale_tj))
    num = torch.einsum("bctjh,bcjhd->bcthd", A, vc)
    den = A.sum(dim=3)  # [B, C, L, H]
    inter = _exp_diff(m_before[:, :, None, :], m_t)  # [B, C, L, H]
    num = num + torch.einsum("bcthm,bchmd->bcthd", q, S_all) * inter[..., None]
    den = den + torch.einsum("bcthm,bchm->bcth", q, z_all) * inter
    # eps belongs to the unstabilised denominator: rescale it by exp(−M_t) too (0 where M_t is huge)
    eps_scaled = torch.exp(math.log(eps) - m_t.clamp(min=-80.0)) if eps > 0 else 0.0
    out = num / (den + eps_scaled)[..., None]
    return out.reshape(B, n_chunks * chunk_size, H, -1)[:, :N]
