"""The previous causal kernel attention (log-space features, running-max stabiliser, a Python loop over
chunks), kept as the fp64 reference that `flurka.attention.causal_kernel.causal_kernel_attention` is tested
against. Not on any training path: it builds [B, C, L, L, H] fp32 temporaries and loops over chunks in Python.
Unlike the fixed key shift of the new FAVOR+ path it stays exact at any input scale (see the tests).

What it computes (its original description):

    Causal kernel attention with log-space key features: causal-safe stabilisation, and chunk summaries.

    Two things need this beyond the plain causal linear-attention op (`flurka.ops.linear`):

    1. FAVOR+ keys are exp(·) of unbounded exponents. A stabiliser shared by all keys (a max over the sequence)
       cancels mathematically, but lets a large *future* key underflow every past feature — a causal leak in
       floating point. Here each query t uses the running max M_t over the keys it can see: past keys are
       scaled by exp(e_j − M_t) ≤ 1 and the state is rescaled as M grows, exactly like the online softmax. The
       result equals num/(den + eps) of the unstabilised features exactly, except that eps is capped at 1e-6 of
       the query's largest term, so very large inputs never collapse to 0; a query that sees only padding gives 0.
       Queries are shifted against the largest key feature they can see (`_query_shift`), so the largest term of
       every query is exp(0) and never underflows.

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


def _exclusive_cummax(t: torch.Tensor, dim: int) -> torch.Tensor:
    """max over the entries strictly before each index along `dim` (−inf for the first)."""
    running = torch.cummax(t, dim=dim).values
    first = torch.full_like(running.narrow(dim, 0, 1), NEG_INF)
    return torch.cat([first, running.narrow(dim, 0, running.shape[dim] - 1)], dim=dim)


def _query_shift(q_log: torch.Tensor, visible_max: torch.Tensor, m_t: torch.Tensor) -> torch.Tensor:
    """a_t such that exp(q_log − a_t) · exp(k_log − M_t) has largest term exactly 1 for query t.

    Stabilising queries by their own max and keys by M_t separately fails when the query's large features
    are not the keys' large ones (large inputs): every product then underflows and the output is exactly 0.
    With R_t,m the largest key log-feature m query t can see, a_t = max_m(q_log_t,m + R_t,m) − M_t puts the
    largest product at exp(0) = 1. It cancels between numerator and denominator (so it is detached), and uses
    only keys t can see, so it is causal. −inf rows (a query that sees only padding) get a_t = 0.
    """
    c_t = (q_log + visible_max).amax(dim=-1)
    safe = lambda t: torch.where(torch.isneginf(t), torch.zeros_like(t), t)  # noqa: E731
    return (safe(c_t) - safe(m_t)).detach()


def causal_kernel_attention_reference(
    q_logfeat: torch.Tensor,
    k_logfeat: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int = 64,
    summary_logfeat: torch.Tensor | None = None,
    summary_v: torch.Tensor | None = None,
    key_keep: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """The previous implementation, kept as the fp64 test reference: normalised causal kernel attention on
    log-features, stabilised per query; returns [B, N, H, Dv] in fp32 (or fp64).

    Queries and keys come as log-features (φ = exp of them), so both can be stabilised against each other.

    `key_keep` ([B, N] bool) drops padded keys (and their own summary rows are then the caller's business).
    """
    B, N, H, M = q_logfeat.shape
    dtype = torch.promote_types(q_logfeat.dtype, torch.float32)
    if N == 0:  # an empty sequence has an empty output (there are no chunks to stack)
        return v.new_zeros(B, 0, H, v.shape[-1], dtype=dtype)
    n_chunks = math.ceil(N / chunk_size)
    q_log = _chunk(q_logfeat.to(dtype), n_chunks, chunk_size, 0.0)  # [B, C, L, H, M]
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
    S = torch.zeros(B, H, M, sv.shape[-1], dtype=dtype, device=q_log.device)
    z = torch.zeros(B, H, M, dtype=dtype, device=q_log.device)
    m_prev = torch.full((B, H), NEG_INF, dtype=dtype, device=q_log.device)
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
    # per feature: the largest key log-feature query t can see (own chunk up to t, earlier chunks' summaries)
    visible_max = torch.maximum(
        torch.cummax(klog, dim=2).values, _exclusive_cummax(slog.amax(dim=2), dim=1)[:, :, None]
    ).detach()
    # exponents above 80 would overflow fp32; such a feature's key factor is below exp(−80) of the largest
    shift = _query_shift(q_log, visible_max, m_t)
    q = torch.exp((q_log - shift[..., None]).clamp(max=80.0))
    # intra scores A[t, j] = Σ_m q_t,m exp(klog_j,m − M_t), for j ≤ t in the chunk
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q_log.device).tril()
    # exp(kmax_j − M_t) through _exp_diff: a query that sees only padding has M_t = −inf, and a plain
    # difference would be −inf − (−inf) = NaN in the output and in every gradient
    # (future keys j > t are set to −inf first: exp of their possibly huge excess would be inf, and inf × 0 in
    # the backward of a later mask is NaN)
    k_visible = kmax[:, :, None, :, :].masked_fill(~causal[None, None, :, :, None], NEG_INF)
    scale_tj = _exp_diff(k_visible, m_t[:, :, :, None, :])  # [B, C, Lt, Lj, H]
    A = torch.einsum("bcthm,bcjhm->bctjh", q, k_hat) * scale_tj
    num = torch.einsum("bctjh,bcjhd->bcthd", A, vc)
    den = A.sum(dim=3)  # [B, C, L, H]
    inter = _exp_diff(m_before[:, :, None, :], m_t)  # [B, C, L, H]
    num = num + torch.einsum("bcthm,bchmd->bcthd", q, S_all) * inter[..., None]
    den = den + torch.einsum("bcthm,bchm->bcth", q, z_all) * inter
    # An eps purely in unstabilised units would dwarf the denominator whenever every key exponent is very
    # negative (large inputs: exponents of −140 and below), and the output would be exactly 0. M_t and a_t
    # depend only on keys t can see, so this stays causal.
    # In unstabilised units eps is eps·exp(−L_t), L_t = M_t + a_t the log of query t's largest term: used as
    # is while L_t ≥ 0 (the usual case, equal to the plain linear-attention normaliser), capped at eps beyond.
    log_top = (m_t + shift).masked_fill(torch.isneginf(m_t), 0.0)
    out = num / (den + eps * torch.exp(-log_top.clamp(min=0.0)))[..., None]
    return out.reshape(B, n_chunks * chunk_size, H, -1)[:, :N]
