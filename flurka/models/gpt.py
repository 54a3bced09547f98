"""A GPT-2-style decoder-only language model with any causal attention variant (nanoGPT's shape).

    model = GPT(vocab_size=65, max_len=256, n_layers=4, n_heads=4, d_model=128, attention="flurka_performer")
    out = model(input_ids)                     # {"logits": [B, N, V]}
    out = model(input_ids, labels=labels)      # {"loss": scalar}: no logits (fused_loss=False keeps them)

Token embeddings are tied to the output head. With labels the loss comes from `flurka.ops.loss`, chunk by
chunk, without the [B, N, V] logits: at GPT-2's vocabulary they were the step's largest tensors.
Positions: learned absolute (added to the embeddings), or RoPE / ALiBi inside attention, or none.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention import attention_factory, factory_name
from flurka.attention.positional import LearnedPositionalEmbedding
from flurka.models.blocks import Block, init_weights
from flurka.ops.loss import linear_cross_entropy


class GPT(nn.Module):
    causal = True

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        n_layers: int,
        n_heads: int,
        d_model: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        positional: str = "learned",
        bias: bool = True,
        attention="full",
        activation: str = "gelu",  # "gelu_tanh" for GPT-2's own weights
        layer_norm_eps: float = 1e-5,
        fused_loss: bool = True,
    ) -> None:
        super().__init__()
        self.fused_loss = fused_loss
        factory = attention_factory(attention)
        self.attention_name = factory_name(factory)
        self.max_len, self.vocab_size, self.d_model = max_len, vocab_size, d_model
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = LearnedPositionalEmbedding(max_len, d_model) if positional == "learned" else None
        attn_positional = positional if positional in ("rope", "alibi") else "none"
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(
                d_model,
                n_heads,
                factory,
                causal=True,
                max_len=max_len,
                d_ff=d_ff,
                dropout=dropout,
                positional=attn_positional,
                bias=bias,
                activation=activation,
                layer_norm_eps=layer_norm_eps,
            )
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        init_weights(self, n_layers)
        self.lm_head.weight = self.tok_emb.weight  # tied after init, so both names hold one tensor

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, N]; got shape {tuple(input_ids.shape)}")
        n = input_ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequence of {n} tokens is longer than the model's max_len={self.max_len}")
        x = self.tok_emb(input_ids)
        if self.pos_emb is not None:
            x = x + self.pos_emb(n)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        h = self.ln_f(x)
        if labels is not None and self.fused_loss:
            return {"loss": linear_cross_entropy(h, self.lm_head.weight, labels)}
        logits = self.lm_head(h)
        out = {"logits": logits}
        if labels is not None:
            # from the logits already made (the reference op would redo the head's matmul)
            out["loss"] = nn.functional.cross_entropy(
                logits.float().view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
            )
        return out

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.pos_emb is not None:
            n -= self.pos_emb.weight.numel()
        return n

    def flops_per_sequence(self, n: int) -> int:
        """Forward FLOPs for one sequence of n tokens, from each attention variant's own count."""
        head = 2 * n * self.d_model * self.vocab_size
        return sum(block.flops(n) for block in self.blocks) + head
