"""The FLOP model: forward FLOPs of one attention layer for every variant (2 FLOPs per multiply-add).

Written in the FLuRKA paper's parameters — sequence length N, hidden size d_m, downsampling length d_k, head
dim d_h, heads H (d_m need not equal H·d_h), random features m — so FLuRKA's Claim 1 can be checked over
any grid. Where d_m = H·d_h it equals each attention module's own `flops()` (tested), which is what
throughput and MFU use. Element-wise work (softmax, feature maps' exp) is not counted: these are matmul
FLOPs, the quantity the claim is about.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerShape:
    n: int  # sequence length N
    d_model: int  # d_m
    d_k: int  # downsampling length (Linformer / FLuRKA)
    head_dim: int  # d_h
    n_heads: int  # H
    n_features: int | None = None  # Performer random features m (default: d_h)
    eva_chunk: int = 16  # EVA window / chunk size

    @property
    def inner(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def m(self) -> int:
        return self.n_features or self.head_dim


def _proj(rows: int, s: LayerShape) -> int:
    """One projection d_m -> H·d_h (or back) over `rows` rows."""
    return 2 * rows * s.d_model * s.inner


def _q_and_o(s: LayerShape) -> int:
    return 2 * _proj(s.n, s)


def _kernel_core(n_q: int, n_k: int, s: LayerShape, features: int) -> int:
    """φ(K)ᵀ[V, 1] over n_k rows and φ(Q)·[S, z] over n_q rows, per head."""
    return 2 * (n_k + n_q) * s.n_heads * features * (s.head_dim + 1)


def _favor_features(rows: int, s: LayerShape) -> int:
    return 2 * rows * s.n_heads * s.m * s.head_dim


def _eva_core(n_q: int, n_k: int, s: LayerShape) -> int:
    c = math.ceil(n_k / s.eva_chunk)
    local = 2 * 2 * n_q * s.eva_chunk * s.inner
    summaries = 2 * 2 * n_k * s.inner + 2 * 2 * c * s.n_heads * s.head_dim**2
    return local + summaries + 2 * 2 * n_q * c * s.inner


def _downsample_before(s: LayerShape) -> int:
    """FLuRKA: E·X and F·X on d_m-wide inputs, then the K/V projections on d_k rows."""
    return 2 * 2 * s.d_k * s.n * s.d_model + 2 * _proj(s.d_k, s)


def full(s: LayerShape) -> int:
    return _q_and_o(s) + 2 * _proj(s.n, s) + 2 * 2 * s.n * s.n * s.inner


def linformer(s: LayerShape) -> int:
    """Low-rank: K/V projected on N rows, then E·K, F·V, then softmax attention over d_k rows."""
    return _q_and_o(s) + 2 * _proj(s.n, s) + 2 * 2 * s.d_k * s.n * s.inner + 2 * 2 * s.n * s.d_k * s.inner


def linear(s: LayerShape) -> int:
    return _q_and_o(s) + 2 * _proj(s.n, s) + _kernel_core(s.n, s.n, s, s.head_dim)


def performer(s: LayerShape) -> int:
    return _q_and_o(s) + 2 * _proj(s.n, s) + 2 * _favor_features(s.n, s) + _kernel_core(s.n, s.n, s, s.m)


def eva(s: LayerShape) -> int:
    return _q_and_o(s) + 2 * _proj(s.n, s) + _eva_core(s.n, s.n, s)


def flurka_rnn(s: LayerShape) -> int:
    return _q_and_o(s) + _downsample_before(s) + _kernel_core(s.n, s.d_k, s, s.head_dim)


def flurka_performer(s: LayerShape) -> int:
    features = _favor_features(s.n, s) + _favor_features(s.d_k, s)
    return _q_and_o(s) + _downsample_before(s) + features + _kernel_core(s.n, s.d_k, s, s.m)


def flurka_eva(s: LayerShape) -> int:
    return _q_and_o(s) + _downsample_before(s) + _eva_core(s.n, s.d_k, s)


FLOPS = {
    "full": full,
    "flash": full,
    "linformer": linformer,
    "linear": linear,
    "performer": performer,
    "eva": eva,
    "flurka_rnn": flurka_rnn,
    "flurka_performer": flurka_performer,
    "flurka_eva": flurka_eva,
}
KERNEL_OF = {"flurka_performer": "performer", "flurka_rnn": "linear", "flurka_eva": "eva"}


def claim1_condition(s: LayerShape) -> bool:
    """FLuRKA Claim 1's hypothesis: N > d_k(H + 2) > d_m > d_k > d_h.

    The claim assumes the usual d_m = H·d_h: with a narrower attention (H·d_h ≤ d_k < d_m) downsampling the
    d_m-wide input costs as much as the K/V projections it saves, and FLuRKA can lose (see the tests).
    """
    return s.n > s.d_k * (s.n_heads + 2) > s.d_model > s.d_k > s.head_dim


def claim1_report(shapes: Iterable[LayerShape]) -> dict[str, list[LayerShape]]:
    """Sort a grid into: the claim's hypothesis holds and FLuRKA wins / loses; it fails and FLuRKA still wins
    (the claim is sufficient, not necessary) / loses. 'Wins' = fewer FLOPs than both constituents."""
    out: dict[str, list[LayerShape]] = {k: [] for k in ("holds_wins", "holds_loses", "fails_wins", "fails_loses")}
    for s in shapes:
        wins = all(FLOPS[f](s) < min(FLOPS["linformer"](s), FLOPS[k](s)) for f, k in KERNEL_OF.items())
        out[("holds_" if claim1_condition(s) else "fails_") + ("wins" if wins else "loses")].append(s)
    return out
