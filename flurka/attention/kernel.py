"""Kernel (linear) attention: `performer` (FAVOR+) and `linear` ("Transformers are RNNs": elu+1, relu,
cosFormer, identity features).

softmax(QKᵀ)V is replaced by φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1), linear in the sequence length. The core runs in
`flurka.ops.linear.linear_attention` (Triton on a GPU, chunked PyTorch elsewhere). The causal Performer (and
causal FLuRKA-Performer, through `causal_kernel_attention`) uses `favor_plus_causal_features`: keys shifted by
the data-independent c_m = ‖w_m‖²/2, so that no future key can change a past output, not even through
floating-point underflow, and queries by their own max, which cancels.
"""

from __future__ import annotations

import torch

from flurka.attention.base import Attention
from flurka.attention.causal_kernel import causal_kernel_attention
from flurka.ops.features import (
    FEATURE_MAPS,
    cosformer_features,
    favor_plus_causal_features,
    favor_plus_features,
    orthogonal_gaussian_projection,
)

NORMALIZER_EPS = 1e-6


def zero_padded_keys(phi_k: torch.Tensor, v: torch.Tensor, padding_mask: torch.Tensor | None):
    """Padding keys contribute nothing: zero their features and values (keep-mask True = real token)."""
    if padding_mask is None:
        return phi_k, v
    keep = padding_mask[:, :, None, None]
    return phi_k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)


def kernel_core_flops(n_q: int, n_k: int, n_heads: int, n_features: int, head_dim: int) -> int:
    """φ(K)ᵀV and φ(Q)·S, plus the normaliser: 2·(n_k + n_q)·H·M·(Dv + 1)."""
    return 2 * (n_k + n_q) * n_heads * n_features * (head_dim + 1)


class LinearAttention(Attention):
    """Linear attention with a fixed feature map, normalised (Katharopoulos et al., 2020)."""

    name = "linear"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        feature_map: str = "elu",
        normalize: bool = True,
        decay: torch.Tensor | None = None,
        **kwargs,
    ) -> None:
        super().__init__(d_model, n_heads, **kwargs)
        valid = (*FEATURE_MAPS, "cosformer")
        if feature_map not in valid:
            raise ValueError(f"unknown feature_map {feature_map!r}; valid: {', '.join(valid)}")
        if normalize and feature_map == "identity":
            raise ValueError("feature_map='identity' can be negative; use it with normalize=False (Lightning style)")
        self.feature_map, self.normalize = feature_map, normalize
        if decay is not None:
            self.register_buffer("decay", decay.float(), persistent=False)
        else:
            self.decay = None

    @property
    def n_features(self) -> int:
        return 2 * self.head_dim if self.feature_map == "cosformer" else self.head_dim

    def features(self, x: torch.Tensor, offset: int = 0, dtype: torch.dtype | None = None) -> torch.Tensor:
        """φ(x) in `dtype` (None: fp32, as the reference maps); fused kernels on the Triton backend."""
        if self.feature_map == "cosformer":
            if x.shape[1] + offset > self.max_len:
                raise ValueError(
                    f"cosFormer re-weighting is defined up to max_len={self.max_len} positions; got "
                    f"{x.shape[1] + offset}"
                )
            pos = torch.arange(offset, offset + x.shape[1], device=x.device)
            phi = cosformer_features(x, pos, self.max_len)
            return phi if dtype is None else phi.to(dtype)
        return FEATURE_MAPS[self.feature_map](x, dtype=dtype, backend=self.backend)

    def attend(self, q, k, v, *, padding_mask):
        from flurka.ops.linear import linear_attention

        phi_q = self.features(q, offset=max(k.shape[1] - q.shape[1], 0), dtype=q.dtype)
        phi_k, v = zero_padded_keys(self.features(k, dtype=q.dtype), v, padding_mask)
        out, _ = linear_attention(
            phi_q,
            phi_k,
            v,
            causal=self.causal,
            decay=self.decay,
            normalize=self.normalize,
            eps=NORMALIZER_EPS,
            backend=self.backend,
        )
        return out.to(q.dtype)

    def flops(self, n, d_model=None, n_heads=None):
        d, h = d_model or self.d_model, n_heads or self.n_heads
        return self.projection_flops(n, d) + kernel_core_flops(n, n, h, self.n_features, d // h)


class PerformerAttention(Attention):
    """Performer (Choromanski et al., 2021): FAVOR+ positive orthogonal random features for the softmax kernel.

    `n_features` random features shared by all heads; `redraw_interval` > 0 redraws them every that many
    training forward passes (drawn from `feature_seed` and the redraw count, so a resumed run redraws the
    same features). q and k are scaled by D^-¼ so that φ(q)·φ(k) estimates exp(q·k/√D).
    """

    name = "performer"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_features: int | None = None,
        redraw_interval: int = 0,
        feature_seed: int = 0,
        chunk_size: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(d_model, n_heads, **kwargs)
        self.n_features = n_features or 2 * self.head_dim
        self.redraw_interval, self.feature_seed, self.chunk_size = redraw_interval, feature_seed, chunk_size
        self.register_buffer("projection", self._draw(0))
        self.register_buffer("forward_count", torch.zeros((), dtype=torch.long))

    def _draw(self, index: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.feature_seed * 1_000_003 + index)
        return orthogonal_gaussian_projection(self.n_features, self.head_dim, generator=gen)

    def maybe_redraw(self) -> None:
        if not (self.training and self.redraw_interval > 0):
            return
        if int(self.forward_count) > 0 and int(self.forward_count) % self.redraw_interval == 0:
            index = int(self.forward_count) // self.redraw_interval
            self.projection.copy_(self._draw(index).to(self.projection.device))
        self.forward_count += 1

    def kernel_attend(self, q, k, v, *, padding_mask, summary_kv=None):
        """FAVOR+ core on [B, N, H, D]; `summary_kv` = causal FLuRKA's chunk summary keys/values [B, C, R, H, D]."""
        scale = self.head_dim**-0.25
        q, k = q * scale, k * scale
        if self.causal:
            return self._causal_favor(q, k, v, padding_mask=padding_mask, summary_kv=summary_kv, scale=scale)
        from flurka.ops.linear import linear_attention

        opts = dict(dtype=q.dtype, backend=self.backend)
        phi_q = favor_plus_features(q, self.projection, is_query=True, **opts)
        phi_k, v = zero_padded_keys(favor_plus_features(k, self.projection, is_query=False, **opts), v, padding_mask)
        out, _ = linear_attention(phi_q, phi_k, v, causal=False, eps=NORMALIZER_EPS, backend=self.backend)
        return out.to(q.dtype)

    def _causal_favor(self, q, k, v, *, padding_mask, summary_kv, scale: float) -> torch.Tensor:
        """Causal FAVOR+ (q, k already scaled by D^-¼): keys shifted by a data-independent constant, each
        query by its own max a; the normaliser then keeps an eps relative to the query's own denominator
        (`causal_kernel_attention`'s query_scale = exp(−a))."""
        # query and key features in v's dtype, the one causal_kernel_attention computes in; the summaries' in
        # fp32, as their states
        opts = dict(dtype=v.dtype, backend=self.backend)
        phi_q, shift = favor_plus_causal_features(q, self.projection, is_query=True, **opts)
        phi_k, _ = favor_plus_causal_features(k, self.projection, is_query=False, **opts)
        s_phi = s_v = None
        if summary_kv is not None:
            sk, s_v = summary_kv
            B, C, R, H, D = sk.shape
            sk = sk.reshape(B, C * R, H, D) * scale
            s_phi, _ = favor_plus_causal_features(sk, self.projection, is_query=False, backend=self.backend)
            s_phi = s_phi.view(B, C, R, H, self.n_features)
        out = causal_kernel_attention(
            phi_q,
            phi_k,
            v,
            chunk_size=self.chunk_size,
            summary_phi=s_phi,
            summary_v=s_v,
            key_keep=padding_mask,
            eps=NORMALIZER_EPS,
            query_scale=torch.exp(-shift),
            backend=self.backend,
        )
        return out.to(q.dtype)

    def attend(self, q, k, v, *, padding_mask):
        self.maybe_redraw()
        return self.kernel_attend(q, k, v, padding_mask=padding_mask)

    def flops(self, n, d_model=None, n_heads=None):
        d, h = d_model or self.d_model, n_heads or self.n_heads
        features = 2 * 2 * n * h * self.n_features * (d // h)  # projections of q and k onto the random features
        return self.projection_flops(n, d) + features + kernel_core_flops(n, n, h, self.n_features, d // h)
