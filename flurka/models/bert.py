"""A BERT-style bidirectional encoder with any non-causal attention variant.

    model = BERT(vocab_size=30522, max_len=512, n_layers=12, n_heads=12, d_model=768, attention="flurka_eva")
    out = model(input_ids, padding_mask=mask, token_type_ids=segments, labels=labels)  # {"logits", "loss"}

Embeddings: token + segment (token_type_ids) + learned position, then a LayerNorm, as in BERT. Heads:

- `mlm`: BERT's prediction head, dense → activation → LayerNorm → a decoder tied to the token embeddings with
  its own output bias; logits [B, N, V], loss = cross-entropy over `labels` with −100 ignored.
- `classification`: BERT's pooler (dense + tanh on the first token) → dropout → linear to `num_labels`;
  logits [B, num_labels], cross-entropy loss.
- `regression` (STS-B): the same with one output; logits [B, 1], MSE loss against float labels
  (`num_labels` is ignored).

`norm="pre"` (default) uses the shared pre-LN block and a final LayerNorm; `norm="post"` is the original BERT
order (no final LayerNorm: every block ends with one), so Hugging Face BERT checkpoints load exactly
(`flurka/models/hf.py`, with `layer_norm_eps=1e-12`).

The padding mask goes to every attention layer; a variant that cannot take one raises its own error.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention import attention_factory, factory_name
from flurka.attention.positional import LearnedPositionalEmbedding
from flurka.models.blocks import Block, activate, init_weights

HEADS = ("mlm", "classification", "regression")
POSITIONAL = ("learned", "rope", "alibi", "none")


class BERT(nn.Module):
    causal = False
    task_head_prefixes = ("mlm_", "pooler.", "classifier.")  # swapped, not transferred, when the task changes

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
        head: str = "mlm",
        num_labels: int = 2,
        type_vocab_size: int = 2,
        norm: str = "pre",
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if positional not in POSITIONAL:
            raise ValueError(f"unknown positional {positional!r}; valid: {', '.join(POSITIONAL)}")
        if head not in HEADS:
            raise ValueError(f"unknown BERT head {head!r}; valid: {', '.join(HEADS)}")
        if head == "classification" and num_labels < 2:
            raise ValueError(f"a classification head needs num_labels ≥ 2; got {num_labels} (use head=regression)")
        factory = attention_factory(attention)
        self.attention_name = factory_name(factory)
        self.max_len, self.vocab_size, self.d_model, self.head = max_len, vocab_size, d_model, head
        self.num_labels = 1 if head == "regression" else num_labels
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.seg_emb = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        self.pos_emb = LearnedPositionalEmbedding(max_len, d_model) if positional == "learned" else None
        self.emb_ln = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(
                d_model,
                n_heads,
                factory,
                causal=False,
                max_len=max_len,
                d_ff=d_ff,
                dropout=dropout,
                positional=positional if positional in ("rope", "alibi") else "none",
                bias=bias,
                activation=activation,
                layer_norm_eps=layer_norm_eps,
                norm=norm,
            )
            for _ in range(n_layers)
        )
        # post-LN blocks already end in a LayerNorm; pre-LN needs one before the head
        self.ln_f = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if norm == "pre" else None
        self.activation = activation
        if head == "mlm":
            self.mlm_dense = nn.Linear(d_model, d_model, bias=bias)
            self.mlm_ln = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
            self.mlm_head = nn.Linear(d_model, vocab_size, bias=True)  # the bias is the head's own
        else:
            self.pooler = nn.Linear(d_model, d_model, bias=bias)
            self.classifier = nn.Linear(d_model, self.num_labels, bias=True)
        init_weights(self, n_layers)
        if head == "mlm":
            self.mlm_head.weight = self.tok_emb.weight  # tied after init, so both names hold one tensor

    def encode(
        self,
        input_ids: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The encoder's output [B, N, d_model] (after the final LayerNorm), before any head."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, N]; got shape {tuple(input_ids.shape)}")
        n = input_ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequence of {n} tokens is longer than the model's max_len={self.max_len}")
        x = self.tok_emb(input_ids)
        if token_type_ids is not None:
            if self.seg_emb is None:
                raise ValueError("token_type_ids given, but the model was built with type_vocab_size=0")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids must have input_ids' shape {tuple(input_ids.shape)}; "
                    f"got {tuple(token_type_ids.shape)}"
                )
            x = x + self.seg_emb(token_type_ids)
        elif self.seg_emb is not None:
            x = x + self.seg_emb.weight[0]  # BERT's default: every token in segment 0
        if self.pos_emb is not None:
            x = x + self.pos_emb(n)
        x = self.drop(self.emb_ln(x))
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask)
        return self.ln_f(x) if self.ln_f is not None else x

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        x = self.encode(input_ids, padding_mask=padding_mask, token_type_ids=token_type_ids)
        if self.head == "mlm":
            logits = self.mlm_head(self.mlm_ln(activate(self.mlm_dense(x), self.activation)))
        else:
            # the first token ([CLS]) is always a real token, so padding never reaches the pooled vector
            pooled = torch.tanh(self.pooler(x[:, 0]))
            logits = self.classifier(self.drop(pooled))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = self.loss(logits, labels)
        return out

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.head == "regression":
            return nn.functional.mse_loss(logits.float().squeeze(-1), labels.float().view(-1))
        return nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.pos_emb is not None:
            n -= self.pos_emb.weight.numel()
        return n

    def flops_per_sequence(self, n: int) -> int:
        """Forward FLOPs for one sequence of n tokens, from each attention variant's own count."""
        d = self.d_model
        if self.head == "mlm":
            head = 2 * n * d * d + 2 * n * d * self.vocab_size
        else:
            head = 2 * d * d + 2 * d * self.num_labels
        return sum(block.flops(n) for block in self.blocks) + head
