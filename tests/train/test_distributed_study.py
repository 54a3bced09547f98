"""Issue 9's distributed study (`scripts/bench.py distributed`), through its CPU dry run: gloo, 2 processes."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT, run_script

CPU_TOL = 2e-5  # as the torchrun DDP/FSDP tests in test_training.py


@pytest.mark.slow
def test_dry_run_writes_every_row_of_the_study(tmp_path):
    out = tmp_path / "out"
    before = sorted((ROOT / "results").rglob("*"))
    proc = run_script(["scripts/bench.py", "distributed", "--dry-run", "--out", str(out)], env={"OMP_NUM_THREADS": "1"})
    assert "[distributed] done" in proc.stdout, proc.stdout[-2000:]
    assert sorted((ROOT / "results").rglob("*")) == before  # a dry run never writes into results/

    data = json.loads((out / "results.json").read_text())
    assert {"commit", "gpu", "torch", "triton", "cuda", "command", "date"} <= set(data["provenance"])
    rows = data["rows"]
    assert not [r for r in rows if r.get("error")], [r["error"] for r in rows if r.get("error")]
    by = {(r["kind"], r["impl"]): r for r in rows}

    curve = by[("curve", "ddp")]  # 2 processes vs 1 on the same global batch
    assert curve["steps_compared"] == 6 and curve["max_abs_diff"] < CPU_TOL and curve["within_tol"]
    assert by[("curve", "fsdp")]["max_abs_diff"] < CPU_TOL

    throughput = [r for r in rows if r["kind"] == "throughput"]
    assert {r["impl"] for r in throughput} == {"single", "ddp", "fsdp"}
    for r in throughput:  # DESIGN.md speed-row keys, and the scaling over the 1-process run
        assert {"variant", "impl", "mode", "B", "N", "H", "D", "dtype", "causal", "ms", "tflops"} <= set(r)
        assert r["scaling"] > 0 and r["tokens_per_s"] > 0
    assert by[("throughput", "single")]["scaling"] == 1.0

    memory = {r["impl"]: r for r in rows if r["kind"] == "memory"}
    assert set(memory) == {"single", "ddp", "fsdp"}
    assert all(r["peak_mem_gb"] is None for r in memory.values())  # CUDA memory: null on CPU

    resume = by[("resume", "ddp")]  # killed at step 5, resumed from the step-4 checkpoint on 2 processes
    assert resume["crash_returncode"] != 0 and resume["resumed_from_step"] == 4
    assert resume["steps_compared"] == 2 and resume["all_steps_present"]
    assert resume["max_abs_diff"] == 0.0 and resume["exact"]  # bit-for-bit, as the single-process resume test

    table = (out / "table.md").read_text()
    for heading in ("## Loss curves", "## Throughput", "## Peak memory", "## Crash and resume", "Shakespeare"):
        assert heading in table
