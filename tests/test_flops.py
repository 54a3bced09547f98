"""The FLOP model: consistent with every attention module's flops(), and FLuRKA's Claim 1 over a grid."""

from __future__ import annotations

import itertools

import pytest

from flurka.attention import build_attention
from flurka.bench.flops import FLOPS, LayerShape, claim1_condition, claim1_report

OPTIONS = {
    "linformer": lambda s: {"downsample_len": s.d_k},
    "performer": lambda s: {"n_features": s.m},
    "eva": lambda s: {"chunk_size": s.eva_chunk},
    "flurka_performer": lambda s: {"downsample_len": s.d_k, "n_features": s.m},
    "flurka_rnn": lambda s: {"downsample_len": s.d_k},
    "flurka_eva": lambda s: {"downsample_len": s.d_k, "eva_chunk_size": s.eva_chunk},
}


@pytest.mark.parametrize("variant", list(FLOPS))
def test_flop_model_matches_each_module(variant):
    s = LayerShape(n=96, d_model=48, d_k=24, head_dim=12, n_heads=4, n_features=20, eva_chunk=8)
    attn = build_attention(
        variant, s.d_model, s.n_heads, causal=False, max_len=s.n, **OPTIONS.get(variant, lambda _: {})(s)
    )
    assert attn.flops(s.n) == FLOPS[variant](s)


def test_softmax_count_is_flashattentions_convention():
    s = LayerShape(n=1024, d_model=512, d_k=64, head_dim=64, n_heads=8)
    projections = 4 * 2 * 1024 * 512 * 512
    assert FLOPS["full"](s) - projections == 4 * 8 * 1024**2 * 64  # 4·H·N²·D per sequence


# hidden size = heads x head dim, as in every model here and in the paper's Fig. 3 (2600 = 8 x 325)
GRID = [
    LayerShape(n=n, d_model=h * dh, d_k=dk, head_dim=dh, n_heads=h)
    for n, dk, dh, h in itertools.product(
        [1024, 4096, 16384, 65536], [16, 32, 128, 256, 512, 1500], [16, 32, 64, 128, 325], [2, 4, 8, 12, 16]
    )
]


def test_claim1_flurka_beats_both_constituents_wherever_its_condition_holds():
    report = claim1_report(GRID)
    assert len(report["holds_wins"]) > 50  # the grid really exercises the hypothesis
    assert report["holds_loses"] == [], report["holds_loses"][:5]


def test_claim1_is_sufficient_not_necessary_and_can_fail_outside_it():
    report = claim1_report(GRID)
    assert report["fails_wins"]  # FLuRKA also wins at many shapes outside the hypothesis ...
    assert report["fails_loses"]  # ... and loses at some (e.g. short sequences, d_k ≥ d_m)
    short = LayerShape(n=1024, d_model=256, d_k=512, head_dim=64, n_heads=4)
    assert not claim1_condition(short) and short in report["fails_loses"]


def test_paper_fig3_shape_satisfies_claim1():
    fig3 = LayerShape(n=55_050, d_model=2600, d_k=1500, head_dim=325, n_heads=8)
    # N = 55k > d_k(H+2) = 15k > d_m = 2600 > d_k = 1500 > d_h = 325
    assert claim1_condition(fig3) and fig3 in claim1_report([fig3])["holds_wins"]
