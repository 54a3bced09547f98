"""Lightning Attention-2 (Qin et al., 2024): causal linear attention with a per-head decay.

kv_t = λ_h·kv_{t−1} + k_tᵀv_t, o_t = q_t·kv_t, with λ_h = exp(−s_h) and s_h the ALiBi slopes (TransNormerLLM's
choice). By default q and k are used as they are (identity feature map), there is no normaliser, and each
head's output is RMS-normalised (TransNormer's NormAttention), since without a normaliser the scale of
o_t grows with the effective window 1/(1 − λ). With decay=1, an elu feature map, the normaliser on and the
output norm off, it is exactly causal `linear` attention.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention.kernel import LinearAttention
from flurka.attention.positional import alibi_slopes


def lightning_decay(n_heads: int, decay: str | float) -> torch.Tensor:
    """Per-head λ: 'alibi' gives exp(−slope_h); a number gives that λ for every head."""
    if decay == "alibi":
        return torch.exp(-alibi_slopes(n_heads))
    lam = float(decay)
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"decay must be 'alibi' or a number in (0, 1]; got {decay!r}")
    return torch.full((n_heads,), lam)


class LightningAttention(LinearAttention):
    name = "lightning"
    supports_noncausal = False
    supports_cross = False

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        decay: str | float = "alibi",
        feature_map: str = "identity",
        normalize: bool = False,
        output_norm: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            d_model,
            n_heads,
            feature_map=feature_map,
            normalize=normalize,
            decay=lightning_decay(n_heads, decay),
            **kwargs,
        )
        self.out_norm = nn.RMSNorm(self.head_dim, elementwise_affine=False) if output_norm else None

    def attend(self, q, k, v, *, padding_mask):
        out = super().attend(q, k, v, padding_mask=padding_mask)
        return self.out_norm(out) if self.out_norm is not None else out
