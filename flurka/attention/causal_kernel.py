"""Causal kernel attention with chunk summaries, on the causal linear-attention op (`flurka.ops.linear`).

Causal FLuRKA lets query t of chunk c = t // chunk_size see (1) the keys j ≤ t of its own chunk, exactly,
through the kernel φ, and (2) the *summary rows* of every completed earlier chunk c' < c (a learned
downsampling of that chunk, feature-mapped like keys). With summaries = the chunks' own keys this is plain
causal kernel attention. Both parts are one call of the linear-attention op:

1. Fold the chunks into the batch: [B, N, H, ·] → pad N to C·L → [B·C, L, H, ·]. Causal attention inside each
   folded row is part (1).
2. Per chunk, the summary state S_c = Σ_r φ(s_c,r) ⊗ [v_c,r, 1] ([B, C, H, M, Dv + 1], the normaliser as the
   last column, the op's state layout). Its exclusive prefix sum over c is the state every query of chunk c
   starts from: part (2), passed as the op's `initial_state`.
3. One `linear_attention(φq, φk, v, causal=True, initial_state=…)` gives every output; unfold and cut to N.

On CUDA the op is the Triton kernel (its backward returns the initial state's gradient, so the summaries train);
elsewhere the chunked PyTorch path. Without summaries (the causal Performer) there is nothing to fold: one
causal call over the whole sequence.

Features come in already mapped (non-negative) and are used as they are: elu+1 is finite everywhere, so
FLuRKA-RNN needs no stabiliser; causal FAVOR+ (`flurka.ops.features.favor_plus_causal_features`) shifts its
keys by a data-independent constant, so that no key (in particular no future key) changes how another rounds,
and its queries by their own max, a per-query factor that cancels between numerator and denominator. `eps`
may then be given per query, in the scaled units, so that the normaliser keeps its meaning
(`flurka.attention.kernel.favor_causal_eps`).

The previous log-space implementation is `causal_kernel_reference.causal_kernel_attention_reference`, the fp64
reference of the tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from flurka.ops._backend import without_autocast
from flurka.ops.linear import linear_attention

#: the smallest denominator divided by with a per-query `query_scale` (see `_attend`)
DENOMINATOR_FLOOR = 1e-30


def fold_chunks(t: torch.Tensor, chunk: int, fill: float = 0.0) -> torch.Tensor:
    """[B, N, ...] → [B·C, chunk, ...] with C = ceil(N / chunk), the tail padded with `fill`."""
    pad = -t.shape[1] % chunk
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad), value=fill)
    return t.reshape(-1, chunk, *t.shape[2:])


def unfold_chunks(t: torch.Tensor, batch: int, n: int) -> torch.Tensor:
    """Inverse of `fold_chunks`: [B·C, chunk, ...] → [B, N, ...] (the padded tail cut off)."""
    return t.reshape(batch, -1, *t.shape[2:])[:, :n]


def chunk_entry_states(summary_phi: torch.Tensor, summary_v: torch.Tensor) -> torch.Tensor:
    """The state each chunk starts from: Σ over earlier chunks of Σ_r φ(s_r) ⊗ [v_r, 1] → [B·C, H, M, Dv + 1].

    An exclusive prefix sum, written as a cumulative sum shifted by one chunk (not cumsum − itself, which
    would cancel in floating point); the last chunk's summary reaches no query, so it is never summed.
    """
    dtype = torch.promote_types(summary_phi.dtype, torch.float32)
    with without_autocast(summary_phi):  # fp32 states under bf16 autocast too (einsum would run in bf16)
        sv = summary_v.to(dtype)
        sv = torch.cat([sv, torch.ones_like(sv[..., :1])], dim=-1)  # the normaliser z: the state of a ones column
        per_chunk = torch.einsum("bcrhm,bcrhd->bchmd", summary_phi.to(dtype), sv)  # [B, C, H, M, Dv + 1]
        before = torch.cumsum(per_chunk[:, :-1], dim=1)
        entry = torch.cat([torch.zeros_like(per_chunk[:, :1]), before], dim=1)
    return entry.flatten(0, 1)


def causal_kernel_attention(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int = 64,
    summary_phi: torch.Tensor | None = None,
    summary_v: torch.Tensor | None = None,
    key_keep: torch.Tensor | None = None,
    eps: float = 1e-6,
    query_scale: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Normalised causal kernel attention with optional chunk summaries; returns [B, N, H, Dv] in v.dtype.

    phi_q, phi_k: [B, N, H, M] non-negative features; v: [B, N, H, Dv]; summaries [B, C, R, H, M] and
    [B, C, R, H, Dv] with C = ceil(N / chunk_size). `key_keep` ([B, N] bool, True = real token) drops padded
    keys (their features and values become 0); summaries are the caller's business.

    Normaliser: without `query_scale`, the op's plain den + eps. With it ([B, N, H]: phi_q has been
    multiplied by it, a per-query stabiliser), den + eps·min(query_scale, den) in the scaled units, i.e.
    den + eps·min(1, den) in the unscaled ones: the plain eps while the denominator is ≥ 1, a relative one
    (a factor 1 + eps) below it, so that a denominator of tiny products is never swamped by eps; and at least
    `DENOMINATOR_FLOOR` in the scaled units. A query that sees no key (den = 0, hence num = 0) gives 0.
    """
    B, N, H, _ = phi_q.shape
    if N == 0:  # an empty sequence has an empty output (and nothing to fold)
        return v.new_zeros(B, 0, H, v.shape[-1])
    if key_keep is not None:
        keep = key_keep[:, :, None, None]
        phi_k, v = phi_k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)
    phi_q, phi_k = phi_q.to(v.dtype), phi_k.to(v.dtype)  # the op takes one dtype and computes in fp32 (or fp64)
    if summary_phi is None:
        return _attend(phi_q, phi_k, v, None, eps, query_scale, backend)

    n_chunks = math.ceil(N / chunk_size)
    if summary_v is None or summary_phi.shape[1] != n_chunks:
        raise ValueError(f"summaries must be given for all {n_chunks} chunks, with their values")
    s0 = chunk_entry_states(summary_phi, summary_v)
    # The padded tail of the last chunk: zero keys and values add nothing. Its queries are cut off, but their
    # 0/(0 + eps) must stay finite even for eps = 0, or the backward spreads NaN (as 0·NaN) into every key:
    # ones as their features see the chunk's first (real) key, or at worst give 0/1.
    fq = fold_chunks(phi_q, chunk_size, fill=1.0)
    fk, fv = fold_chunks(phi_k, chunk_size), fold_chunks(v, chunk_size)
    fscale = None if query_scale is None else fold_chunks(query_scale, chunk_size, fill=1.0)
    out = _attend(fq, fk, fv, s0, eps, fscale, backend)
    return unfold_chunks(out, B, N)


def _attend(
    phi_q: torch.Tensor,
    phi_k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None,
    eps: float,
    query_scale: torch.Tensor | None,
    backend: str,
) -> torch.Tensor:
    """One causal call of the op. The per-query normaliser does not fit the op's scalar eps, so then the op
    runs without its normaliser on [v, 1] (its last output column is the denominator) and divides here."""
    if query_scale is None:
        out, _ = linear_attention(phi_q, phi_k, v, causal=True, initial_state=initial_state, eps=eps, backend=backend)
        return out
    v_aug = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    o_aug, _ = linear_attention(
        phi_q, phi_k, v_aug, causal=True, normalize=False, initial_state=initial_state, backend=backend
    )
    o_aug = o_aug.to(torch.promote_types(o_aug.dtype, torch.float32))  # divide in fp32, as the op does
    num, den = o_aug[..., :-1], o_aug[..., -1]
    # eps·min(scale, den) is a size, not a path to train through (as the op's constant eps)
    guard = eps * torch.minimum(query_scale.to(den.dtype), den).detach()
    # The floor: den = 0 means num = 0 (every product is 0), so the output is 0, not NaN; and the backward's
    # 1/den stays ≤ 1/floor, which keeps inf (and then inf·0 = NaN at underflowed features) out of the gradients
    # when products sit near the bottom of the fp32/bf16 range (scaled queries' largest feature is ~1, so a
    # denominator below the floor means every product is below e^-69).
    safe = (den + guard).clamp(min=DENOMINATOR_FLOOR)
    return (num / safe[..., None]).to(v.dtype)
