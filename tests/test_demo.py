"""The demo trains both variants and prints the comparison table (a few steps here; `make demo` runs 400)."""

from __future__ import annotations

from tests.helpers import run_script


def test_demo_prints_a_table_of_both_variants(tmp_path):
    proc = run_script(
        ["scripts/demo.py", "scale=smoke", "trainer.max_steps=4", "trainer.progress=false", f"runs_root={tmp_path}"]
    )
    out = proc.stdout
    assert "full" in out and "flurka_performer" in out and "val bits/char" in out
    assert (tmp_path / "demo" / "shakespeare-gpt-full" / "seed0" / "summary.json").exists()
