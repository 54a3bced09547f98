"""Benchmark scripts run end to end (tiny shapes on CPU) and write results in the shared schema.
Nothing here measures speed: timings on CPU are not results."""

from __future__ import annotations

import json

from tests.helpers import run_script

ROW_KEYS = {"variant", "impl", "mode", "B", "N", "H", "D", "dtype", "causal", "ms", "tflops"}


def test_flurka_fig3_benchmark_dry_run(tmp_path):
    out = tmp_path / "flurka.json"
    run_script(["scripts/bench.py", "flurka", "--dry-run", "--out", str(out), "--profile", "flurka_rnn@70"])
    data = json.loads(out.read_text())
    assert set(data["provenance"]) >= {"commit", "gpu", "torch", "triton", "cuda", "command", "date"}
    assert data["complete"] is True
    variants = {r["variant"] for r in data["rows"]}
    assert {"full", "linformer", "performer", "flurka_performer", "flurka_rnn", "flurka_eva"} <= variants
    assert all(ROW_KEYS <= set(r) for r in data["rows"])
    assert all(r["flops"] > 0 for r in data["rows"])
    # the plain PyTorch formulation of each layer that has one, timed in the same run, computing the same function
    plain = [r for r in data["rows"] if r["impl"] == "plain"]
    plain_variants = {"linformer", "performer", "linear", "flurka_rnn", "flurka_performer"}
    assert {r["variant"] for r in plain} == plain_variants
    assert {(r["N"], r["mode"]) for r in plain} == {(n, m) for n in (40, 70) for m in ("fwd", "fwd_bwd")}
    assert all(r["rel_diff_vs_module"] < 1e-5 for r in plain if r["mode"] == "fwd")  # fp32 on CPU
    profiled = [r for r in data["rows"] if r.get("profile")]
    assert {(r["variant"], r["N"]) for r in profiled} == {("flurka_rnn", 70)} and len(profiled) == 4
    table = (tmp_path / "table.md").read_text()
    assert "ours vs the plain PyTorch formulation" in table and "flurka_rnn (plain PyTorch), fwd_bwd at N=70" in table
    claims = table.split("### ")[0]
    assert "plain" not in claims.split("| paper's claim")[1]  # the claims compare our layers, never a plain row
    assert out.with_suffix(".png").stat().st_size > 1000


def test_flurka_fig3_refuses_an_unknown_variant():
    proc = run_script(["scripts/bench.py", "flurka", "--dry-run", "--variants", "nope"], check=False)
    assert proc.returncode != 0 and "invalid choice: 'nope'" in proc.stderr


def test_bench_refuses_unknown_suite():
    proc = run_script(["scripts/bench.py", "nope"], check=False)
    assert proc.returncode != 0 and "usage" in proc.stderr
