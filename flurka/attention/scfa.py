"""Sparse causal flash attention (Pagliardini et al., 2023): `scfa_qk` (QK-drop) and `scfa_hash` (hash-sparse).

QK-drop: every query and key is dropped independently with probability `drop`; query i attends to the kept
keys j ≤ i (original positions); a dropped query outputs 0, so its token keeps only the residual stream.
Hash: queries and keys are bucketed by angular LSH (argmax of [xR, −xR], R with n_buckets/2 unit-norm columns
per head, redrawn at every forward pass); query i attends to keys j ≤ i in its own bucket. A query always
shares a bucket with itself only if its key hashes like it, so a query may see no key: its output is 0.
No self-exclusion: with drop = 0, or one bucket, both equal causal softmax attention.
The masks are drawn in training and evaluation alike: the sparsity is part of the model, as in the paper.
"""

from __future__ import annotations

import torch

from flurka.attention.base import Attention


class SCFAQKAttention(Attention):
    name = "scfa_qk"
    supports_noncausal = False
    supports_cross = False
    supports_padding_mask = False

    def __init__(self, d_model: int, n_heads: int, *, drop: float = 0.5, **kwargs) -> None:
        kwargs.setdefault("causal", True)
        super().__init__(d_model, n_heads, **kwargs)
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"drop must be in [0, 1); got {drop}")
        self.drop = drop

    def attend(self, q, k, v, *, padding_mask):
        from flurka.ops.scfa import scfa_qk

        B, N, H, _ = q.shape
        q_keep = torch.rand(B, N, H, device=q.device) >= self.drop
        k_keep = torch.rand(B, N, H, device=q.device) >= self.drop
        return scfa_qk(q, k, v, q_keep, k_keep, backend=self.backend)

    def flops(self, n, d_model=None, n_heads=None):
        d = d_model or self.d_model
        kept = (1.0 - self.drop) ** 2
        return self.projection_flops(n, d) + int(2 * n * n * d * kept)  # half of 4·n²·d, causal


class SCFAHashAttention(Attention):
    name = "scfa_hash"
    supports_noncausal = False
    supports_cross = False
    supports_padding_mask = False

    def __init__(self, d_model: int, n_heads: int, *, n_buckets: int = 16, **kwargs) -> None:
        kwargs.setdefault("causal", True)
        super().__init__(d_model, n_heads, **kwargs)
        if n_buckets < 1 or (n_buckets > 1 and n_buckets % 2):
            raise ValueError(f"n_buckets must be 1 or an even number; got {n_buckets}")
        self.n_buckets = n_buckets

    def attend(self, q, k, v, *, padding_mask):
        from flurka.ops.scfa import hash_buckets, random_rotations, scfa_hash

        R = random_rotations(self.n_heads, self.head_dim, self.n_buckets, device=q.device)
        return scfa_hash(q, k, v, hash_buckets(q, R), hash_buckets(k, R), backend=self.backend)

    def flops(self, n, d_model=None, n_heads=None):
        d = d_model or self.d_model
        return self.projection_flops(n, d) + int(2 * n * n * d / self.n_buckets)
