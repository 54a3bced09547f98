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
