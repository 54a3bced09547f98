"""The one attention interface every variant implements (DESIGN.md, "The attention interface").

`Attention(d_model, n_heads, *, causal, max_len, **variant_options)`, called as
`attn(x, *, context=None, padding_mask=None) -> y` with x, y of shape [B, N, d_model].

Every variant owns the same projections — `q_proj`, `k_proj`, `v_proj`, `o_proj`, same names and shapes — so
a checkpoint trained with one variant loads into any other (up-training). Extra parameters get their own
names. Capabilities are class attributes; asking for one a variant lacks raises a ValueError naming the
variants that have it. There is no silent fallback anywhere.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from flurka.attention.positional import RotaryEmbedding, alibi_slopes

POSITIONAL_KINDS = ("none", "learned", "rope", "alibi")


def _variants_with(capability: str) -> str:
    from flurka.attention import variants_supporting  # late import: the registry imports this module

    return ", ".join(variants_supporting(capability))


class Attention(nn.Module):
    """Base class: projections, input checks, positional handling; subclasses implement `attend`."""

    name: ClassVar[str] = "base"
    supports_causal: ClassVar[bool] = True
    supports_noncausal: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True
    supports_padding_mask: ClassVar[bool] = True
    needs_fixed_length: ClassVar[bool] = False
    supports_rope: ClassVar[bool] = True
    supports_alibi: ClassVar[bool] = False

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        causal: bool = False,
        max_len: int = 1024,
        positional: str = "none",
        rope_scale: float = 1.0,
        rope_base: float = 10000.0,
        backend: str = "auto",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if d_model <= 0 or n_heads <= 0 or d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be a positive multiple of n_heads ({n_heads})")
        if causal and not self.supports_causal:
            raise ValueError(
                f"attention '{self.name}' cannot be causal (it mixes future tokens); causal variants: "
                f"{_variants_with('causal')}"
            )
        if not causal and not self.supports_noncausal:
            raise ValueError(
                f"attention '{self.name}' is causal only; non-causal variants: {_variants_with('noncausal')}"
            )
        if positional not in POSITIONAL_KINDS:
            raise ValueError(f"unknown positional {positional!r}; valid: {', '.join(POSITIONAL_KINDS)}")
        if positional == "rope" and not self.supports_rope:
            raise ValueError(
                f"attention '{self.name}' cannot use RoPE (its keys are mixed along the sequence before "
                f"attention); variants with RoPE: {_variants_with('rope')}"
            )
        if positional == "alibi" and not self.supports_alibi:
            raise ValueError(
                f"attention '{self.name}' cannot use ALiBi (it needs an explicit score matrix); variants "
                f"with ALiBi: {_variants_with('alibi')}"
            )
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.causal, self.max_len, self.positional, self.backend = causal, max_len, positional, backend
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = RotaryEmbedding(self.head_dim, base=rope_base, scale=rope_scale) if positional == "rope" else None
        if positional == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(n_heads), persistent=False)

    # ------------------------------------------------------------------ checks
    def check_inputs(self, x: torch.Tensor, context: torch.Tensor | None, padding_mask: torch.Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"'{self.name}' expects x of shape [B, N, {self.d_model}]; got {tuple(x.shape)}")
        if context is not None:
            if not self.supports_cross:
                raise ValueError(
                    f"attention '{self.name}' cannot do cross-attention; variants that can: {_variants_with('cross')}"
                )
            if context.dim() != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.d_model:
                raise ValueError(
                    f"'{self.name}' expects context of shape [{x.shape[0]}, M, {self.d_model}]; "
                    f"got {tuple(context.shape)}"
                )
        kv_len = (context if context is not None else x).shape[1]
        if padding_mask is not None:
            if not self.supports_padding_mask:
                raise ValueError(
                    f"attention '{self.name}' does not support padding masks; variants that do: "
                    f"{_variants_with('padding_mask')}"
                )
            if padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != (x.shape[0], kv_len):
                raise ValueError(
                    f"padding_mask must be a bool tensor [B, N_keys] = [{x.shape[0]}, {kv_len}] with True for "
                    f"real tokens; got {padding_mask.dtype} {tuple(padding_mask.shape)}"
                )
        longest = max(x.shape[1], kv_len)
        if self.needs_fixed_length and longest > self.max_len:
            raise ValueError(
                f"attention '{self.name}' projects the sequence axis to a fixed size and was built for at most "
                f"max_len={self.max_len} tokens; got {longest}. Rebuild it with a larger max_len."
            )

    # ------------------------------------------------------------------ helpers
    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """[B, N, d_model] -> [B, N, H, D] (the ops' layout)."""
        return t.view(t.shape[0], t.shape[1], self.n_heads, self.head_dim)

    def project_qkv(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q from x, k and v from the context (or x), in [B, N, H, D], with RoPE applied when configured.

        Self-attention runs the three projections as one GEMM on the concatenated weights (one launch, three times
        as wide: issue 15); q, k, v are then strided views of its [B, N, 3, H, D] output, which every op takes as
        it is. The parameters stay three nn.Linear, so checkpoints and up-training see the same names."""
        if context is None:
            weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            bias = None
            if self.q_proj.bias is not None:
                bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            qkv = nn.functional.linear(x, weight, bias).view(*x.shape[:2], 3, self.n_heads, self.head_dim)
            q, k, v = qkv.unbind(2)
        else:
            q = self.split_heads(self.q_proj(x))
            k = self.split_heads(self.k_proj(context))
            v = self.split_heads(self.v_proj(context))
        if self.rotary is not None:
            q_offset = max(k.shape[1] - q.shape[1], 0)
            q = self.rotary(q, offset=q_offset)
            k = self.rotary(k)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.check_inputs(x, context, padding_mask)
        q, k, v = self.project_qkv(x, context)
        y = self.attend(q, k, v, padding_mask=padding_mask)
        return self.o_proj(y.reshape(x.shape[0], x.shape[1], self.d_model))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The attention core on [B, N, H, D] tensors; returns [B, N, H, D] in q's dtype."""
        raise NotImplementedError

    # ------------------------------------------------------------------ cost
    def projection_flops(self, n: int, d_model: int) -> int:
        """q, k, v and output projections on n tokens (2 FLOPs per multiply-add)."""
        return 4 * 2 * n * d_model * d_model

    def flops(self, n: int, d_model: int | None = None, n_heads: int | None = None) -> int:
        """Forward FLOPs of this layer for one sequence of n tokens (projections + core)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"name={self.name}, d_model={self.d_model}, n_heads={self.n_heads}, causal={self.causal}, "
            f"positional={self.positional}, backend={self.backend}"
        )


def padding_to_keep(padding_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """A [B, N] keep-mask as a [B, N, 1, 1] float multiplier for [B, N, H, D] tensors (None stays None)."""
    if padding_mask is None:
        return None
    return padding_mask[:, :, None, None].to(like.dtype)
