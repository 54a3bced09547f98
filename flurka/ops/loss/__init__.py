"""The language-model loss over an output head: chunked (no [T, V] logits in memory) beside its reference."""

from flurka.ops.loss.chunked import default_chunk_tokens, linear_cross_entropy
from flurka.ops.loss.reference import linear_cross_entropy_reference

__all__ = ["default_chunk_tokens", "linear_cross_entropy", "linear_cross_entropy_reference"]
