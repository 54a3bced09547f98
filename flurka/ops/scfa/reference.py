"""Plain-PyTorch sparse causal flash attention (SCFA, Pagliardini et al. 2023): O(N^2) masked fp32 math.

Both variants are causal on the original positions, per head:
- QK-drop: query i attends key j iff j <= i and k_keep[j]; a dropped query (q_keep[i] False) outputs 0.
- Hash: query i attends key j iff j <= i and q_bucket[i] == k_bucket[j].
Rows with no visible key output exactly 0, with zero gradients, never NaN.
Also the angular LSH used by the hash variant: `random_rotations` and `hash_buckets`.
"""

from __future__ import annotations

import torch

from flurka.ops._backend import check_bnhd, without_autocast
from flurka.ops.flash.reference import masked_softmax_attention


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_bnhd(name, t)
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"SCFA is self-attention: q, k, v must share [B, N, H, D]; got {q.shape}, {k.shape}, {v.shape}"
        )
    na, nb = names.split(",")
    for name, t in ((na, a), (nb, b)):
        if tuple(t.shape) != tuple(q.shape[:3]):
            raise ValueError(f"{name} must be [B, N, H] = {tuple(q.shape[:3])}; got {tuple(t.shape)}")


def _masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Attention with a `[B, H, N, N]` visibility mask, in fp32 (fp64 stays fp64), returned in q's dtype."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    qh, kh, vh = (t.to(compute).transpose(1, 2) for t in (q, k, v))
    return masked_softmax_attention(qh, kh, vh, mask, scale).transpose(1, 2).to(q.dtype)


def _causal(n: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(n, device=device)
    return (i[None, :] <= i[:, None])[None, None]  # [1, 1, N, N]


def scfa_qk_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_keep: torch.Tensor,
    k_keep: torch.Tensor,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Causal attention; dropped keys are invisible, dropped queries output 0. q_keep, k_keep: bool `[B, N, H]`."""
    _check(q, k, v, q_keep, k_keep, "q_keep,k_keep")
    qk = q_keep.to(torch.bool).permute(0, 2, 1)[..., :, None]  # [B, H, N, 1]
    kk = k_keep.to(torch.bool).permute(0, 2, 1)[..., None, :]  # [B, H, 1, N]
    mask = _causal(q.shape[1], q.device) & kk & qk
    return _masked(q, k, v, mask, scale)


def scfa_hash_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_bucket: torch.Tensor,
    k_bucket: torch.Tensor,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Causal attention restricted to keys in the query's bucket. q_bucket, k_bucket: `[B, N, H]` integers."""
    _check(q, k, v, q_bucket, k_bucket, "q_bucket,k_bucket")
    qb = q_bucket.permute(0, 2, 1)[..., :, None]
    kb = k_bucket.permute(0, 2, 1)[..., None, :]
    mask = _causal(q.shape[1], q.device) & (qb == kb)
    return _masked(q, k, v, mask, scale)


def random_rotations(
    n_heads: int,
    head_dim: int,
    n_buckets: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random projections for angular LSH: `[n_heads, head_dim, n_buckets // 2]` with unit-norm columns.

    n_buckets must be even (the hash takes argmax over [xR, -xR]), or 1 (a single bucket: `[H, D, 0]`).
    """
    if n_buckets < 1 or (n_buckets != 1 and n_buckets % 2):
        raise ValueError(f"n_buckets must be 1 or an even number >= 2; got {n_buckets}")
    if n_heads < 1 or head_dim < 1:
        raise ValueError(f"n_heads and head_dim must be positive; got {n_heads}, {head_dim}")
    gen_device = generator.device if generator is not None else device
    r = torch.randn(n_heads, head_dim, n_buckets // 2, generator=generator, device=gen_device, dtype=torch.float32)
    r = r / r.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return r.to(device=device, dtype=dtype)


def hash_buckets(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Bucket id per token and head: argmax over [x R_h, -x R_h]. x: `[B, N, H, D]`, rotations `[H, D, nb/2]`.

    Returns int64 `[B, N, H]` in [0, n_buckets). With zero columns (n_buckets == 1) every token is in bucket 0.
    """
    check_bnhd("x", x)
    B, N, H, D = x.shape
    if rotations.dim() != 3 or rotations.shape[:2] != (H, D):
        raise ValueError(f"rotations must be [H, D, n_buckets//2] = [{H}, {D}, *]; got {tuple(rotations.shape)}")
    if rotations.shape[2] == 0:
        return torch.zeros(B, N, H, dtype=torch.int64, device=x.device)
    with without_autocast(x):  # fp32 hashing under autocast too: the buckets must not depend on it
        proj = torch.einsum("bnhd,hdr->bnhr", x.float(), rotations.to(device=x.device, dtype=torch.float32))
    return torch.cat([proj, -proj], dim=-1).argmax(dim=-1)
