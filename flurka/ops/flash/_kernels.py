"""Triton kernels shared by FlashAttention and SCFA: forward, delta preprocess, dK/dV, dQ.

One kernel family, two masking modes chosen at compile time:

- dense (`SPARSE=False`, FlashAttention): key j is visible to query i iff j < Nk, the key is not padding, and,
  when causal, j <= i + (Nk - Nq) (bottom-right alignment). Blocks that are entirely visible run an unmasked
  loop (the FA-2 off-diagonal / diagonal split); only the diagonal band and the ragged tail pay for masks.
- sparse (`SPARSE=True`, SCFA): rows were sorted on the host so that the keys visible to sorted query i form one
  contiguous range [ks[i], ke[i]) of sorted keys (same bucket and original position <= the query's). The mask is
  two integer compares; per-block loop bounds are the min/max of those ranges over the block, which is where the
  block skipping comes from (see flurka/ops/scfa/ops.py for how the ranges follow from positions and buckets).

Numerics: fp32 accumulation everywhere; softmax in base 2 with scale·log2(e) folded into one multiply; only the
log-sum-exp (base 2, scaled units) is stored for the backward. A row that sees no key keeps m = -inf and l = 0:
the running max is replaced by 0 before subtracting so no `-inf - -inf` NaN appears, the output is written as 0
and its LSE as +inf, which makes every recomputed probability in the backward exactly 0 (zero gradients).
Head dims that are not powers of two are padded to BLOCK_D with masked loads (padded lanes load 0).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------------------------------------------
# autotune configurations: `configs_for(kind, BLOCK_D)` is the one list a launch may use; `kernel(kind, BLOCK_D)`
# is the autotuned kernel built on exactly that list (core.py launches it, smem.py checks it)
# ----------------------------------------------------------------------------------------------------------------
_TABLE = {  # (BLOCK_M, BLOCK_N, warps, stages): the winners of the full sweep on an H100 (NOTES.md), best first
    "fwd": [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 64, 4, 3), (64, 32, 4, 4)],
    "dkdv": [(64, 128, 8, 3), (32, 128, 4, 3), (64, 64, 4, 3), (32, 64, 4, 2)],
    "dq": [(128, 64, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3), (64, 32, 4, 2)],
}
# Wide heads (D > 128 pads BLOCK_D to 256 or 512): shared memory grows with rows x BLOCK_D, and the default tiles
# ask for up to 394 KB (limit 227 KB on sm_90), so these get small single-stage tiles. Every entry must fit:
# `python -m flurka.ops.flash.smem` compiles each for sm_90 (tests/ops/test_flash_smem.py runs it on CPU).
_WIDE_TILES = {
    ("fwd", 256): [(64, 64), (64, 32), (32, 32), (16, 16)],
    ("fwd", 512): [(32, 32), (32, 16), (16, 16)],
    ("dkdv", 256): [(32, 32), (32, 16), (16, 16)],
    ("dkdv", 512): [(16, 16)],
    ("dq", 256): [(32, 32), (32, 16), (16, 16)],
    ("dq", 512): [(16, 16)],
}


TMA_MAX_BLOCK_D = 128  # TMA tiles are tried for narrow heads only: wide heads run small single-stage tiles


def tma_mode() -> str:
    """`FLURKA_FLASH_TMA`: "auto" (default: where a launch can use TMA, the autotuner times TMA tiles beside the
    pointer tiles and keeps the faster), "off" (pointer loads only), "only" (TMA tiles only where a launch can
    use them: for correctness runs and A/B timing of the TMA path)."""
    mode = os.environ.get("FLURKA_FLASH_TMA", "auto") or "auto"
    if mode not in ("auto", "off", "only"):
        raise ValueError(f"FLURKA_FLASH_TMA={mode!r}: expected auto, off or only")
    return mode


def _set_tma_blocks(nargs: dict) -> None:
    """Autotuner pre-hook of the TMA configs: a tensor descriptor's block is part of the kernel's type, so each
    config gives the descriptors its own tile ([1, rows, 1, BLOCK_D] of the [B, N, H, D] tensors): query-side
    tensors (Q, dO) move BLOCK_M rows, key-side tensors (K, V) BLOCK_N rows."""
    for name, rows in (("QD", "BLOCK_M"), ("DOD", "BLOCK_M"), ("KD", "BLOCK_N"), ("VD", "BLOCK_N")):
        desc = nargs.get(name)
        if desc is not None and hasattr(desc, "block_shape"):
            desc.block_shape = [1, nargs[rows], 1, nargs["BLOCK_D"]]


def _with_tma(configs: list[triton.Config]) -> list[triton.Config]:
    """The same tiles, loading through TMA tensor descriptors (Hopper's bulk async copies) instead of pointers."""
    return [
        triton.Config({**c.kwargs, "USE_TMA": True}, num_warps=c.num_warps, num_stages=c.num_stages,
                      pre_hook=_set_tma_blocks)
        for c in configs
    ]  # fmt: skip


def configs_for(kind: str, block_d: int, tma: bool = False) -> list[triton.Config]:
    """The configs a `kind` launch (fwd, dkdv, dq) at this BLOCK_D may use, best first; `tma`: the launch can load
    through tensor descriptors (dense mode, D = BLOCK_D <= 128, aligned strides, a Hopper GPU or the interpreter),
    which adds the TMA twin of each tile (`FLURKA_FLASH_TMA`, `tma_mode`).

    The interpreter gets one tiny config (nothing to tune on a CPU, and small blocks make N=17/33/70 span several
    blocks), its TMA twin under `FLURKA_FLASH_TMA=only`. `FLURKA_FLASH_TUNE=full` exposes the whole Hopper grid
    (BM {64,128} x BN {32,64,128} x warps {4,8} x stages {2,3,4}) for tuning runs of narrow heads; `first` keeps
    only the first config (many-shape correctness runs). Wide heads always use their own list (`_WIDE_TILES`),
    in every mode: the list is chosen here, before the autotuner, because Triton's autotuner skips its prune hook
    when it holds a single config — which is how `first` once launched a 394 KB default tile at D = 325.
    """
    tma = tma and block_d <= TMA_MAX_BLOCK_D and tma_mode() != "off"
    only_tma = tma and tma_mode() == "only"
    if INTERPRET:
        tiny = [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)]
        return _with_tma(tiny) if only_tma else tiny
    mode = os.environ.get("FLURKA_FLASH_TUNE", "")
    if block_d >= 256:
        wide = [
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=1)
            for bm, bn in _WIDE_TILES[(kind, min(block_d, 512))]
            for w in (4, 2)
        ]
        return wide[:1] if mode == "first" else wide
    if mode == "full":
        plain = [
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm in (64, 128)
            for bn in (32, 64, 128)
            for w in (4, 8)
            for s in (2, 3, 4)
            if not (w == 8 and bm * bn < 128 * 128 and bm < 128)
        ]
    else:
        table = _TABLE[kind][:1] if mode == "first" else _TABLE[kind]
        plain = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in table]
    if only_tma:
        return _with_tma(plain)
    return plain + _with_tma(plain) if tma else plain


_KEY = ["HEAD_DIM", "CAUSAL", "SPARSE", "HAS_PAD", "PREC", "SEQ_BUCKET"]
_NOSPEC = ["Nq", "Nk", "SEQ_BUCKET"]


@triton.jit
def _load_tile(ptrs, rows, n_rows, dmask, ROW_MASK: tl.constexpr, EVEN_D: tl.constexpr):
    """Load a [rows, BLOCK_D] tile; masks only where needed (unmasked loads vectorize and pipeline best)."""
    if ROW_MASK:
        if EVEN_D:
            x = tl.load(ptrs, mask=(rows < n_rows)[:, None], other=0.0)
        else:
            x = tl.load(ptrs, mask=(rows < n_rows)[:, None] & dmask, other=0.0)
    else:
        if EVEN_D:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=dmask, other=0.0)
    return x


@triton.jit
def _tile(desc, b, start, h, ptrs, rows, n_rows, dmask, ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
          MASKED: tl.constexpr, EVEN_D: tl.constexpr, USE_TMA: tl.constexpr):  # fmt: skip
    """Rows start .. start+ROWS of head h, batch b: one TMA copy through the [B, N, H, D] descriptor (rows past
    the end read 0, like the masked loads), or `_load_tile` on the pointers (`desc` is then a placeholder)."""
    if USE_TMA:
        x = desc.load([b, start, h, 0]).reshape([ROWS, BLOCK_D])
    else:
        x = _load_tile(ptrs, rows, n_rows, dmask, MASKED, EVEN_D)
    return x


@triton.jit
def _rows(P_row, offs, n, SPARSE: tl.constexpr):
    """Row indices into the caller's [B, N, H, D] tensors: the block's own offsets (dense), or, in sparse mode,
    the original positions of the sorted rows (the SCFA gather/scatter fused into the loads and stores)."""
    if SPARSE:
        r = tl.load(P_row + offs, mask=offs < n, other=0)
    else:
        r = offs
    return r


# ----------------------------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------------------------
@triton.jit
def _fwd_inner(
    acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, pad_base, ks, ke, PK_row, KD, VD, b, h,
    offs_m, offs_d, lo, hi, Nk, causal_off, qk_scale,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, SPARSE: tl.constexpr, HAS_PAD: tl.constexpr, PREC: tl.constexpr,
    EVEN_D: tl.constexpr, USE_TMA: tl.constexpr,
):  # fmt: skip
    offs_n0 = tl.arange(0, BLOCK_N)
    dmask = offs_d[None, :] < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        krows = _rows(PK_row, offs_n, Nk, SPARSE)
        k_ptrs = k_base + krows[:, None] * stride_kn + offs_d[None, :]
        k = _tile(KD, b, start_n, h, k_ptrs, offs_n, Nk, dmask, BLOCK_N, BLOCK_D, MASKED, EVEN_D, USE_TMA)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        if MASKED:
            if SPARSE:
                valid = (offs_n[None, :] >= ks[:, None]) & (offs_n[None, :] < ke[:, None])
            else:
                valid = offs_n[None, :] < Nk
                if CAUSAL:
                    valid = valid & (offs_n[None, :] <= offs_m[:, None] + causal_off)
            if HAS_PAD:
                keep = tl.load(pad_base + offs_n, mask=offs_n < Nk, other=0) != 0
                valid = valid & keep[None, :]
            qk = tl.where(valid, qk, float("-inf"))
        elif HAS_PAD:
            keep = tl.load(pad_base + offs_n) != 0
            qk = tl.where(keep[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # a row with nothing visible so far has m_new = -inf; subtract 0 instead to avoid -inf - -inf = NaN
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v_ptrs = v_base + krows[:, None] * stride_vn + offs_d[None, :]
        v = _tile(VD, b, start_n, h, v_ptrs, offs_n, Nk, dmask, BLOCK_N, BLOCK_D, MASKED, EVEN_D, USE_TMA)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PREC)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit(do_not_specialize=_NOSPEC)
def _fwd_kernel(
    Q, K, V, O, LSE, PAD, KS, KE, PQ, PK, QD, KD, VD,
    sqb, sqn, sqh, skb, skn, skh, svb, svn, svh, sob, son, soh,
    H, Nq, Nk, qk_scale, SEQ_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, SPARSE: tl.constexpr,
    HAS_PAD: tl.constexpr, PREC: tl.constexpr, EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    USE_TMA: tl.constexpr = False,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    if CAUSAL:
        # heaviest (last) query blocks first: better tail balance for the triangular workload
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = pid_bh // H
    h = pid_bh % H
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < Nq
    rows_q = _rows(PQ + pid_bh * Nq, offs_m, Nq, SPARSE)
    PK_row = PK + pid_bh * Nk
    q_ptrs = Q + b * sqb + h * sqh + rows_q[:, None] * sqn + offs_d[None, :]
    dmask = offs_d[None, :] < HEAD_DIM
    q = _tile(QD, b, start_m, h, q_ptrs, offs_m, Nq, dmask, BLOCK_M, BLOCK_D, True, EVEN_D, USE_TMA)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    pad_base = PAD + b * Nk

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    causal_off = Nk - Nq

    if SPARSE:
        ks = tl.load(KS + pid_bh * Nq + offs_m, mask=row_ok, other=0)
        ke = tl.load(KE + pid_bh * Nq + offs_m, mask=row_ok, other=0)
        nonempty = ke > ks
        lo = tl.min(tl.where(nonempty, ks, Nk), 0)
        hi = tl.max(tl.where(nonempty, ke, 0), 0)
        acc, m_i, l_i = _fwd_inner(
            acc, m_i, l_i, q, k_base, v_base, skn, svn, pad_base, ks, ke, PK_row, KD, VD, b, h, offs_m, offs_d,
            lo, hi, Nk, causal_off,
            qk_scale, BLOCK_N, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, False,
        )  # fmt: skip
    else:
        if CAUSAL:
            # keys < start_m + off + 1 are visible to every row of the block; the band after needs the mask
            full_hi = (tl.minimum(tl.maximum(start_m + causal_off + 1, 0), Nk) // BLOCK_N) * BLOCK_N
            hi = tl.minimum(tl.maximum(start_m + BLOCK_M + causal_off, 0), Nk)
        else:
            full_hi = (Nk // BLOCK_N) * BLOCK_N
            hi = Nk
        acc, m_i, l_i = _fwd_inner(
            acc, m_i, l_i, q, k_base, v_base, skn, svn, pad_base, m_i, m_i, PK_row, KD, VD, b, h, offs_m, offs_d,
            0, full_hi, Nk,
            causal_off, qk_scale, BLOCK_N, HEAD_DIM, BLOCK_D, False, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip
        acc, m_i, l_i = _fwd_inner(
            acc, m_i, l_i, q, k_base, v_base, skn, svn, pad_base, m_i, m_i, PK_row, KD, VD, b, h, offs_m, offs_d,
            full_hi, hi, Nk,
            causal_off, qk_scale, BLOCK_N, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip

    has_key = l_i > 0.0
    l_safe = tl.where(has_key, l_i, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(has_key, m_i + tl.math.log2(l_safe), float("inf"))
    tl.store(LSE + pid_bh * Nq + offs_m, lse, mask=row_ok)
    o_ptrs = O + b * sob + h * soh + rows_q[:, None] * son + offs_d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


# ----------------------------------------------------------------------------------------------------------------
# backward: delta = rowsum(dO * O)
# ----------------------------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["Nq"])
def _bwd_delta_kernel(
    O, DO, DELTA, PQ, sob, son, soh, sdb, sdn, sdh, H, Nq,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, SPARSE: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < Nq) & (offs_d[None, :] < HEAD_DIM)
    rows = _rows(PQ + pid_bh * Nq, offs_m, Nq, SPARSE)
    o = tl.load(O + b * sob + h * soh + rows[:, None] * son + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + rows[:, None] * sdn + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + pid_bh * Nq + offs_m, delta, mask=offs_m < Nq)


# ----------------------------------------------------------------------------------------------------------------
# backward: dK, dV for one key block (loop over query blocks); no atomics
# ----------------------------------------------------------------------------------------------------------------
@triton.jit
def _dkdv_inner(
    dk, dv, k, v, q_base, do_base, stride_qn, stride_don, LSE_row, DELTA_row, KS_row, KE_row, PQ_row, keep_k,
    QD, DOD, b, h, offs_n, offs_d, lo, hi, Nq, causal_off, qk_scale,
    BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASKED: tl.constexpr,
    CAUSAL: tl.constexpr, SPARSE: tl.constexpr, HAS_PAD: tl.constexpr, PREC: tl.constexpr, EVEN_D: tl.constexpr,
    USE_TMA: tl.constexpr,
):  # fmt: skip
    offs_m0 = tl.arange(0, BLOCK_M)
    dmask = offs_d[None, :] < HEAD_DIM
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        if MASKED:
            row_ok = offs_m < Nq
            lse = tl.load(LSE_row + offs_m, mask=row_ok, other=float("inf"))
        else:
            lse = tl.load(LSE_row + offs_m)
        qrows = _rows(PQ_row, offs_m, Nq, SPARSE)
        q_ptrs = q_base + qrows[:, None] * stride_qn + offs_d[None, :]
        q = _tile(QD, b, start_m, h, q_ptrs, offs_m, Nq, dmask, BLOCK_M, BLOCK_D, MASKED, EVEN_D, USE_TMA)
        qkT = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale
        pT = tl.math.exp2(qkT - lse[None, :])
        if MASKED:
            if SPARSE:
                ks = tl.load(KS_row + offs_m, mask=row_ok, other=0)
                ke = tl.load(KE_row + offs_m, mask=row_ok, other=0)
                valid = (offs_n[:, None] >= ks[None, :]) & (offs_n[:, None] < ke[None, :])
            else:
                valid = row_ok[None, :]
                if CAUSAL:
                    valid = valid & (offs_n[:, None] <= offs_m[None, :] + causal_off)
            if HAS_PAD:
                valid = valid & keep_k[:, None]
            pT = tl.where(valid, pT, 0.0)
        elif HAS_PAD:
            pT = tl.where(keep_k[:, None], pT, 0.0)
        do_ptrs = do_base + qrows[:, None] * stride_don + offs_d[None, :]
        do = _tile(DOD, b, start_m, h, do_ptrs, offs_m, Nq, dmask, BLOCK_M, BLOCK_D, MASKED, EVEN_D, USE_TMA)
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=PREC)
        if MASKED:
            delta = tl.load(DELTA_row + offs_m, mask=row_ok, other=0.0)
        else:
            delta = tl.load(DELTA_row + offs_m)
        dpT = tl.dot(v, tl.trans(do), input_precision=PREC)
        dsT = pT * (dpT - delta[None, :])
        dk = tl.dot(dsT.to(q.dtype), q, dk, input_precision=PREC)
    return dk, dv


@triton.jit(do_not_specialize=_NOSPEC)
def _bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, PAD, KS, KE, QS, QE, PQ, PK, QD, KD, VD, DOD,
    sqb, sqn, sqh, skb, skn, skh, svb, svn, svh, sdob, sdon, sdoh, sdkb, sdkn, sdkh, sdvb, sdvn, sdvh,
    H, Nq, Nk, qk_scale, sm_scale, SEQ_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, SPARSE: tl.constexpr,
    HAS_PAD: tl.constexpr, PREC: tl.constexpr, EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    USE_TMA: tl.constexpr = False,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    col_ok = offs_n < Nk
    kvmask = col_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    dmask = offs_d[None, :] < HEAD_DIM
    rows_k = _rows(PK + pid_bh * Nk, offs_n, Nk, SPARSE)
    PQ_row = PQ + pid_bh * Nq
    k_ptrs = K + b * skb + h * skh + rows_k[:, None] * skn + offs_d[None, :]
    v_ptrs = V + b * svb + h * svh + rows_k[:, None] * svn + offs_d[None, :]
    k = _tile(KD, b, start_n, h, k_ptrs, offs_n, Nk, dmask, BLOCK_N, BLOCK_D, True, EVEN_D, USE_TMA)
    v = _tile(VD, b, start_n, h, v_ptrs, offs_n, Nk, dmask, BLOCK_N, BLOCK_D, True, EVEN_D, USE_TMA)
    if HAS_PAD:
        keep_k = tl.load(PAD + b * Nk + offs_n, mask=col_ok, other=0) != 0
    else:
        keep_k = col_ok
    q_base = Q + b * sqb + h * sqh
    do_base = DO + b * sdob + h * sdoh
    LSE_row = LSE + pid_bh * Nq
    DELTA_row = DELTA + pid_bh * Nq
    KS_row = KS + pid_bh * Nq
    KE_row = KE + pid_bh * Nq
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    causal_off = Nk - Nq

    if SPARSE:
        qs = tl.load(QS + pid_bh * Nk + offs_n, mask=col_ok, other=0)
        qe = tl.load(QE + pid_bh * Nk + offs_n, mask=col_ok, other=0)
        nonempty = qe > qs
        lo = tl.min(tl.where(nonempty, qs, Nq), 0)
        hi = tl.max(tl.where(nonempty, qe, 0), 0)
        dk, dv = _dkdv_inner(
            dk, dv, k, v, q_base, do_base, sqn, sdon, LSE_row, DELTA_row, KS_row, KE_row, PQ_row, keep_k,
            QD, DOD, b, h, offs_n, offs_d, lo, hi, Nq, causal_off, qk_scale,
            BLOCK_M, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, False,
        )  # fmt: skip
    else:
        full_end = (Nq // BLOCK_M) * BLOCK_M
        if CAUSAL:
            # queries i >= start_n - off see some key of this block; i >= start_n + BLOCK_N - 1 - off see all of them
            lo = (tl.maximum(start_n - causal_off, 0) // BLOCK_M) * BLOCK_M
            mid = tl.cdiv(tl.maximum(start_n + BLOCK_N - causal_off, 0), BLOCK_M) * BLOCK_M
            mid = tl.maximum(tl.minimum(mid, tl.cdiv(Nq, BLOCK_M) * BLOCK_M), lo)
        else:
            lo = 0
            mid = 0
        tail = tl.maximum(mid, full_end)
        dk, dv = _dkdv_inner(
            dk, dv, k, v, q_base, do_base, sqn, sdon, LSE_row, DELTA_row, KS_row, KE_row, PQ_row, keep_k,
            QD, DOD, b, h, offs_n, offs_d, lo, mid, Nq, causal_off, qk_scale,
            BLOCK_M, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip
        dk, dv = _dkdv_inner(
            dk, dv, k, v, q_base, do_base, sqn, sdon, LSE_row, DELTA_row, KS_row, KE_row, PQ_row, keep_k,
            QD, DOD, b, h, offs_n, offs_d, mid, tail, Nq, causal_off, qk_scale,
            BLOCK_M, HEAD_DIM, BLOCK_D, False, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip
        dk, dv = _dkdv_inner(
            dk, dv, k, v, q_base, do_base, sqn, sdon, LSE_row, DELTA_row, KS_row, KE_row, PQ_row, keep_k,
            QD, DOD, b, h, offs_n, offs_d, tail, Nq, Nq, causal_off, qk_scale,
            BLOCK_M, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip

    dk = dk * sm_scale
    tl.store(
        DK + b * sdkb + h * sdkh + rows_k[:, None] * sdkn + offs_d[None, :], dk.to(DK.dtype.element_ty), mask=kvmask
    )
    tl.store(
        DV + b * sdvb + h * sdvh + rows_k[:, None] * sdvn + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=kvmask
    )


# ----------------------------------------------------------------------------------------------------------------
# backward: dQ for one query block (loop over key blocks, as the forward); no atomics
# ----------------------------------------------------------------------------------------------------------------
@triton.jit
def _dq_inner(
    dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, pad_base, ks, ke, PK_row, KD, VD, b, h,
    offs_m, offs_d, lo, hi, Nk, causal_off, qk_scale,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASKED: tl.constexpr,
    CAUSAL: tl.constexpr, SPARSE: tl.constexpr, HAS_PAD: tl.constexpr, PREC: tl.constexpr, EVEN_D: tl.constexpr,
    USE_TMA: tl.constexpr,
):  # fmt: skip
    offs_n0 = tl.arange(0, BLOCK_N)
    dmask = offs_d[None, :] < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        krows = _rows(PK_row, offs_n, Nk, SPARSE)
        k_ptrs = k_base + krows[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = v_base + krows[:, None] * stride_vn + offs_d[None, :]
        k = _tile(KD, b, start_n, h, k_ptrs, offs_n, Nk, dmask, BLOCK_N, BLOCK_D, MASKED, EVEN_D, USE_TMA)
        v = _tile(VD, b, start_n, h, v_ptrs, offs_n, Nk, dmask, BLOCK_N, BLOCK_D, MASKED, EVEN_D, USE_TMA)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        p = tl.math.exp2(qk - lse[:, None])
        if MASKED:
            if SPARSE:
                valid = (offs_n[None, :] >= ks[:, None]) & (offs_n[None, :] < ke[:, None])
            else:
                valid = offs_n[None, :] < Nk
                if CAUSAL:
                    valid = valid & (offs_n[None, :] <= offs_m[:, None] + causal_off)
            if HAS_PAD:
                keep = tl.load(pad_base + offs_n, mask=offs_n < Nk, other=0) != 0
                valid = valid & keep[None, :]
            p = tl.where(valid, p, 0.0)
        elif HAS_PAD:
            keep = tl.load(pad_base + offs_n) != 0
            p = tl.where(keep[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PREC)
    return dq


@triton.jit(do_not_specialize=_NOSPEC)
def _bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, PAD, KS, KE, PQ, PK, QD, KD, VD, DOD,
    sqb, sqn, sqh, skb, skn, skh, svb, svn, svh, sdob, sdon, sdoh, sdqb, sdqn, sdqh,
    H, Nq, Nk, qk_scale, sm_scale, SEQ_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, SPARSE: tl.constexpr,
    HAS_PAD: tl.constexpr, PREC: tl.constexpr, EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    USE_TMA: tl.constexpr = False,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = pid_bh // H
    h = pid_bh % H
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < Nq
    qmask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    dmask = offs_d[None, :] < HEAD_DIM
    rows_q = _rows(PQ + pid_bh * Nq, offs_m, Nq, SPARSE)
    PK_row = PK + pid_bh * Nk
    q_ptrs = Q + b * sqb + h * sqh + rows_q[:, None] * sqn + offs_d[None, :]
    do_ptrs = DO + b * sdob + h * sdoh + rows_q[:, None] * sdon + offs_d[None, :]
    q = _tile(QD, b, start_m, h, q_ptrs, offs_m, Nq, dmask, BLOCK_M, BLOCK_D, True, EVEN_D, USE_TMA)
    do = _tile(DOD, b, start_m, h, do_ptrs, offs_m, Nq, dmask, BLOCK_M, BLOCK_D, True, EVEN_D, USE_TMA)
    lse = tl.load(LSE + pid_bh * Nq + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + pid_bh * Nq + offs_m, mask=row_ok, other=0.0)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    pad_base = PAD + b * Nk
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    causal_off = Nk - Nq

    if SPARSE:
        ks = tl.load(KS + pid_bh * Nq + offs_m, mask=row_ok, other=0)
        ke = tl.load(KE + pid_bh * Nq + offs_m, mask=row_ok, other=0)
        nonempty = ke > ks
        lo = tl.min(tl.where(nonempty, ks, Nk), 0)
        hi = tl.max(tl.where(nonempty, ke, 0), 0)
        dq = _dq_inner(
            dq, q, do, lse, delta, k_base, v_base, skn, svn, pad_base, ks, ke, PK_row, KD, VD, b, h, offs_m, offs_d,
            lo, hi, Nk, causal_off, qk_scale, BLOCK_N, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D,
            False,
        )  # fmt: skip
    else:
        if CAUSAL:
            full_hi = (tl.minimum(tl.maximum(start_m + causal_off + 1, 0), Nk) // BLOCK_N) * BLOCK_N
            hi = tl.minimum(tl.maximum(start_m + BLOCK_M + causal_off, 0), Nk)
        else:
            full_hi = (Nk // BLOCK_N) * BLOCK_N
            hi = Nk
        dq = _dq_inner(
            dq, q, do, lse, delta, k_base, v_base, skn, svn, pad_base, lse, lse, PK_row, KD, VD, b, h, offs_m, offs_d,
            0, full_hi, Nk, causal_off, qk_scale,
            BLOCK_N, HEAD_DIM, BLOCK_D, False, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip
        dq = _dq_inner(
            dq, q, do, lse, delta, k_base, v_base, skn, svn, pad_base, lse, lse, PK_row, KD, VD, b, h, offs_m, offs_d,
            full_hi, hi, Nk, causal_off, qk_scale,
            BLOCK_N, HEAD_DIM, BLOCK_D, True, CAUSAL, SPARSE, HAS_PAD, PREC, EVEN_D, USE_TMA,
        )  # fmt: skip

    dq = dq * sm_scale
    tl.store(
        DQ + b * sdqb + h * sdqh + rows_q[:, None] * sdqn + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=qmask
    )


JIT_KERNELS = {"fwd": _fwd_kernel, "dkdv": _bwd_dkdv_kernel, "dq": _bwd_dq_kernel}
_AUTOTUNED: dict[tuple[str, int, bool, str, str], triton.runtime.Autotuner] = {}


def kernel(kind: str, block_d: int, tma: bool = False):
    """The autotuned `kind` kernel over `configs_for(kind, block_d, tma)`: the object every launch at this
    BLOCK_D goes through (one per kind, BLOCK_D, TMA eligibility and tuning modes, built on first use; its tuning
    cache persists)."""
    key = (kind, block_d, tma, os.environ.get("FLURKA_FLASH_TUNE", ""), tma_mode())
    if key not in _AUTOTUNED:
        _AUTOTUNED[key] = triton.autotune(configs=configs_for(kind, block_d, tma), key=_KEY)(JIT_KERNELS[kind])
    return _AUTOTUNED[key]
