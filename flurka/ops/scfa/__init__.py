"""Sparse causal flash attention (SCFA): QK-drop and hash-sparse, Triton kernels and PyTorch references."""

from flurka.ops.scfa.ops import scfa_hash, scfa_qk
from flurka.ops.scfa.reference import hash_buckets, random_rotations, scfa_hash_reference, scfa_qk_reference

__all__ = ["hash_buckets", "random_rotations", "scfa_hash", "scfa_hash_reference", "scfa_qk", "scfa_qk_reference"]
