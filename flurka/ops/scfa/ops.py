"""SCFA on the Triton kernels: host-side stable sort and compaction, range-masked attention, scatter back.

How the sparse pattern becomes dense work (per batch and head, all on the GPU, no Python loops):

1. Every row gets a bucket and a "live" flag. Hash: the bucket is the hash, every row is live. QK-drop: one bucket,
   live = kept. Rows are sorted by (live first, bucket) with a **stable** sort, so inside a bucket they keep
   their original order: causality is decided on original positions, and the sorted order is consistent with it.
   QK-drop compacts: only the first max-kept-count rows of the sorted order are kept (dropped rows go last).
2. Each sorted row carries its original index; dead rows get the pads -1 (queries) / a large value (keys).
   The composite (bucket, original index) is sorted ascending, so the keys visible to sorted query i,
   {j : bucket_j == bucket_i, pos_j <= pos_i, both live}, are ONE contiguous range [ks[i], ke[i]) of sorted keys,
   found with `searchsorted`. Likewise the queries that see sorted key j are the range [qs[j], qe[j]).
3. The kernel masks with those ranges and bounds each block's loop by their min/max over the block: this is the
   block skipping of SCFA (whole key blocks outside the bucket/position span of a query block are never loaded).
4. Gather and scatter are fused into the kernels: they read q, k, v rows and write o, dq, dk, dv rows at the
   original positions of the sorted rows (`pq`, `pk`), so no permuted copies of the tensors are made (on an H100
   at N=32k those copies cost more than the sparse kernel itself). Dropped queries and rows with no visible key
   get 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flurka.ops._backend import resolve_backend
from flurka.ops.scfa.reference import _check, scfa_hash_reference, scfa_qk_reference

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_DEAD = torch.iinfo(torch.int64).max // 4  # composite key of dead rows: after every live row
KEY_PAD = 2**30  # original index written for dead/padding keys ("a large value")


@dataclass
class SparsePlan:
    """Sorted order and visibility ranges for one call. pos_*: `[B*H, M]` original index of each sorted row with
    dead rows padded (-1 queries, KEY_PAD keys), for inspection and tests; the kernels use `ranges`."""

    pos_q: torch.Tensor
    pos_k: torch.Tensor
    ranges: object  # flurka.ops.flash.core.SparseRanges


def make_plan(
    q_bucket: torch.Tensor,
    k_bucket: torch.Tensor,
    q_live: torch.Tensor | None,
    k_live: torch.Tensor | None,
) -> SparsePlan:
    """Sort and compute visibility ranges. Buckets: int `[B, N, H]`; live: bool `[B, N, H]` or None (all live).
    With live flags the sorted arrays are truncated to the largest live count over (batch, head)."""
    from flurka.ops.flash.core import SparseRanges

    B, N, H = q_bucket.shape

    def sort_side(bucket: torch.Tensor, live: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        b = bucket.permute(0, 2, 1).to(torch.int64)  # [B, H, N]
        if live is None:
            # int32 keys: half the radix passes of int64 (bucket ids are small)
            perm = torch.sort(bucket.permute(0, 2, 1).to(torch.int32), dim=-1, stable=True).indices
            live_s = None
        else:
            lv = live.permute(0, 2, 1).to(torch.bool)
            key = torch.where(lv, b, _DEAD)  # live rows by bucket, dead rows last
            perm = torch.sort(key, dim=-1, stable=True).indices
            m = int(lv.sum(-1).max().item()) if lv.numel() else 0  # one host sync: the compacted size
            perm = perm[..., :m]
            live_s = lv.gather(-1, perm)
        b_s = b.gather(-1, perm)
        comp = b_s * N + perm  # (bucket, original index), ascending
        if live_s is not None:
            comp = torch.where(live_s, comp, _DEAD)
        return perm, b_s, comp, live_s

    perm_q, bq, cq, live_q = sort_side(q_bucket, q_live)
    perm_k, bk, ck, live_k = sort_side(k_bucket, k_live)

    ks = torch.searchsorted(ck, bq * N, right=False)
    ke = torch.searchsorted(ck, cq, right=True)
    qs = torch.searchsorted(cq, ck, right=False)
    qe = torch.searchsorted(cq, (bk + 1) * N, right=False)
    pos_q, pos_k = perm_q.clone(), perm_k.clone()
    if live_q is not None:
        ks = torch.where(live_q, ks, 0)
        ke = torch.where(live_q, ke, 0)
        pos_q = torch.where(live_q, pos_q, -1)
    if live_k is not None:
        qs = torch.where(live_k, qs, 0)
        qe = torch.where(live_k, qe, 0)
        pos_k = torch.where(live_k, pos_k, KEY_PAD)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(B * H, -1).to(torch.int32).contiguous()

    ranges = SparseRanges(ks=flat(ks), ke=flat(ke), qs=flat(qs), qe=flat(qe), pq=flat(perm_q), pk=flat(perm_k))
    return SparsePlan(pos_q=flat(pos_q), pos_k=flat(pos_k), ranges=ranges)


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, scale: float) -> torch.Tensor:
    """The kernel part: attention under a precomputed plan, output in the original row order."""
    from flurka.ops.flash.core import attention_core

    if plan.ranges.mq == 0 or plan.ranges.mk == 0:  # every query or every key dropped: all rows are 0
        return q * 0.0 + (k.sum() + v.sum()) * 0.0
    return attention_core(q, k, v, causal=False, scale=scale, ranges=plan.ranges)


def _run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, scale: float | None) -> torch.Tensor:
    if q.dtype not in _DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"triton SCFA takes q, k, v of one dtype in {_DTYPES}; got {q.dtype}, {k.dtype}, {v.dtype}")
    sm_scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return sparse_attention(q, k, v, plan, sm_scale)


@torch.compiler.disable
def scfa_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_keep: torch.Tensor,
    k_keep: torch.Tensor,
    *,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Causal QK-drop attention: query i attends key j iff j <= i and k_keep[j]; dropped queries output 0.

    q, k, v: `[B, N, H, D]`; q_keep, k_keep: bool `[B, N, H]` (per head). Rows with no visible key output 0.
    """
    _check(q, k, v, q_keep, k_keep, "q_keep,k_keep")
    if resolve_backend(backend, q) == "torch":
        return scfa_qk_reference(q, k, v, q_keep, k_keep, scale=scale)
    zeros = torch.zeros(q.shape[:3], dtype=torch.int64, device=q.device)
    plan = make_plan(zeros, zeros, q_keep.to(q.device), k_keep.to(q.device))
    return _run(q, k, v, plan, scale)


@torch.compiler.disable
def scfa_hash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_bucket: torch.Tensor,
    k_bucket: torch.Tensor,
    *,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Causal hash-sparse attention: query i attends key j iff j <= i and q_bucket[i] == k_bucket[j].

    q, k, v: `[B, N, H, D]`; q_bucket, k_bucket: integer `[B, N, H]` (e.g. from `hash_buckets`).
    """
    _check(q, k, v, q_bucket, k_bucket, "q_bucket,k_bucket")
    if q_bucket.dtype.is_floating_point or k_bucket.dtype.is_floating_point or q_bucket.dtype == torch.bool:
        raise ValueError(f"bucket ids must be integer tensors; got {q_bucket.dtype}, {k_bucket.dtype}")
    if resolve_backend(backend, q) == "torch":
        return scfa_hash_reference(q, k, v, q_bucket, k_bucket, scale=scale)
    plan = make_plan(q_bucket.to(q.device), k_bucket.to(q.device), None, None)
    return _run(q, k, v, plan, scale)
