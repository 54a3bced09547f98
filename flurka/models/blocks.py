"""The transformer block every model shares: pre-LayerNorm, attention (any variant), optional cross-attention,
and an MLP (GELU by default). Attention comes from a factory, so the block never knows which variant it holds."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from flurka.attention import Attention

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply an activation by name (one of ACTIVATIONS)."""
    if activation == "relu":
        return nn.functional.relu(x)
    if activation in ("gelu", "gelu_tanh"):
        return nn.functional.gelu(x, approximate="tanh" if activation == "gelu_tanh" else "none")
    raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")


class MLP(nn.Module):
    """fc -> activation -> proj. `gelu` is the exact (erf) GELU of BERT and ViT; `gelu_tanh` is GPT-2's
    tanh approximation ("gelu_new"), needed to reproduce GPT-2 checkpoints exactly; `relu` is the original
    Transformer's."""

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True, activation: str = "gelu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(activate(self.fc(x), self.activation)))

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class Block(nn.Module):
    """Pre-LN (default): x + attn(ln(x)) [+ cross(ln(x), context)] + mlp(ln(x)).

    `norm="post"` is the original Transformer's / BERT's order, x = ln(x + attn(x)) etc., so BERT checkpoints
    load exactly; the parameter names are the same in both orders."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        attention: Callable[..., Attention],
        *,
        causal: bool,
        max_len: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        positional: str = "none",
        bias: bool = True,
        cross_attention: Callable[..., Attention] | None = None,
        context_len: int | None = None,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        norm: str = "pre",
    ) -> None:
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post'; got {norm!r}")
        self.norm = norm
        self.ln_attn = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.attn = attention(d_model, n_heads, causal=causal, max_len=max_len, positional=positional, bias=bias)
        self.cross = None
        if cross_attention is not None:
            self.ln_cross = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
            self.cross = cross_attention(
                d_model, n_heads, causal=False, max_len=max(max_len, context_len or max_len), bias=bias
            )
        self.ln_mlp = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.mlp = MLP(d_model, d_ff or 4 * d_model, dropout, bias, activation)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.norm == "post":
            x = self.ln_attn(x + self.drop(self.attn(x, padding_mask=padding_mask)))
            if self.cross is not None:
                x = self.ln_cross(x + self.drop(self.cross(x, context=context, padding_mask=context_mask)))
            return self.ln_mlp(x + self.mlp(x))
        x = x + self.drop(self.attn(self.ln_attn(x), padding_mask=padding_mask))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.ln_cross(x), context=context, padding_mask=context_mask))
        return x + self.mlp(self.ln_mlp(x))

    def flops(self, n: int) -> int:
        d = self.ln_attn.normalized_shape[0]
        mlp = 2 * 2 * n * d * self.mlp.fc.out_features
        cross = self.cross.flops(n) if self.cross is not None else 0
        return self.attn.flops(n) + cross + mlp


def init_weights(module: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) for linear and embedding weights, output projections scaled by
    1/√(2·n_layers) so the residual stream's variance does not grow with depth. Parameters that are not
    nn.Linear/nn.Embedding (Linformer/FLuRKA E, F; positional tables) keep their own initialisation."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            std = 0.02 / (2 * n_layers) ** 0.5 if name.endswith(("o_proj", "mlp.proj")) else 0.02
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
