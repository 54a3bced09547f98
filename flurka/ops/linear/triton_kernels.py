# ruff: noqa: SIM102
# (nested ifs keep constexpr branches apart from runtime ones)
"""Triton kernels for linear attention. Launchers and autograd live in `triton_linear.py`.

Causal kernels are Lightning-2 `fused_chunk` sweeps: one program per (value block, key block, batch·head) walks
the sequence in chunks of BT tokens, keeping the fp32 state block `S[BK, BV]` (and the normaliser `z[BK]`) in
registers. Inside a chunk the left product `[(Q Kᵀ) ⊙ M] V` uses the decay mask `M_ij = λ^{i−j}` built with exp2
from log2 λ (passed pre-multiplied by log2 e on the host); the right product is `(Q ⊙ λ^{i+1}) S`.

The normaliser is the state of an all-ones value column. Rather than padding V to Dv + 1 columns (which would
double the work for Dv = 64 or 128), it is carried as the vector z and every term of it is a row-sum or a
rank-1 product next to the matching S term. Its gradient terms are added only by the programs with i_v == 0, so
summing partial results over value blocks counts them once.

`scale` never touches q in memory: the output, the denominator and every gradient term that contains q are
linear in q, so they are multiplied by `scale` instead.

The backward recomputes states in fp32 (nothing per chunk is stored): a forward sweep for dQ, reverse sweeps for
dK (which also yields the gradient of the initial state) and dV. Each kernel picks its own block shapes so that
the dimension it reduces over is whole inside one program whenever D ≤ 128; beyond that the launcher sums
fp32 partial results.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _decay_terms(log2_decay, i_h, offs_t, L, BT: tl.constexpr, HAS_DECAY: tl.constexpr):
    """(M [BT, BT] causal decay mask, λ^{i+1} per query row, λ^{L−1−j} per key row (0 past L), λ^L)."""
    diff = offs_t[:, None] - offs_t[None, :]
    causal = diff >= 0
    valid = offs_t < L
    if HAS_DECAY:
        b = tl.load(log2_decay + i_h)
        # where() picks 0 above the diagonal before exp2's possible overflow can matter.
        M = tl.where(causal, tl.exp2(b * diff.to(tl.float32)), 0.0)
        q_dec = tl.exp2(b * (offs_t + 1).to(tl.float32))
        k_dec = tl.where(valid, tl.exp2(b * (L - 1 - offs_t).to(tl.float32)), 0.0)
        c_dec = tl.exp2(b * L.to(tl.float32))
    else:
        M = tl.where(causal, 1.0, 0.0)
        q_dec = tl.full([BT], 1.0, tl.float32)
        k_dec = tl.where(valid, 1.0, 0.0)
        c_dec = 1.0
    return M, q_dec, k_dec, c_dec


@triton.jit(do_not_specialize=["N"])
def causal_fwd_kernel(
    q, k, v, o, den, s0, sN, log2_decay,
    scale, eps, N, H, Dk, Dv, o_split_stride, den_split_stride,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DECAY: tl.constexpr, NORMALIZE: tl.constexpr, DIVIDE: tl.constexpr,
    HAS_S0: tl.constexpr, STORE_SN: tl.constexpr, LOWP: tl.constexpr, NUM_F32: tl.constexpr,
):  # fmt: skip
    i_v, i_k, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    offs_t = tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < Dk, offs_v < Dv
    SC = Dv + NORMALIZE  # state columns
    qk_base = i_b * N * H * Dk + i_h * Dk
    v_base = i_b * N * H * Dv + i_h * Dv
    rows_base = i_b * N * H + i_h  # den / r are [B, N, H]
    st_base = (i_b * H + i_h) * Dk * SC
    S = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    if HAS_S0:
        S = tl.load(s0 + st_base + offs_k[:, None] * SC + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        if NORMALIZE:
            z = tl.load(s0 + st_base + offs_k * SC + Dv, mask=mk, other=0.0)
    o += i_k * o_split_stride
    den += i_k * den_split_stride
    for t0 in range(0, N, BT):
        rows = t0 + offs_t
        mr = rows < N
        L = tl.minimum(N - t0, BT)
        M, q_dec, k_dec, c_dec = _decay_terms(log2_decay, i_h, offs_t, L, BT, HAS_DECAY)
        b_q = tl.load(
            q + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_k = tl.load(
            k + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_v = tl.load(
            v + v_base + rows[:, None] * (H * Dv) + offs_v[None, :], mask=mr[:, None] & mv[None, :], other=0.0
        )
        A = _mm(b_q, tl.trans(b_k), LOWP) * M  # fp32 [BT, BT]
        qd = b_q.to(tl.float32) * q_dec[:, None]
        if LOWP and not NUM_F32:
            num = tl.dot(A.to(b_v.dtype), b_v) + tl.dot(qd.to(b_q.dtype), S.to(b_q.dtype))
        else:
            num = _dot_f32(A, b_v) + _dot_f32(qd, S)
        num = num * scale
        if NORMALIZE:
            d = (tl.sum(A, 1) + tl.sum(qd * z[None, :], 1)) * scale
            if DIVIDE:
                d = d + eps
                num = num / d[:, None]
            if i_v == 0:
                tl.store(den + rows_base + rows * H, d, mask=mr)
        tl.store(
            o + v_base + rows[:, None] * (H * Dv) + offs_v[None, :],
            num.to(o.dtype.element_ty),
            mask=mr[:, None] & mv[None, :],
        )
        kd = b_k.to(tl.float32) * k_dec[:, None]
        if LOWP:
            S = S * c_dec + tl.dot(tl.trans(kd.to(b_k.dtype)), b_v)
        else:
            S = S * c_dec + _dot_f32(tl.trans(kd), b_v)
        if NORMALIZE:
            z = z * c_dec + tl.sum(kd, 0)
    if STORE_SN:
        tl.store(sN + st_base + offs_k[:, None] * SC + offs_v[None, :], S, mask=mk[:, None] & mv[None, :])
        if NORMALIZE:
            if i_v == 0:
                tl.store(sN + st_base + offs_k * SC + Dv, z, mask=mk)


@triton.jit
def _dot_f32(a, b):
    """A product with near-fp32 accuracy on tensor cores (3 tf32 passes), for terms that cancel."""
    return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32x3")


@triton.jit
def _mm(a, b, LOWP: tl.constexpr):
    """Tensor-core product of 16-bit inputs; near-fp32 (3 tf32 passes) for fp32 inputs, which expect fp32 accuracy."""
    if LOWP:
        return tl.dot(a, b)
    else:
        return _dot_f32(a, b)


@triton.jit
def _load_grad_out(do, den, r, v_base, rows_base, rows, mr, offs_v, mv, i_v, H, Dv, NORMALIZE: tl.constexpr):
    """dO for the numerator (do / den with the normaliser) and the denominator's gradient r (0 unless i_v == 0)."""
    g = tl.load(do + v_base + rows[:, None] * (H * Dv) + offs_v[None, :], mask=mr[:, None] & mv[None, :], other=0.0)
    g = g.to(tl.float32)
    rr = tl.zeros_like(rows).to(tl.float32)
    if NORMALIZE:
        dd = tl.load(den + rows_base + rows * H, mask=mr, other=1.0)
        g = g / dd[:, None]
        rr = tl.load(r + rows_base + rows * H, mask=mr, other=0.0)
        rr = tl.where(i_v == 0, rr, 0.0)
    return g, rr


@triton.jit(do_not_specialize=["N"])
def causal_bwd_dq_kernel(
    k, v, do, den, r, s0, log2_decay, dq,
    scale, N, H, Dk, Dv, dq_split_stride,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DECAY: tl.constexpr, NORMALIZE: tl.constexpr, HAS_S0: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    """Forward sweep: dq_i = scale·(Σ_{j≤i} λ^{i−j} (g_i·v_j + r_i) k_j + λ^{i+1} (g_i S_prevᵀ + r_i z_prev))."""
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    offs_t = tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < Dk, offs_v < Dv
    SC = Dv + NORMALIZE
    qk_base = i_b * N * H * Dk + i_h * Dk
    v_base = i_b * N * H * Dv + i_h * Dv
    rows_base = i_b * N * H + i_h
    st_base = (i_b * H + i_h) * Dk * SC
    S = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    if HAS_S0:
        S = tl.load(s0 + st_base + offs_k[:, None] * SC + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        if NORMALIZE:
            z = tl.load(s0 + st_base + offs_k * SC + Dv, mask=mk, other=0.0)
    dq += i_v * dq_split_stride
    for t0 in range(0, N, BT):
        rows = t0 + offs_t
        mr = rows < N
        L = tl.minimum(N - t0, BT)
        M, q_dec, k_dec, c_dec = _decay_terms(log2_decay, i_h, offs_t, L, BT, HAS_DECAY)
        b_k = tl.load(
            k + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_v = tl.load(
            v + v_base + rows[:, None] * (H * Dv) + offs_v[None, :], mask=mr[:, None] & mv[None, :], other=0.0
        )
        g, rr = _load_grad_out(do, den, r, v_base, rows_base, rows, mr, offs_v, mv, i_v, H, Dv, NORMALIZE)
        if NORMALIZE:
            # g·v_j and r_i = −g·o_i nearly cancel: form the difference from near-fp32 products.
            dP = _dot_f32(g, tl.trans(b_v)) + rr[:, None]
        elif LOWP:
            dP = tl.dot(g.to(b_v.dtype), tl.trans(b_v))
        else:
            dP = _dot_f32(g, tl.trans(b_v))
        dP = dP * M
        gd = g * q_dec[:, None]
        if LOWP and not NORMALIZE:
            b_dq = tl.dot(dP.to(b_k.dtype), b_k)
        else:
            # With the normaliser Σ_j dP_ij k_j cancels again (Σ_j (q_i·k_j)(v_j − o_i) = 0 and the features are
            # non-negative): bf16-rounded dP left dq at RMS 5.1e-3 on the H100, so keep it near fp32.
            b_dq = _dot_f32(dP, b_k)
        if NORMALIZE:
            # Same cancellation between g S_prevᵀ and r z_prev.
            b_dq += _dot_f32(gd, tl.trans(S)) + (rr * q_dec)[:, None] * z[None, :]
        elif LOWP:
            b_dq += tl.dot(gd.to(b_k.dtype), tl.trans(S.to(b_k.dtype)))
        else:
            b_dq += _dot_f32(gd, tl.trans(S))
        tl.store(
            dq + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :],
            (b_dq * scale).to(dq.dtype.element_ty),
            mask=mr[:, None] & mk[None, :],
        )
        kd = b_k.to(tl.float32) * k_dec[:, None]
        if LOWP:
            S = S * c_dec + tl.dot(tl.trans(kd.to(b_k.dtype)), b_v)
        else:
            S = S * c_dec + _dot_f32(tl.trans(kd), b_v)
        if NORMALIZE:
            z = z * c_dec + tl.sum(kd, 0)


@triton.jit(do_not_specialize=["N"])
def causal_bwd_dk_kernel(
    q, v, do, den, r, dsN, log2_decay, dk, ds0,
    scale, N, H, Dk, Dv, dk_split_stride,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DECAY: tl.constexpr, NORMALIZE: tl.constexpr, HAS_DSN: tl.constexpr, STORE_DS0: tl.constexpr,
    LOWP: tl.constexpr,
):  # fmt: skip
    """Reverse sweep: dk_j = scale·Σ_{i≥j} λ^{i−j}(g_i·v_j + r_i) q_i + λ^{L−1−j}(v_j dS_nextᵀ + dz_next)."""
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    offs_t = tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < Dk, offs_v < Dv
    SC = Dv + NORMALIZE
    qk_base = i_b * N * H * Dk + i_h * Dk
    v_base = i_b * N * H * Dv + i_h * Dv
    rows_base = i_b * N * H + i_h
    st_base = (i_b * H + i_h) * Dk * SC
    dS = tl.zeros([BK, BV], dtype=tl.float32)
    dz = tl.zeros([BK], dtype=tl.float32)
    if HAS_DSN:
        dS = tl.load(dsN + st_base + offs_k[:, None] * SC + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        if NORMALIZE:
            # Only one value block may count dz, or the partial dk sums would add it n_v times.
            dz = tl.load(dsN + st_base + offs_k * SC + Dv, mask=mk, other=0.0)
            dz = tl.where(i_v == 0, dz, 0.0)
    dk += i_v * dk_split_stride
    n_chunks = tl.cdiv(N, BT)
    for c in range(n_chunks):
        t0 = (n_chunks - 1 - c) * BT
        rows = t0 + offs_t
        mr = rows < N
        L = tl.minimum(N - t0, BT)
        M, q_dec, k_dec, c_dec = _decay_terms(log2_decay, i_h, offs_t, L, BT, HAS_DECAY)
        b_q = tl.load(
            q + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_v = tl.load(
            v + v_base + rows[:, None] * (H * Dv) + offs_v[None, :], mask=mr[:, None] & mv[None, :], other=0.0
        )
        g, rr = _load_grad_out(do, den, r, v_base, rows_base, rows, mr, offs_v, mv, i_v, H, Dv, NORMALIZE)
        if NORMALIZE:
            # g·v_j and r_i = −g·o_i nearly cancel: form the difference from near-fp32 products.
            dP = _dot_f32(g, tl.trans(b_v)) + rr[:, None]
        elif LOWP:
            dP = tl.dot(g.to(b_v.dtype), tl.trans(b_v))
        else:
            dP = _dot_f32(g, tl.trans(b_v))
        dP = dP * M
        if LOWP and not NORMALIZE:
            b_dk = tl.dot(tl.trans(dP.to(b_q.dtype)), b_q) * scale
        else:
            b_dk = _dot_f32(tl.trans(dP), b_q) * scale  # the same cancellation as in dq
        if NORMALIZE:
            # v_j·dS + dz nearly cancel (dS, dz accumulate q g and q r): near-fp32 products.
            inter = _dot_f32(b_v, tl.trans(dS)) + dz[None, :]
        elif LOWP:
            inter = tl.dot(b_v, tl.trans(dS.to(b_v.dtype)))
        else:
            inter = _dot_f32(b_v, tl.trans(dS))
        b_dk += inter * k_dec[:, None]
        tl.store(
            dk + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :],
            b_dk.to(dk.dtype.element_ty),
            mask=mr[:, None] & mk[None, :],
        )
        qd = b_q.to(tl.float32) * (q_dec * scale)[:, None]
        if LOWP:
            dS = dS * c_dec + tl.dot(tl.trans(qd.to(b_q.dtype)), g.to(b_q.dtype))
        else:
            dS = dS * c_dec + _dot_f32(tl.trans(qd), g)
        if NORMALIZE:
            dz = dz * c_dec + tl.sum(qd * rr[:, None], 0)
    if STORE_DS0:
        tl.store(ds0 + st_base + offs_k[:, None] * SC + offs_v[None, :], dS, mask=mk[:, None] & mv[None, :])
        if NORMALIZE:
            if i_v == 0:
                tl.store(ds0 + st_base + offs_k * SC + Dv, dz, mask=mk)


@triton.jit(do_not_specialize=["N"])
def causal_bwd_dv_kernel(
    q, k, do, den, dsN, log2_decay, dv,
    scale, N, H, Dk, Dv, dv_split_stride,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DECAY: tl.constexpr, NORMALIZE: tl.constexpr, HAS_DSN: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    """Reverse sweep: dv_j = scale·Σ_{i≥j} λ^{i−j}(q_i·k_j) g_i + λ^{L−1−j} k_j dS_next."""
    i_v, i_k, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    offs_t = tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < Dk, offs_v < Dv
    SC = Dv + NORMALIZE
    qk_base = i_b * N * H * Dk + i_h * Dk
    v_base = i_b * N * H * Dv + i_h * Dv
    rows_base = i_b * N * H + i_h
    st_base = (i_b * H + i_h) * Dk * SC
    dS = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DSN:
        dS = tl.load(dsN + st_base + offs_k[:, None] * SC + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
    dv += i_k * dv_split_stride
    n_chunks = tl.cdiv(N, BT)
    for c in range(n_chunks):
        t0 = (n_chunks - 1 - c) * BT
        rows = t0 + offs_t
        mr = rows < N
        L = tl.minimum(N - t0, BT)
        M, q_dec, k_dec, c_dec = _decay_terms(log2_decay, i_h, offs_t, L, BT, HAS_DECAY)
        b_q = tl.load(
            q + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_k = tl.load(
            k + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        g, _ = _load_grad_out(do, den, den, v_base, rows_base, rows, mr, offs_v, mv, i_v, H, Dv, NORMALIZE)
        A = _mm(b_q, tl.trans(b_k), LOWP) * M * scale  # [BT(i), BT(j)]
        kd = b_k.to(tl.float32) * k_dec[:, None]
        if LOWP:
            b_dv = tl.dot(tl.trans(A.to(b_q.dtype)), g.to(b_q.dtype)) + tl.dot(kd.to(b_k.dtype), dS.to(b_k.dtype))
        else:
            b_dv = _dot_f32(tl.trans(A), g) + _dot_f32(kd, dS)
        tl.store(
            dv + v_base + rows[:, None] * (H * Dv) + offs_v[None, :],
            b_dv.to(dv.dtype.element_ty),
            mask=mr[:, None] & mv[None, :],
        )
        qd = b_q.to(tl.float32) * (q_dec * scale)[:, None]
        if LOWP:
            dS = dS * c_dec + tl.dot(tl.trans(qd.to(b_q.dtype)), g.to(b_q.dtype))
        else:
            dS = dS * c_dec + _dot_f32(tl.trans(qd), g)


@triton.jit(do_not_specialize=["Nk"])
def noncausal_state_kernel(
    k, v, s, Nk, H, Dk, Dv, tokens_per_split, s_split_stride,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NORMALIZE: tl.constexpr, LOWP: tl.constexpr,
):  # fmt: skip
    """Partial `Kᵀ [V, 1]` over one slice of the keys; the launcher sums the slices."""
    i_kv, i_s, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    n_v = tl.cdiv(Dv, BV)
    i_k, i_v = i_kv // n_v, i_kv % n_v
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    offs_t = tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < Dk, offs_v < Dv
    SC = Dv + NORMALIZE
    qk_base = i_b * Nk * H * Dk + i_h * Dk
    v_base = i_b * Nk * H * Dv + i_h * Dv
    st_base = i_s * s_split_stride + (i_b * H + i_h) * Dk * SC
    S = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    start = i_s * tokens_per_split
    end = tl.minimum(start + tokens_per_split, Nk)
    for t0 in range(start, end, BT):
        rows = t0 + offs_t
        mr = rows < end
        b_k = tl.load(
            k + qk_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_v = tl.load(
            v + v_base + rows[:, None] * (H * Dv) + offs_v[None, :], mask=mr[:, None] & mv[None, :], other=0.0
        )
        if LOWP:
            S += tl.dot(tl.trans(b_k), b_v)
        else:
            S += _dot_f32(tl.trans(b_k.to(tl.float32)), b_v.to(tl.float32))
        if NORMALIZE:
            z += tl.sum(b_k.to(tl.float32), 0)
    tl.store(s + st_base + offs_k[:, None] * SC + offs_v[None, :], S, mask=mk[:, None] & mv[None, :])
    if NORMALIZE:
        if i_v == 0:
            tl.store(s + st_base + offs_k * SC + Dv, z, mask=mk)


@triton.jit(do_not_specialize=["Nq"])
def noncausal_out_kernel(
    q, s, o, den, scale, eps, Nq, H, Dk, Dv,
    BM: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NORMALIZE: tl.constexpr, LOWP: tl.constexpr,
    NUM_F32: tl.constexpr,
):  # fmt: skip
    """o = scale·q S / (scale·q·z + eps) for one block of queries, the normaliser in the same pass."""
    i_m, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    rows = i_m * BM + tl.arange(0, BM)
    mr = rows < Nq
    offs_v = i_v * BV + tl.arange(0, BV)
    mv = offs_v < Dv
    SC = Dv + NORMALIZE
    q_base = i_b * Nq * H * Dk + i_h * Dk
    o_base = i_b * Nq * H * Dv + i_h * Dv
    st_base = (i_b * H + i_h) * Dk * SC
    acc = tl.zeros([BM, BV], dtype=tl.float32)
    d = tl.zeros([BM], dtype=tl.float32)
    for k0 in range(0, Dk, BK):
        offs_k = k0 + tl.arange(0, BK)
        mk = offs_k < Dk
        b_q = tl.load(
            q + q_base + rows[:, None] * (H * Dk) + offs_k[None, :], mask=mr[:, None] & mk[None, :], other=0.0
        )
        b_s = tl.load(s + st_base + offs_k[:, None] * SC + offs_v[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        if LOWP and not NUM_F32:
            acc += tl.dot(b_q, b_s.to(b_q.dtype))
        else:
            acc += _dot_f32(b_q.to(tl.float32), b_s)
        if NORMALIZE:
            b_z = tl.load(s + st_base + offs_k * SC + Dv, mask=mk, other=0.0)
            d += tl.sum(b_q.to(tl.float32) * b_z[None, :], 1)
    acc = acc * scale
    if NORMALIZE:
        d = d * scale + eps
        acc = acc / d[:, None]
        if i_v == 0:
            tl.store(den + i_b * Nq * H + i_h + rows * H, d, mask=mr)
    tl.store(
        o + o_base + rows[:, None] * (H * Dv) + offs_v[None, :],
        acc.to(o.dtype.element_ty),
        mask=mr[:, None] & mv[None, :],
    )
