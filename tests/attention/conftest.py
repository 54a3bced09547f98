"""Shared builders for attention tests: tiny fp64 modules, so comparisons are exact to rounding."""

from __future__ import annotations

import pytest
import torch

from flurka.attention import VARIANTS, build_attention

NONCAUSAL_ONLY = {"linformer"}
CAUSAL_ONLY = {"scfa_qk", "scfa_hash", "lightning"}
CAUSAL_VARIANTS = [n for n in VARIANTS if n not in NONCAUSAL_ONLY]
NONCAUSAL_VARIANTS = [n for n in VARIANTS if n not in CAUSAL_ONLY]

# small options so every variant's special paths (chunks, summaries, several EVA chunks) run at tiny N
SMALL_OPTIONS = {
    "linformer": {"downsample_len": 5},
    "performer": {"n_features": 16, "chunk_size": 4},
    "eva": {"chunk_size": 4},
    "flurka_performer": {"n_features": 16, "downsample_len": 5, "chunk_size": 4, "rows_per_chunk": 2},
    "flurka_rnn": {"downsample_len": 5, "chunk_size": 4, "rows_per_chunk": 2},
    "flurka_eva": {"downsample_len": 6, "chunk_size": 4, "rows_per_chunk": 2, "eva_chunk_size": 3},
    "scfa_qk": {"drop": 0.3},
    "scfa_hash": {"n_buckets": 4},
}


def make(name: str, *, d_model: int = 8, n_heads: int = 2, causal: bool, max_len: int = 16, **extra):
    opts = {**SMALL_OPTIONS.get(name, {}), **extra}
    m = build_attention(name, d_model, n_heads, causal=causal, max_len=max_len, backend="torch", **opts)
    return m.double().eval()


@pytest.fixture
def x64() -> torch.Tensor:
    return torch.randn(2, 11, 8, dtype=torch.float64)
