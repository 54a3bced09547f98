"""Fused Triton feature maps with the semantics of `flurka.ops.features.reference`.

- `elu_plus_one_triton(x)`: elu(x) + 1 in one pass (the reference casts, applies elu, then adds: three passes).
  Output fp32, like the reference; the backward is one fused pass too.
- `favor_plus_features_triton(x, W, is_query=..., eps=...)`: FAVOR+ positive random features
  exp(Wx − ‖x‖²/2 − c) + eps. One kernel does the projection (fp32 accumulation), the squared norm, and for
  queries the per-token max and the exp in its epilogue; for keys (c = max over the sequence and the features
  of each (batch, head), as the reference's non-causal stabiliser) the kernel writes the exponent and an atomic
  running max, and a second elementwise pass applies the exp. The backward (c detached, as in the reference)
  is two GEMMs in torch: dz = dφ ⊙ (φ − eps), dx = dz W − x Σ_m dz, dW = Σ dzᵀ x.

Whether these pay on the GPU is recorded in `flurka/ops/linear/NOTES.md`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from flurka.ops.features import reference as ref


@triton.jit
def _elu1_fwd_kernel(x, y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(x + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(y + offs, tl.where(a > 0, a + 1.0, tl.exp(tl.minimum(a, 0.0))), mask=m)


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
    def forward(ctx, x):
        xc = x.contiguous()
        y = torch.empty(x.shape, dtype=torch.float32, device=x.device)
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
        return dx


@torch.compiler.disable
def elu_plus_one_triton(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1 in fp32 (fp64 inputs go to the reference, which keeps fp64)."""
    if x.dtype == torch.float64:
        return ref.elu_plus_one(x)
    return _Elu1.apply(x)


@triton.jit(do_not_specialize=["N"])
def _favor_kernel(
    x, w, out, cmax, N, H, D, M, eps,
    BR: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, PER_HEAD: tl.constexpr, IS_QUERY: tl.constexpr,
):  # fmt: skip
    """One program: BR tokens of one (batch, head). x: [B, N, H, D]; w: [M, D] or [H, M, D];
    out: [B, N, H, M] fp32. Queries: exp(z − rowmax) + eps. Keys: z, and an atomic max into cmax[b·H + h]."""
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = (i_bh // H).to(tl.int64), i_bh % H
    n = i_n * BR + tl.arange(0, BR)
    mr = n < N
    offs_m = tl.arange(0, BM)
    mm = offs_m < M
    x_rows = x + i_b * N * H * D + n * (H * D) + i_h * D
    if PER_HEAD:
        w += i_h * M * D
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
    z = tl.where(mm[None, :], z, float("-inf"))
    o_rows = out + i_b * N * H * M + n * (H * M) + i_h * M
    if IS_QUERY:
        c = tl.max(z, 1)
        tl.store(o_rows[:, None] + offs_m[None, :], tl.exp(z - c[:, None]) + eps, mask=mr[:, None] & mm[None, :])
    else:
        tl.store(o_rows[:, None] + offs_m[None, :], z, mask=mr[:, None] & mm[None, :])
        block_max = tl.max(tl.where(mr, tl.max(z, 1), float("-inf")), 0)
        tl.atomic_max(cmax + i_bh, block_max)


@triton.jit
def _exp_shift_kernel(z, cmax, n, M, NH, H, eps, BLOCK: tl.constexpr):
    """In place: z ← exp(z − c[b, h]) + eps, for z laid out [B, N, H, M]."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    row = offs // M
    h = row % H
    b = row // NH
    c = tl.load(cmax + b * H + h, mask=m, other=0.0)
    v = tl.load(z + offs, mask=m, other=0.0)
    tl.store(z + offs, tl.exp(v - c) + eps, mask=m)


class _FavorPlus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, is_query, eps):
        B, N, H, D = x.shape
        M = w.shape[-2]
        xc, wc = x.contiguous(), w.contiguous()
        out = torch.empty((B, N, H, M), dtype=torch.float32, device=x.device)
        cmax = torch.full((B * H,), float("-inf"), dtype=torch.float32, device=x.device)
        BM = max(16, triton.next_power_of_2(M))
        # Shared memory grows with the stages and BR × BM: with 32-row tiles and 3 stages, BM = 512 asked
        # 392-408 KB on sm_90 (limit 227 KB) and BM = 256 up to 216 KB (compiled for sm_90 on a CPU with triton
        # 3.6 and 3.8, flurka.ops.gpu_compile). Fewer rows and stages for many features: at most 144 KB.
        BR = 64 if BM <= 128 else 32 if BM <= 256 else 16
        stages = 3 if BM <= 128 else 2 if BM <= 256 else 1
        if out.numel():
            _favor_kernel[(triton.cdiv(N, BR), B * H)](
                xc, wc, out, cmax, N, H, D, M, eps,
                BR=BR, BD=min(64, max(16, triton.next_power_of_2(D))), BM=BM, PER_HEAD=w.dim() == 3,
                IS_QUERY=is_query, num_stages=stages,
            )  # fmt: skip
            if not is_query:
                n = out.numel()
                _exp_shift_kernel[(triton.cdiv(n, 1024),)](out, cmax, n, M, N * H, H, eps, BLOCK=1024)
        ctx.save_for_backward(xc, wc, out)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, dphi):
        x, w, phi = ctx.saved_tensors
        # φ = exp(z − c) + eps with c detached: dz = dφ ⊙ (φ − eps); z = W x − ‖x‖²/2.
        dz = dphi.float() * (phi - ctx.eps)
        xf, wf = x.float(), w.float()
        if w.dim() == 2:
            dx = torch.einsum("bnhm,md->bnhd", dz, wf)
            dw = torch.einsum("bnhm,bnhd->md", dz, xf) if ctx.needs_input_grad[1] else None
        else:
            dx = torch.einsum("bnhm,hmd->bnhd", dz, wf)
            dw = torch.einsum("bnhm,bnhd->hmd", dz, xf) if ctx.needs_input_grad[1] else None
        dx = dx - xf * dz.sum(-1, keepdim=True)
        return dx.to(x.dtype), (dw.to(w.dtype) if dw is not None else None), None, None


@torch.compiler.disable
def favor_plus_features_triton(
    x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, eps: float = 0.0
) -> torch.Tensor:
    """Same as `reference.favor_plus_features` (non-causal stabilisers), fused. fp64 goes to the reference."""
    if x.dtype == torch.float64:
        return ref.favor_plus_features(x, projection, is_query=is_query, eps=eps)
    if x.dim() != 4 or projection.dim() not in (2, 3) or projection.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"x must be [B, N, H, D] and projection [m, D] or [H, m, D]; got {tuple(x.shape)}, "
            f"{tuple(projection.shape)}"
        )
    if projection.dim() == 3 and projection.shape[0] != x.shape[2]:
        raise ValueError(f"a per-head projection needs H={x.shape[2]} heads; got {projection.shape[0]}")
    if projection.shape[-2] > 512:
        raise ValueError(f"the fused kernel holds all m features of a token; m ≤ 512, got {projection.shape[-2]}")
    return _FavorPlus.apply(x, projection, is_query, eps)
