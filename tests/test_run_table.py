"""`make table-X SCALE=smoke` runs every row for a few CPU steps and builds the table (here: on fixtures)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import use_fixture_corpora


@pytest.mark.slow
def test_wikitext_table_at_smoke_scale(tmp_path, monkeypatch):
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    out = run_table.main(["table-wikitext103", "--scale", "smoke", "--runs-root", str(tmp_path / "runs"),
                          "trainer.max_steps=3", "task.seq_len=32"])  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    names = {r["name"] for r in data["rows"]}
    assert names == {"full", "flash", "performer", "linear", "eva", "flurka_performer", "flurka_rnn", "flurka_eva"}
    md = (out / "table.md").read_text()
    assert "Scale: smoke" in md and "flurka_rnn" in md and "vs linear" in md


def test_full_scale_prints_torchrun_commands(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    assert run_table.main(["table-scfa", "--scale", "full", "--gpus", "2"]) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and all(line.startswith("torchrun --nproc_per_node=2 scripts/train.py") for line in lines)
