"""scripts/archive_runs.py keeps the small files of the runs behind a table (never a checkpoint or a run cut
short), and the table rebuilds from the archive alone."""

from __future__ import annotations

import json

from tests.helpers import run_script


def fake_run(folder, summary=None, failed=None):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 0\n")
    (folder / "metrics.jsonl").write_text('{"step": 1, "train/loss": 5.0}\n')
    (folder / ".lock").write_text("pid")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "best.pt").write_bytes(b"\0" * 1024)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    if failed is not None:
        (folder / "failed.json").write_text(json.dumps(failed))


def test_finished_and_failed_runs_are_kept_without_checkpoints_and_the_table_rebuilds(tmp_path):
    runs = tmp_path / "device" / "runs"
    group = runs / "table-time-budget-mini"
    fake_run(group / "full" / "seed0", summary={"name": "full", "seed": 0, "eval_ppl": 60.0, "gpu": "NVIDIA H200"})
    fake_run(group / "flash" / "seed0", failed={"name": "flash", "seed": 0, "error": "RuntimeError: boom"})
    fake_run(group / "flurka_rnn" / "seed0")  # cut short: neither a summary nor a failure record
    fake_run(runs / "my-sweep" / "full" / "seed0", summary={"name": "full", "seed": 0})  # not a paper table
    archive = tmp_path / "results" / "runs"
    (archive / "table-time-budget-mini" / "full" / "seed0").mkdir(parents=True)
    (archive / "table-time-budget-mini" / "full" / "seed0" / "stale.txt").write_text("from an older run")
    run_script(["scripts/archive_runs.py", str(runs), "--to", str(archive)])
    kept = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file())
    assert kept == [
        "table-time-budget-mini/flash/seed0/config.yaml",
        "table-time-budget-mini/flash/seed0/failed.json",
        "table-time-budget-mini/flash/seed0/metrics.jsonl",
        "table-time-budget-mini/full/seed0/config.yaml",
        "table-time-budget-mini/full/seed0/metrics.jsonl",
        "table-time-budget-mini/full/seed0/summary.json",
    ]
    out = tmp_path / "table"
    run_script(["scripts/make_table.py", "table-time-budget-mini", "--runs-root", str(archive), "--out", str(out)])
    data = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["full"] and data["runs"]["gpu"] == ["NVIDIA H200"]
    assert data["failed"][0]["name"] == "flash"
    assert {m["name"] for m in data["missing"]} == {"flurka_rnn", "flurka_eva", "flurka_performer"}
