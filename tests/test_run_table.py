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


@pytest.mark.slow
def test_uptrain_table_starts_rows_from_the_base_checkpoint(tmp_path, monkeypatch):
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    rows = ["base", "flurka_rnn-up25", "flurka_rnn-scratch25"]
    runs = str(tmp_path / "runs")
    out = run_table.main(
        ["table-uptrain", "--scale", "smoke", "--runs-root", runs, "--rows", ",".join(rows), "task.seq_len=32"]
    )
    data = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(data) == set(rows)
    up = tmp_path / "runs" / "table-uptrain-smoke" / "flurka_rnn-up25" / "seed0"
    assert json.loads((up / "summary.json").read_text())["steps"] == 5  # 25% of the smoke base's 20 steps
    assert "from_checkpoint" in (up / "config.yaml").read_text()
    assert "flurka_rnn-up25" in (out / "table.md").read_text()
