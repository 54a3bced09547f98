"""Launchers and the autograd.Function around the Triton kernels in `_kernels.py`.

`attention_core` is shared by `flash_attention` (dense mode) and SCFA (sparse mode, on host-sorted, compacted
tensors with per-row key ranges). Inputs are `[B, N, H, D]` with unit stride on D; any other strides are passed
to the kernels as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from flurka.ops._backend import next_power_of_2
from flurka.ops.flash import _kernels as K

_PREC = {torch.float32: "ieee", torch.float16: "tf32", torch.bfloat16: "tf32"}


@dataclass(frozen=True)
class SparseRanges:
    """Sparse (SCFA) mode. Sorted query i sees sorted keys [ks[i], ke[i]); sorted key j is seen by sorted queries
    [qs[j], qe[j]) (a superset is enough for qs/qe: they only bound loops). pq[i] / pk[j] are the original row
    (sequence position) of sorted query i / key j: the kernels read q, k, v and write o, dq, dk, dv at those rows,
    so no gathered copies exist. int32, `[B*H, Mq]` (ks, ke, pq) and `[B*H, Mk]` (qs, qe, pk), contiguous;
    Mq, Mk <= N (compaction). Original rows that no sorted row points to get output and gradient 0."""

    ks: torch.Tensor
    ke: torch.Tensor
    qs: torch.Tensor
    qe: torch.Tensor
    pq: torch.Tensor
    pk: torch.Tensor

    @property
    def mq(self) -> int:
        return self.ks.shape[1]

    @property
    def mk(self) -> int:
        return self.qs.shape[1]


def _seq_bucket(n: int) -> int:
    """Autotune key for the sequence length: its power-of-two bucket, capped, so lengths never recompile."""
    return min(max(int(math.log2(max(n, 1))), 9), 14)


def _block_d(d: int) -> int:
    return max(16, next_power_of_2(d))


def _unit_d(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _tma_capable(device: torch.device) -> bool:
    """Tensor descriptors (TMA) exist from Hopper (sm_90) on; the interpreter emulates them on CPU tensors."""
    if K.INTERPRET:
        return True
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def _descriptors(*ts: torch.Tensor, ranges: SparseRanges | None) -> tuple | None:
    """One `[B, N, H, D]` tensor descriptor per tensor when the launch can load through TMA, else None.

    TMA applies in dense mode only (SCFA's rows are gathered through pq/pk), at D = BLOCK_D <= 128 (a padded head
    would read the next head's lanes into the padding), and when the hardware's rules hold: 16-byte aligned base
    and strides, unit stride on D. The block shape is set per config by the autotuner's pre-hook."""
    D = ts[0].shape[-1]
    if ranges is not None or _block_d(D) != D or D > K.TMA_MAX_BLOCK_D or K.tma_mode() == "off":
        return None
    if not _tma_capable(ts[0].device):
        return None
    for t in ts:
        size = t.element_size()
        if t.stride(-1) != 1 or t.data_ptr() % 16 or any(s * size % 16 for s in t.stride()[:-1]):
            return None
    return tuple(TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 16, 1, D]) for t in ts)


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    scale: float,
    pad: torch.Tensor | None,
    ranges: SparseRanges | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    B, N, H, D = q.shape
    nq, nk = (N, k.shape[1]) if ranges is None else (ranges.mq, ranges.mk)
    # compacted SCFA: original rows outside the compacted set are never written, so they start at 0
    o = torch.empty_like(q) if nq == N else torch.zeros_like(q)
    lse = torch.empty(B * H, nq, device=q.device, dtype=torch.float32)
    dummy = lse  # never read when the matching constexpr flag is off
    grid = lambda meta: (triton.cdiv(nq, meta["BLOCK_M"]), B * H)  # noqa: E731
    descs = _descriptors(q, k, v, ranges=ranges)
    K.kernel("fwd", _block_d(D), tma=descs is not None)[grid](
        q, k, v, o, lse,
        pad if pad is not None else dummy,
        ranges.ks if ranges is not None else dummy,
        ranges.ke if ranges is not None else dummy,
        ranges.pq if ranges is not None else dummy,
        ranges.pk if ranges is not None else dummy,
        *(descs or (q, k, v)),  # the pointer configs never read the descriptors
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
        H, nq, nk, scale * math.log2(math.e), _seq_bucket(max(nq, nk)),
        HEAD_DIM=D, BLOCK_D=_block_d(D), CAUSAL=causal, SPARSE=ranges is not None,
        HAS_PAD=pad is not None, PREC=_PREC[q.dtype], EVEN_D=_block_d(D) == D,
    )  # fmt: skip
    return o, lse


def _backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    causal: bool,
    scale: float,
    pad: torch.Tensor | None,
    ranges: SparseRanges | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, N, H, D = q.shape
    nq, nk = (N, k.shape[1]) if ranges is None else (ranges.mq, ranges.mk)
    do = _unit_d(do)
    bd = _block_d(D)
    delta = torch.empty_like(lse)
    bm_delta = 16 if K.INTERPRET else max(16, min(128, 8192 // bd))
    pq = ranges.pq if ranges is not None else delta
    pk = ranges.pk if ranges is not None else delta
    K._bwd_delta_kernel[(triton.cdiv(nq, bm_delta), B * H)](
        o, do, delta, pq, o.stride(0), o.stride(1), o.stride(2), do.stride(0), do.stride(1), do.stride(2), H, nq,
        HEAD_DIM=D, BLOCK_D=bd, BLOCK_M=bm_delta, SPARSE=ranges is not None,
    )  # fmt: skip
    dq = torch.empty_like(q) if nq == N else torch.zeros_like(q)
    dk = torch.empty_like(k) if nk == k.shape[1] else torch.zeros_like(k)
    dv = torch.empty_like(v) if nk == v.shape[1] else torch.zeros_like(v)
    dummy = lse
    common = dict(
        HEAD_DIM=D, BLOCK_D=bd, CAUSAL=causal, SPARSE=ranges is not None, HAS_PAD=pad is not None,
        PREC=_PREC[q.dtype], EVEN_D=bd == D,
    )  # fmt: skip
    qk_scale = scale * math.log2(math.e)
    bucket = _seq_bucket(max(nq, nk))
    pad_arg = pad if pad is not None else dummy
    ks = ranges.ks if ranges is not None else dummy
    ke = ranges.ke if ranges is not None else dummy
    descs = _descriptors(q, k, v, do, ranges=ranges)
    tma = descs is not None
    descs = descs or (q, k, v, do)  # the pointer configs never read the descriptors
    grid_n = lambda meta: (triton.cdiv(nk, meta["BLOCK_N"]), B * H)  # noqa: E731
    K.kernel("dkdv", bd, tma=tma)[grid_n](
        q, k, v, do, dk, dv, lse, delta, pad_arg, ks, ke,
        ranges.qs if ranges is not None else dummy, ranges.qe if ranges is not None else dummy, pq, pk, *descs,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2),
        H, nq, nk, qk_scale, scale, bucket, **common,
    )  # fmt: skip
    grid_m = lambda meta: (triton.cdiv(nq, meta["BLOCK_M"]), B * H)  # noqa: E731
    K.kernel("dq", bd, tma=tma)[grid_m](
        q, k, v, do, dq, lse, delta, pad_arg, ks, ke, pq, pk, *descs,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dq.stride(0), dq.stride(1), dq.stride(2),
        H, nq, nk, qk_scale, scale, bucket, **common,
    )  # fmt: skip
    return dq, dk, dv


class _AttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, pad, ranges):
        q, k, v = _unit_d(q), _unit_d(k), _unit_d(v)
        o, lse = _forward(q, k, v, causal, scale, pad, ranges)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.scale, ctx.pad, ctx.ranges = causal, scale, pad, ranges
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _backward(do, q, k, v, o, lse, ctx.causal, ctx.scale, ctx.pad, ctx.ranges)
        return dq, dk, dv, None, None, None, None


def attention_core(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    scale: float,
    pad: torch.Tensor | None = None,
    ranges: SparseRanges | None = None,
) -> torch.Tensor:
    """Triton attention on `[B, N, H, D]`. `pad`: `[B, Nk]` int8/bool (nonzero = real key), contiguous.
    `ranges`: sparse mode (SCFA); then `causal` and `pad` must be off, the ranges carry all the masking."""
    if ranges is not None and (causal or pad is not None):
        raise ValueError("sparse ranges already encode causality and padding; pass causal=False, pad=None")
    return _AttentionFn.apply(q, k, v, causal, scale, pad, ranges)
