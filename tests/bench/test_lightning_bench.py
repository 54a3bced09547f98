"""The Lightning bench's bookkeeping on CPU (timing needs the GPU): fla-core's chunk_simple_gla is the peer, its
absence is said (a row marked unavailable, never a number), and ours over fla is printed per mode and length."""

from __future__ import annotations

import importlib.util

import pytest

from flurka.bench import lightning


def _row(impl: str, mode: str, N: int, ms: float) -> dict:
    return dict(variant="lightning", impl=impl, mode=mode, B=4, N=N, H=32, D=128, ms=ms, tokens_per_s=4 * N / ms)


def test_ours_over_fla_is_printed_per_mode_at_the_lengths_both_ran():
    rows = [_row("triton", "fwd", 2048, 1.0), _row("fla", "fwd", 2048, 1.5), _row("triton", "fwd", 4096, 2.0),
            _row("triton", "fwd_bwd", 2048, 3.0), _row("fla", "fwd_bwd", 2048, 3.0)]  # fmt: skip
    rows.append(dict(variant="lightning", impl="fla", N=4096, B=4, H=32, D=128, status="unavailable", ms=None))
    assert lightning.peer_lines(rows) == [
        "fwd: ours/fla tokens/s by N: 2048: 1.50",
        "fwd_bwd: ours/fla tokens/s by N: 2048: 1.00",
    ]


@pytest.mark.skipif(importlib.util.find_spec("fla") is not None, reason="fla-core is installed here")
def test_without_fla_the_peer_is_unavailable_with_the_reason():
    op, why = lightning.fla_chunk_simple_gla()
    assert op is None and why.startswith("fla-core not installed")


def test_the_plot_skips_rows_without_a_measurement(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "CPU (test)")
    rows = [_row("triton", "fwd", 2048, 1.0), dict(variant="lightning", impl="fla", N=2048, B=4, H=32, D=128,
                                                   status="unavailable", ms=None)]  # fmt: skip
    lightning.plot(rows, tmp_path / "lightning.png")
    assert (tmp_path / "lightning.png").stat().st_size > 0


def _sdpa(mode: str, N: int, ms: float) -> dict:
    return dict(variant="flash", impl="sdpa", mode=mode, B=4, N=N, H=32, D=128, ms=ms, tokens_per_s=4 * N / ms)


def test_the_papers_claims_get_verdicts_from_the_rows(tmp_path):
    """Flat tokens/s (fwd+bwd within ±15% from 2k), the 32k speedups over FlashAttention-2 (SDPA flash), and the
    forward crossover; each says what it was measured on, and a claim without rows says so."""
    from flurka.bench.report import ResultsLog, write_claims_table

    rows = [
        _row("triton", "fwd_bwd", n, n / 1000 * f) for n, f in ((1024, 3.0), (2048, 1.0), (8192, 1.1), (32768, 1.05))
    ]
    rows += [_row("triton", "fwd", n, ms) for n, ms in ((1024, 0.3), (2048, 0.4), (4096, 0.5), (32768, 2.0))]
    rows += [_sdpa("fwd", n, ms) for n, ms in ((1024, 0.2), (2048, 0.5), (4096, 1.8), (32768, 100.0))]
    flat, fwd32, bwd32, cross = lightning.claims(rows)
    assert flat.holds is True and flat.ours_text.startswith("10% spread") and "N = 2048 … 32768" in flat.where
    assert fwd32.ours == 50.0 and fwd32.paper == 9.04 and fwd32.reached
    assert bwd32.ours is None and "no measurement" in bwd32.verdict()
    # ours is faster at 2k, 4k and 32k, slower at 1k: the crossover is 2k, within the paper's 2k–4k
    assert cross.ours_text == "faster from N = 2048" and cross.holds is True
    slow = lightning.claims([r for r in rows if r["N"] != 8192] + [_row("triton", "fwd_bwd", 8192, 8.192 * 2)])
    assert slow[0].holds is False and "does not support" in slow[0].verdict()

    log = ResultsLog(tmp_path / "lightning.json")
    log += rows
    log.finish()
    md = write_claims_table(log.path, tmp_path / "lightning.md", title="t", setup=["s"], claims=lightning.claims(rows))
    text = md.read_text()
    assert "constant in sequence length" in text and "supports the paper's claim" in text and "commit `" in text
