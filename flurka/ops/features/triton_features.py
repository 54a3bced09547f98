"""Fused Triton feature maps with the semantics of `flurka.ops.features.reference`.

- `elu_plus_one_triton(x, dtype=...)`: elu(x) + 1 in one pass, written straight in the dtype the attention op
  takes (the reference casts to fp32, applies elu, adds 1, and the caller casts again: four passes). The
  backward is one fused pass too.
- `favor_plus_features_triton(x, W, is_query=..., eps=...)`: FAVOR+ positive random features
  exp(Wx − ‖x‖²/2 − c) + eps with the non-causal stabilisers. One kernel does the projection (fp32
  accumulation), the squared norm, and for queries the per-token max and the exp in its epilogue; for keys
  (c = max over the sequence and the features of each (batch, head)) the kernel writes the fp32 exponent and an
  atomic running max, and a second elementwise pass applies the exp.
- `favor_plus_causal_features_triton(x, W, is_query=...)`: the causal-safe features of
  `reference.favor_plus_causal_features`. The data-independent shift ±c_m = ±‖w_m‖²/2 is added in the kernel,
  so keys need no global max: one pass, exp in the epilogue. Queries also write their max a (the returned
  shift).
The backward (every stabiliser detached, as in the reference) is torch GEMMs: dz = dφ ⊙ (φ − eps),
dx = dz W − x Σ_m dz, dW = Σ dzᵀ x, and for the causal shift d(±c) = ±Σ dz (autograd carries it on to W).

Whether these pay on the GPU is recorded in `flurka/ops/linear/NOTES.md`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from flurka.ops._backend import next_power_of_2
from flurka.ops.features import reference as ref

# _favor_kernel's stabilisers
QUERY_ROW_MAX = 0  # exp(z − max_m z): queries, causal or not (a per-query factor cancels)
KEY_GLOBAL_MAX = 1  # exp(z − max over the sequence): non-causal keys (two passes: z, then the exp)
KEY_FIXED = 2  # exp(z) with z already shifted by −c_m: causal keys (one pass)
#: the kernel holds all m features of a token in one tile
MAX_FUSED_FEATURES = 512


@triton.jit
def _elu1_fwd_kernel(x, y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(x + offs, mask=m, other=0.0).to(tl.float32)
    out = tl.where(a > 0, a + 1.0, tl.exp(tl.minimum(a, 0.0)))
    tl.store(y + offs, out.to(y.dtype.element_ty), mask=m)


@triton.jit
def _elu1_bwd_kernel(x, dy, dx, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(x + offs, mask=m, other=0.0).to(tl.float32)
    g = tl.load(dy + offs, mask=m, other=0.0).to(tl.float32)
    d = tl.where(a > 0, g, g * tl.exp(tl.minimum(a, 0.0)))
    tl.store(dx + offs, d.to(dx.dtype.element_ty), mask=m)


class _Elu1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dtype):
        xc = x.contiguous()
        y = torch.empty(x.shape, dtype=dtype, device=x.device)
        n = xc.numel()
        if n:
            _elu1_fwd_kernel[(triton.cdiv(n, 2048),)](xc, y, n, BLOCK=2048)
        ctx.save_for_backward(xc)
        return y

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        n = x.numel()
        if n:
            _elu1_bwd_kernel[(triton.cdiv(n, 2048),)](x, dy, dx, n, BLOCK=2048)
        return dx, None


@torch.compiler.disable
def elu_plus_one_triton(x: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """elu(x) + 1, computed in fp32 and written in `dtype` (fp64 inputs go to the reference, which keeps fp64)."""
    if x.dtype == torch.float64:
        return ref.elu_plus_one(x)
    return _Elu1.apply(x, dtype)


@triton.jit(do_not_specialize=["N"])
def _favor_kernel(
    x, w, shift, out, z32, cmax, amax, N, H, D, M, eps,
    BR: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, PER_HEAD: tl.constexpr, MODE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, STORE_MAX: tl.constexpr,
):  # fmt: skip
    """One program: BR tokens of one (batch, head). x: [B, N, H, D]; w: [M, D] or [H, M, D]; shift: [M] or
    [H, M] added to the exponent (HAS_SHIFT); out: [B, N, H, M] in the features' dtype.
    MODE QUERY_ROW_MAX: exp(z − rowmax) + eps (the row max into amax [B, N, H] if STORE_MAX); KEY_GLOBAL_MAX: z
    into the fp32 z32 and an atomic max into cmax[b·H + h]; KEY_FIXED: exp(z) + eps."""
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    n = i_n * BR + tl.arange(0, BR)
    mr = n < N
    offs_m = tl.arange(0, BM)
    mm = offs_m < M
    x_rows = x + i_b * N * H * D + n * (H * D) + i_h * D
    if PER_HEAD:
        w += i_h * M * D
        shift += i_h * M
    acc = tl.zeros([BR, BM], dtype=tl.float32)
    sq = tl.zeros([BR], dtype=tl.float32)
    for d0 in range(0, D, BD):
        offs_d = d0 + tl.arange(0, BD)
        md = offs_d < D
        xf = tl.load(x_rows[:, None] + offs_d[None, :], mask=mr[:, None] & md[None, :], other=0.0).to(tl.float32)
        wf = tl.load(w + offs_m[:, None] * D + offs_d[None, :], mask=mm[:, None] & md[None, :], other=0.0)
        sq += tl.sum(xf * xf, 1)
        # The exponent feeds exp(): keep the projection near fp32 (3 tf32 passes), as the fp32 reference.
        acc += tl.dot(xf, tl.trans(wf.to(tl.float32)), input_precision="tf32x3")
    z = acc - 0.5 * sq[:, None]
    if HAS_SHIFT:
        z += tl.load(shift + offs_m, mask=mm, other=0.0).to(tl.float32)[None, :]
    z = tl.where(mm[None, :], z, float("-inf"))
    row_offs = i_b * N * H * M + n * (H * M) + i_h * M
    o_ptrs = out + row_offs[:, None] + offs_m[None, :]
    o_mask = mr[:, None] & mm[None, :]
    if MODE == 0:  # QUERY_ROW_MAX
        c = tl.max(z, 1)
        tl.store(o_ptrs, (tl.exp(z - c[:, None]) + eps).to(out.dtype.element_ty), mask=o_mask)
        if STORE_MAX:
            tl.store(amax + i_b * N * H + n * H + i_h, c, mask=mr)
    elif MODE == 1:  # KEY_GLOBAL_MAX
        tl.store(z32 + row_offs[:, None] + offs_m[None, :], z, mask=o_mask)
        block_max = tl.max(tl.where(mr, tl.max(z, 1), float("-inf")), 0)
        tl.atomic_max(cmax + i_bh, block_max)
    else:  # KEY_FIXED
        tl.store(o_ptrs, (tl.exp(z) + eps).to(out.dtype.element_ty), mask=o_mask)


@triton.jit
def _exp_shift_kernel(z, cmax, out, n, M, NH, H, eps, BLOCK: tl.constexpr):
    """out ← exp(z − c[b, h]) + eps, for z (fp32) and out laid out [B, N, H, M] (out may be z itself)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    row = offs // M
    h = row % H
    b = row // NH
    c = tl.load(cmax + b * H + h, mask=m, other=0.0)
    v = tl.load(z + offs, mask=m, other=0.0)
    tl.store(out + offs, (tl.exp(v - c) + eps).to(out.dtype.element_ty), mask=m)


class _FavorPlus(torch.autograd.Function):
    """(φ, a): φ the features in `dtype`; a the query row maxima [B, N, H] fp32 (QUERY_ROW_MAX with a shift),
    else an empty tensor. `shift` ([M] or [H, M], or None) is differentiable: its gradient is Σ dz."""

    @staticmethod
    def forward(ctx, x, w, shift, mode, eps, dtype):
        B, N, H, D = x.shape
        M = w.shape[-2]
        xc, wc = x.contiguous(), w.contiguous()
        out = torch.empty((B, N, H, M), dtype=dtype, device=x.device)
        # keys with the global max: the exponent is kept in fp32 until the max is known
        z32 = out if dtype == torch.float32 or mode != KEY_GLOBAL_MAX else torch.empty_like(out, dtype=torch.float32)
        cmax = torch.full((B * H,), float("-inf"), dtype=torch.float32, device=x.device)
        store_max = mode == QUERY_ROW_MAX and shift is not None
        amax = torch.empty((B, N, H) if store_max else (0,), dtype=torch.float32, device=x.device)
        # pointers the kernel never reads or writes stand in for the absent shift and row maxima
        sh = shift.float().contiguous() if shift is not None else cmax
        amax_ptr = amax if store_max else cmax
        BM = max(16, next_power_of_2(M))
        # Shared memory grows with the stages and BR × BM: with 32-row tiles and 3 stages, BM = 512 asked
        # 392-408 KB on sm_90 (limit 227 KB) and BM = 256 up to 216 KB (compiled for sm_90 on a CPU with triton
        # 3.6 and 3.8, flurka.ops.gpu_compile). Fewer rows and stages for many features: at most 144 KB.
        BR = 64 if BM <= 128 else 32 if BM <= 256 else 16
        stages = 3 if BM <= 128 else 2 if BM <= 256 else 1
        if out.numel():
            _favor_kernel[(triton.cdiv(N, BR), B * H)](
                xc, wc, sh, out, z32, cmax, amax_ptr, N, H, D, M, eps,
                BR=BR, BD=min(64, max(16, next_power_of_2(D))), BM=BM, PER_HEAD=w.dim() == 3,
                MODE=mode, HAS_SHIFT=shift is not None, STORE_MAX=store_max, num_stages=stages,
            )  # fmt: skip
            if mode == KEY_GLOBAL_MAX:
                n = out.numel()
                _exp_shift_kernel[(triton.cdiv(n, 1024),)](z32, cmax, out, n, M, N * H, H, eps, BLOCK=1024)
        ctx.save_for_backward(xc, wc, out)
        ctx.eps, ctx.has_shift = eps, shift is not None
        ctx.mark_non_differentiable(amax)
        return out, amax

    @staticmethod
    def backward(ctx, dphi, _da):
        x, w, phi = ctx.saved_tensors
        # φ = exp(z − c) + eps with c detached: dz = dφ ⊙ (φ − eps); z = W x − ‖x‖²/2 (+ shift).
        dz = dphi.float() * (phi.float() - ctx.eps)
        xf, wf = x.float(), w.float()
        if w.dim() == 2:
            dx = torch.einsum("bnhm,md->bnhd", dz, wf)
            dw = torch.einsum("bnhm,bnhd->md", dz, xf) if ctx.needs_input_grad[1] else None
        else:
            dx = torch.einsum("bnhm,hmd->bnhd", dz, wf)
            dw = torch.einsum("bnhm,bnhd->hmd", dz, xf) if ctx.needs_input_grad[1] else None
        dx = dx - xf * dz.sum(-1, keepdim=True)
        dshift = None
        if ctx.has_shift and ctx.needs_input_grad[2]:
            dshift = dz.sum((0, 1, 2)) if w.dim() == 2 else dz.sum((0, 1))
        return dx.to(x.dtype), (dw.to(w.dtype) if dw is not None else None), dshift, None, None, None


def _check_favor_args(x: torch.Tensor, projection: torch.Tensor) -> None:
    if x.dim() != 4 or projection.dim() not in (2, 3) or projection.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"x must be [B, N, H, D] and projection [m, D] or [H, m, D]; got {tuple(x.shape)}, "
            f"{tuple(projection.shape)}"
        )
    if projection.dim() == 3 and projection.shape[0] != x.shape[2]:
        raise ValueError(f"a per-head projection needs H={x.shape[2]} heads; got {projection.shape[0]}")
    if projection.shape[-2] > MAX_FUSED_FEATURES:
        raise ValueError(
            f"the fused kernel holds all m features of a token; m ≤ {MAX_FUSED_FEATURES}, got {projection.shape[-2]}"
        )


@torch.compiler.disable
def favor_plus_features_triton(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    eps: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Same as `reference.favor_plus_features` (non-causal stabilisers), fused, written in `dtype`. fp64 goes
    to the reference."""
    if x.dtype == torch.float64:
        return ref.favor_plus_features(x, projection, is_query=is_query, eps=eps)
    _check_favor_args(x, projection)
    mode = QUERY_ROW_MAX if is_query else KEY_GLOBAL_MAX
    return _FavorPlus.apply(x, projection, None, mode, eps, dtype)[0]


@torch.compiler.disable
def favor_plus_causal_features_triton(
    x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same as `reference.favor_plus_causal_features`: `(φ, None)` for keys, `(φ, a)` for queries, fused; φ in
    `dtype`. fp64 goes to the reference."""
    if x.dtype == torch.float64:
        return ref.favor_plus_causal_features(x, projection, is_query=is_query)
    _check_favor_args(x, projection)
    c = ref.favor_key_shift(projection)
    if is_query:
        phi, a = _FavorPlus.apply(x, projection, c, QUERY_ROW_MAX, 0.0, dtype)
        return phi, a
    return _FavorPlus.apply(x, projection, -c, KEY_FIXED, 0.0, dtype)[0], None
