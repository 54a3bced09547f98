"""The flash speed suite's bookkeeping on CPU (the timing itself needs the GPU): every SDPA backend is a named
implementation beside ours, a backend without a kernel for a point is recorded as unavailable (never a number),
and the printed ratios are ours over each backend."""

from __future__ import annotations

import pytest

from flurka.bench import flash


def _rows(n_tflops: dict[tuple[str, int], float | None]) -> list[dict]:
    rows = []
    for (impl, n), tf in n_tflops.items():
        ms = None if tf is None else 1.0
        row = flash._row(impl, "fwd", 16384 // n, n, 64, True, ms, "" if ms else "No available kernel")
        rows.append(row | ({"tflops": tf} if tf is not None else {}))
    return rows


def test_ours_is_compared_with_each_sdpa_backend_from_2k_and_at_1k():
    tf = {("triton", 1024): 240.0, ("sdpa_cudnn", 1024): 300.0, ("sdpa_flash", 1024): 200.0,
          ("triton", 2048): 450.0, ("sdpa_cudnn", 2048): 500.0, ("sdpa_flash", 2048): 300.0,
          ("triton", 4096): 480.0, ("sdpa_cudnn", 4096): 480.0, ("sdpa_flash", 4096): 320.0}  # fmt: skip
    lines = flash.speedup_lines(_rows(tf))
    assert lines == [
        "D=64 causal=True fwd: ours/SDPA cuDNN for N>=2k: min 0.90 geomean 0.95, at 1k 0.80",
        "D=64 causal=True fwd: ours/SDPA flash (FA2) for N>=2k: min 1.50 geomean 1.50, at 1k 1.20",
    ]


def test_an_unavailable_backend_is_a_row_without_numbers_and_out_of_the_ratios(tmp_path):
    rows = _rows({("triton", 2048): 450.0, ("sdpa_cudnn", 2048): None, ("sdpa_flash", 2048): 300.0})
    cudnn = next(r for r in rows if r["impl"] == "sdpa_cudnn")
    assert cudnn["status"] == "unavailable" and cudnn["ms"] is None and cudnn["tflops"] is None
    assert cudnn["error"] == "No available kernel"
    assert flash.speedup_lines(rows) == ["D=64 causal=True fwd: ours/SDPA flash (FA2) for N>=2k: min 1.50 geomean 1.50"]
    flash.plot(rows, tmp_path / "flash.png")  # the plot draws what was measured and skips the rest
    assert (tmp_path / "flash.png").stat().st_size > 0


def test_wide_heads_are_compared_with_the_faster_pytorch_path():
    """D 256 / 325 (issue 16): ours over the faster of SDPA's own choice and the naive path, per point; a point
    without ours or without a PyTorch path says nothing."""
    rows = []
    for impl, tf in (("triton", 120.0), ("sdpa_auto", 40.0), ("torch", 60.0)):
        rows.append(flash._row(impl, "fwd", 16, 1024, 325, False, 1.0) | {"tflops": tf})
    rows.append(flash._row("sdpa_auto", "fwd_bwd", 16, 1024, 325, False, 1.0) | {"tflops": 30.0})
    rows.append(flash._row("triton", "fwd", 16, 1024, 64, False, 1.0) | {"tflops": 300.0})  # not a wide head
    assert flash.wide_head_lines(rows) == [
        "D=325 causal=False fwd N=1024: ours 120.0 TFLOP/s, 2.00x the faster PyTorch path (naive, 60.0)"
    ]
    assert set(flash.WIDE_IMPLS) <= set(flash._impls(causal=False)) and flash.WIDE_HEAD_DIMS == (256, 325)


def test_issue_16_bars_are_claims_judged_at_the_worst_point():
    rows = []
    for n, ours, cudnn in ((1024, 240.0, 320.0), (2048, 460.0, 500.0), (4096, 500.0, 480.0)):
        rows += [flash._row("triton", "fwd", 16384 // n, n, 128, True, 1.0) | {"tflops": ours},
                 flash._row("sdpa_cudnn", "fwd", 16384 // n, n, 128, True, 1.0) | {"tflops": cudnn}]  # fmt: skip
    rows += [flash._row("triton", "fwd", 16, 1024, 325, False, 1.0) | {"tflops": 50.0},
             flash._row("torch", "fwd", 16, 1024, 325, False, 1.0) | {"tflops": 80.0}]  # fmt: skip
    from_2k, at_1k, wide = flash.claims(rows)
    assert from_2k.ours == 0.92 and from_2k.reached and "N=2048" in from_2k.where
    assert at_1k.ours == 0.75 and at_1k.reached is False
    assert wide.ours == 0.625 and wide.reached is False and "D=325" in wide.where


def test_scfa_claims_are_the_32k_speedups_over_each_causal_baseline():
    from flurka.bench import scfa

    rows = [{"variant": "flash", "impl": i, "N": 32768, "ms": ms} for i, ms in
            (("sdpa_flash", 1200.0), ("sdpa_cudnn", 800.0), ("triton", 1000.0))]  # fmt: skip
    sparse = {"impl": "triton", "N": 32768}
    rows += [{**sparse, "variant": "scfa_hash", "n_buckets": 64, "includes_sort": True, "ms": 100.0},
             {**sparse, "variant": "scfa_hash", "n_buckets": 64, "includes_sort": False, "ms": 1.0},
             {**sparse, "variant": "scfa_qk", "drop": 0.8, "includes_sort": True, "ms": 200.0}]  # fmt: skip
    got = {(c.claim.split(" faster")[0].rsplit(" ", 1)[0], c.where.split("over ")[1]): c for c in scfa.claims(rows)}
    assert got["hash nb=64", "SDPA flash (FA2), the paper's baseline"].ours == 12.0  # the sort-included row
    assert got["hash nb=64", "our flash"].ours == 10.0 and got["hash nb=64", "our flash"].paper == 3.45
    assert got["QK-drop s=0.8", "SDPA cuDNN"].ours == 4.0 and not got["QK-drop s=0.8", "SDPA cuDNN"].reached
    assert len(got) == 6


def test_the_default_run_has_every_implementation_and_unknown_ones_are_refused():
    assert flash.DEFAULT_IMPLS.split(",") == ["triton", "sdpa_cudnn", "sdpa_flash", "torch"]
    assert set(flash._impls(causal=True)) == set(flash.LABELS)  # + ours pinned to pointer or TMA loads
    with pytest.raises(SystemExit, match="unknown --impls \\['sdpa'\\]; valid: triton, sdpa_cudnn"):
        flash.main(["--impls", "triton,sdpa"])


def test_the_scfa_figure_draws_both_sdpa_backends_beside_our_flash(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from flurka.bench import scfa

    drawn = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, path, **kw: drawn.append(fig))
    flash_ms = {"triton": 2.0, "sdpa_cudnn": 1.5, "sdpa_flash": 3.0}
    rows = [{"variant": "flash", "impl": i, "N": n, "ms": ms, "includes_sort": True}
            for i, ms in flash_ms.items() for n in (1024, 2048)]  # fmt: skip
    sparse = (("scfa_hash", "n_buckets", 8), ("scfa_qk", "drop", 0.5))
    rows += [{"variant": v, "impl": "triton", "N": n, "ms": 0.5, key: val, "includes_sort": True}
             for v, key, val in sparse for n in (1024, 2048)]  # fmt: skip
    scfa.plot(rows, tmp_path / "scfa.png")
    labels = [line.get_label() for line in drawn[0].axes[0].get_lines()]
    assert labels[:3] == ["SDPA cuDNN (causal)", "SDPA flash (FA2) (causal)", "our flash (causal)"]


@pytest.mark.interpret
def test_ours_pinned_to_pointer_or_tma_loads_and_the_tuned_tiles_are_recorded(monkeypatch):
    """triton_ptr / triton_tma run our kernels under FLURKA_FLASH_TMA=off / only (restored afterwards), and a row
    of ours names the config each kernel's autotuner chose: which tile, through TMA or not."""
    import os

    import torch

    monkeypatch.delenv("FLURKA_FLASH_TMA", raising=False)
    q, k, v = (torch.randn(1, 20, 2, 32) for _ in range(3))
    impls = flash._impls(causal=True)
    out = {impl: impls[impl](q, k, v) for impl in ("triton_ptr", "triton_tma", "torch")}
    assert "FLURKA_FLASH_TMA" not in os.environ
    assert torch.equal(out["triton_ptr"], out["triton_tma"])
    assert torch.allclose(out["triton_tma"], out["torch"], atol=1e-5)
    assert flash.tuned_configs("only")["fwd"].startswith("BLOCK_M=16, BLOCK_N=16, USE_TMA=True")
    assert "USE_TMA" not in flash.tuned_configs("off")["fwd"]
