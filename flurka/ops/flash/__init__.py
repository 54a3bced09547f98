"""Exact softmax attention: FlashAttention-2 style Triton kernel and its PyTorch reference."""

from flurka.ops.flash.ops import flash_attention
from flurka.ops.flash.reference import attention_reference

__all__ = ["attention_reference", "flash_attention"]
