"""A Vision Transformer (Dosovitskiy et al., 2021) with any non-causal attention variant.

    model = ViT(image_size=32, channels=3, num_classes=10, patch_size=4, n_layers=6, n_heads=8, d_model=256,
                attention="flurka_performer")
    out = model(pixels, labels=labels)        # pixels [B, C, H, W]; {"logits": [B, num_classes], "loss"}

Patches are embedded by a convolution whose stride is the patch size (a linear map of each flattened patch),
flattened row by row; a learned class token is prepended (`pool="cls"`) and learned positions are added. The
pre-LN encoder is the shared `Block`; the head is LayerNorm → linear on the class token, or on the mean of the
patch tokens with `pool="mean"` (then there is no class token). `max_len` is the number of tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention import attention_factory, factory_name
from flurka.attention.positional import LearnedPositionalEmbedding
from flurka.models.blocks import Block, init_weights

POOLS = ("cls", "mean")


def _square_side(image_size: int | tuple[int, int] | list[int]) -> int:
    if isinstance(image_size, int):
        return image_size
    sides = tuple(image_size)
    if len(sides) != 2 or sides[0] != sides[1]:
        raise ValueError(f"ViT supports square images only; got image_size={sides}")
    return int(sides[0])


class ViT(nn.Module):
    causal = False
    task_head_prefixes = ("head.",)  # a new classifier when fine-tuning on another label set

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        channels: int,
        num_classes: int,
        patch_size: int = 4,
        n_layers: int,
        n_heads: int,
        d_model: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        attention="full",
        bias: bool = True,
        pool: str = "cls",
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        side = _square_side(image_size)
        if patch_size <= 0 or side % patch_size:
            raise ValueError(f"image_size={side} is not divisible by patch_size={patch_size}")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
        factory = attention_factory(attention)
        self.attention_name = factory_name(factory)
        self.image_size, self.channels, self.patch_size, self.pool = side, channels, patch_size, pool
        self.num_classes, self.d_model = num_classes, d_model
        self.n_patches = (side // patch_size) ** 2
        self.max_len = self.n_patches + (1 if pool == "cls" else 0)
        self.patch_emb = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if pool == "cls" else None
        self.pos_emb = LearnedPositionalEmbedding(self.max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(
                d_model,
                n_heads,
                factory,
                causal=False,
                max_len=self.max_len,
                d_ff=d_ff,
                dropout=dropout,
                bias=bias,
                activation=activation,
                layer_norm_eps=layer_norm_eps,
            )
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.head = nn.Linear(d_model, num_classes, bias=True)
        init_weights(self, n_layers)  # the patch convolution keeps PyTorch's fan-in initialisation

    def forward(self, pixels: torch.Tensor, *, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        expected = (self.channels, self.image_size, self.image_size)
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
            raise ValueError(f"pixels must be [B, {', '.join(map(str, expected))}]; got {tuple(pixels.shape)}")
        x = self.patch_emb(pixels).flatten(2).transpose(1, 2)  # [B, n_patches, d_model], row-major patches
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.drop(x + self.pos_emb(x.shape[1]))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return out

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.pos_emb.weight.numel()
        return n

    def flops_per_sequence(self, n: int | None = None) -> int:
        """Forward FLOPs for one image (n tokens, default the model's own count), from each attention variant's
        own count, plus the patch embedding and the head."""
        n = self.max_len if n is None else n
        n_patches = n - (1 if self.cls_token is not None else 0)
        patch = 2 * n_patches * self.channels * self.patch_size**2 * self.d_model
        head = 2 * self.d_model * self.num_classes
        return patch + sum(block.flops(n) for block in self.blocks) + head
