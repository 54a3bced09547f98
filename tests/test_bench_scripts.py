"""Benchmark scripts run end to end (tiny shapes on CPU) and write results in the shared schema.
Nothing here measures speed: timings on CPU are not results."""

from __future__ import annotations

import json

from tests.helpers import run_script

ROW_KEYS = {"variant", "impl", "mode", "B", "N", "H", "D", "dtype", "causal", "ms", "tflops"}


def test_flurka_fig3_benchmark_dry_run(tmp_path):
    out = tmp_path / "flurka.json"
    run_script(["scripts/bench.py", "flurka", "--dry-run", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data["provenance"]) >= {"commit", "gpu", "torch", "triton", "cuda", "command", "date"}
    variants = {r["variant"] for r in data["rows"]}
    assert {"full", "linformer", "performer", "flurka_performer", "flurka_rnn", "flurka_eva"} <= variants
    assert all(ROW_KEYS <= set(r) for r in data["rows"])
    assert all(r["flops"] > 0 for r in data["rows"])
    assert out.with_suffix(".png").stat().st_size > 1000


def test_bench_refuses_unknown_suite():
    proc = run_script(["scripts/bench.py", "nope"], check=False)
    assert proc.returncode != 0 and "usage" in proc.stderr
