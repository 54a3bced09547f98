"""Chunked linear attention in plain PyTorch (Lightning Attention-2's left/right product split).

This is `backend="torch"`: the path that trains on CPU, so it supports autograd and every option, and it never
builds an N×N matrix. Causal, with chunks of C tokens:

- intra-chunk ("left product"): `[(Q_c K_cᵀ) ⊙ M] V_c` with `M_ij = λ^{i−j}` for i ≥ j inside the chunk;
- inter-chunk ("right product"): `(Q_c ⊙ λ^{i+1}) S_c`, where `S_c` is the running state entering chunk c;
- state scan: `S_{c+1} = λ^{L_c} S_c + (K_c ⊙ λ^{L_c−1−j})ᵀ V_c`.

Time O(N·C·D + N·D²), memory O(N·C + (N/C)·D²) per head. The normaliser is an extra ones column of V.
Non-causal needs no chunking: the state `Kᵀ[V, 1]` is one matmul and the output another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flurka.ops._backend import without_autocast
from flurka.ops.linear._common import DEFAULT_EPS, augment_values, check_args, split_output


def linear_attention_chunked(
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
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as `reference.linear_attention_parallel`, without the O(N²) memory. The math is fp32 (fp64
    for fp64 inputs) under autocast too, as on the Triton path; the output comes back in q's dtype."""
    with without_autocast(q):
        return _chunked(q, k, v, causal, decay, normalize, scale, initial_state, output_final_state, eps, chunk_size)


def _chunked(q, k, v, causal, decay, normalize, scale, initial_state, output_final_state, eps, chunk_size):
    a = check_args(q, k, v, causal=causal, decay=decay, normalize=normalize, scale=scale, initial_state=initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1; got {chunk_size}")
    dt = a.compute_dtype
    qh = q.to(dt).transpose(1, 2) * a.scale  # [B, H, Nq, Dk]
    kh = k.to(dt).transpose(1, 2)
    vh = augment_values(v.to(dt), normalize).transpose(1, 2)  # [B, H, Nk, Dv(+1)]

    if not causal:
        state = kh.transpose(-1, -2) @ vh
        o = split_output(qh @ state, normalize, eps).transpose(1, 2).to(q.dtype)
        return o, (state if output_final_state else None)

    B, H, N = a.B, a.H, a.Nq
    C = chunk_size
    state = qh.new_zeros((B, H, a.Dk, a.state_cols))
    if initial_state is not None:
        state = state + initial_state.to(dt)
    if N == 0:
        o = q.new_zeros((B, 0, H, a.Dv))
        return o, (state if output_final_state else None)

    nC = (N + C - 1) // C
    pad = nC * C - N
    if pad:
        # Zero keys/values add nothing to any state; padded queries are cut off below.
        qh, kh, vh = (F.pad(t, (0, 0, 0, pad)) for t in (qh, kh, vh))
    Qc = qh.reshape(B, H, nC, C, -1)
    Kc = kh.reshape(B, H, nC, C, -1)
    Vc = vh.reshape(B, H, nC, C, -1)

    log_lam = torch.zeros(H, dtype=dt, device=q.device) if decay is None else decay.to(dt).log()  # [H]
    i = torch.arange(C, device=q.device)
    diff = i[:, None] - i[None, :]
    M = torch.exp(diff.clamp(min=0).to(dt)[None] * log_lam[:, None, None]) * (diff >= 0)  # [H, C, C]
    lengths = torch.full((nC,), C, device=q.device)
    lengths[-1] = N - (nC - 1) * C
    # λ^{L_c − 1 − j} for real keys; padded keys get weight 0 (exponent clamped so no inf·0 appears).
    k_exp = (lengths[:, None] - 1 - i[None, :]).clamp(min=0).to(dt)  # [nC, C]
    k_decay = torch.exp(k_exp[None] * log_lam[:, None, None]) * (i[None, :] < lengths[:, None])  # [H, nC, C]
    q_decay = torch.exp((i + 1).to(dt)[None] * log_lam[:, None])  # [H, C]
    chunk_decay = torch.exp(lengths.to(dt)[None] * log_lam[:, None])  # [H, nC]

    o_intra = ((Qc @ Kc.transpose(-1, -2)) * M[None, :, None]) @ Vc  # [B, H, nC, C, Dv']
    delta = (Kc * k_decay[None, ..., None]).transpose(-1, -2) @ Vc  # [B, H, nC, Dk, Dv']

    starts = []
    for c in range(nC):
        starts.append(state)
        state = chunk_decay[None, :, c, None, None] * state + delta[:, :, c]
    S = torch.stack(starts, dim=2)  # [B, H, nC, Dk, Dv'] — the state entering each chunk
    o_inter = (Qc * q_decay[None, :, None, :, None]) @ S
    o_aug = (o_intra + o_inter).reshape(B, H, nC * C, -1)[:, :, :N]
    o = split_output(o_aug, normalize, eps).transpose(1, 2).to(q.dtype)
    return o, (state if output_final_state else None)
