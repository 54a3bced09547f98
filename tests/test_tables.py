"""Tables are built from run folders: mean ± std over seeds, every file written, nothing invented."""

from __future__ import annotations

import json
import statistics

import pytest

from flurka.results.tables import aggregate, markdown_table
from tests.helpers import compose, run_script


def test_table_from_real_smoke_runs(tmp_path):
    from flurka.train.loop import train

    for attention in ("full", "linear"):
        for seed in (0, 1):
            train(compose(["scale=smoke", "logger=none", "trainer.progress=false", "trainer.max_steps=3",
                           f"attention={attention}", f"seed={seed}", "group=tbl", f"name={attention}",
                           f"runs_root={tmp_path / 'runs'}"]))  # fmt: skip
    out = tmp_path / "results" / "tbl"
    run_script(["scripts/make_table.py", "tbl", "--runs-root", str(tmp_path / "runs"), "--out", str(out),
                "--metrics", "eval_bpc", "tokens_per_s"])  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"full", "linear"} and rows["full"]["n_seeds"] == 2
    seeds = [
        json.loads(p.read_text())["eval_bpc"] for p in (tmp_path / "runs" / "tbl" / "full").glob("seed*/summary.json")
    ]
    assert rows["full"]["eval_bpc"] == statistics.fmean(seeds)
    assert rows["full"]["eval_bpc_std"] == statistics.stdev(seeds)
    for f in ("table.md", "table.csv", "table.png"):
        assert (out / f).exists(), f
    assert "| full | 2 |" in (out / "table.md").read_text()


def test_paper_numbers_sit_beside_ours_and_are_labelled():
    rows = aggregate([{"name": "performer", "attention": "performer", "acc": 0.5}], ["acc"])
    md = markdown_table(rows, ["acc"], {"performer": {"ListOps": 36.8}})
    assert "paper ListOps" in md and "36.800" in md


def test_missing_runs_are_an_error(tmp_path):
    proc = run_script(["scripts/make_table.py", "nothing", "--runs-root", str(tmp_path)], check=False)
    assert proc.returncode != 0 and "no finished runs" in proc.stderr


def test_task_by_variant_table_pivots_one_line_per_variant(tmp_path):
    """A GLUE group is built as its paper table: a column per task (×100, mean ± std over seeds), the average of
    the task columns, and pre-training perplexity beside them but outside the average."""
    runs = tmp_path / "runs" / "table-glue-mini"
    summaries = {
        ("cola-full", 0): {"eval_matthews": 0.20},
        ("cola-full", 1): {"eval_matthews": 0.30},
        ("stsb-full", 0): {"eval_spearman": 0.50},
        ("stsb-full", 1): {"eval_spearman": 0.70},
        ("pretrain-full", 0): {"eval_ppl": 40.0},
        ("pretrain-full", 1): {"eval_ppl": 42.0},
        ("cola-linear", 0): {"eval_matthews": 0.10},
    }
    for (name, seed), summary in summaries.items():
        folder = runs / name / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"name": name, "seed": seed, **summary}))
    out = tmp_path / "out"
    run_script(["scripts/make_table.py", "table-glue-mini", "--runs-root", str(tmp_path / "runs"), "--out", str(out)])
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    full = rows["full"]
    assert full["CoLA (MCC)"] == pytest.approx(statistics.fmean([20.0, 30.0])) and full["n_seeds"] == 2
    assert full["CoLA (MCC)_std"] == pytest.approx(statistics.stdev([20.0, 30.0]))
    assert full["avg"] == pytest.approx((25.0 + 60.0) / 2) and full["MLM ppl (pre-training)"] == 41.0
    assert "avg" not in rows["linear"]  # no STS-B run: no average that hides it
    md = (out / "table.md").read_text()
    assert "| full | 2 | 25.000 ± 7.071 | 60.000 ± 14.142 | 41.000 ± 1.414 | 42.500 |" in md
    assert "QQP" not in md


def test_a_task_can_fill_several_columns():
    """MNLI reports matched and mismatched accuracy: two columns from one row, both in the average."""
    from flurka.results.paper_tables import GLUE_COLUMNS
    from flurka.results.table_spec import pivot

    rows = [{"name": "mnli-full", "n_seeds": 1, "eval_accuracy": 0.70, "eval_accuracy_mm": 0.72}]
    (line,) = pivot(rows, GLUE_COLUMNS)
    assert line["MNLI-m (acc)"] == pytest.approx(70.0) and line["MNLI-mm (acc)"] == pytest.approx(72.0)
    assert line["avg"] == pytest.approx(71.0)


def test_a_partial_table_names_its_missing_and_failed_rows(tmp_path):
    """A table built over several GPU calls: make_table on the group says which rows have no run yet and which
    failed (with the error), on stderr and in table.md; a smoke group never writes into results/."""
    from flurka.results.tables import record_failure

    runs = tmp_path / "runs" / "table-imagenet-smoke"
    for name in ("full", "linear"):
        folder = runs / name / "seed0"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"name": name, "seed": 0, "eval_accuracy": 0.5}))
    record_failure(runs / "performer" / "seed0", "performer", 0, RuntimeError("CUDA out of memory"))
    proc = run_script(["scripts/make_table.py", "table-imagenet-smoke", "--runs-root", str(tmp_path / "runs")])
    out = tmp_path / "runs" / "table-imagenet-smoke-table"
    data = json.loads((out / "results.json").read_text())
    assert {r["name"] for r in data["rows"]} == {"full", "linear"}
    assert data["failed"] == [{"name": "performer", "seed": 0, "error": "RuntimeError: CUDA out of memory"}]
    assert {m["name"] for m in data["missing"]} == {"eva", "flurka_eva", "flurka_performer", "flurka_rnn", "linformer"}
    assert "row performer seed 0 failed: RuntimeError: CUDA out of memory" in proc.stderr
    assert "no finished run for rows eva, flurka_eva, flurka_performer, flurka_rnn, linformer" in proc.stderr
    md = (out / "table.md").read_text()
    assert "| performer | 0 | failed: RuntimeError: CUDA out of memory |" in md and "| eva | 0 | missing" in md


def test_table_notes_say_when_the_final_numbers_come_from_a_subset():
    from flurka.results.paper_tables import TABLES
    from flurka.results.table_spec import table_notes

    spec = TABLES["table-imagenet"]
    whole = [{"name": "full", "seed": 0, "eval_accuracy": 0.9, "eval_examples_cap": None}]
    assert "subset" not in table_notes(spec, whole, whole, "mini")
    part = [{"name": "full", "seed": 0, "eval_accuracy": 0.9, "eval_examples_cap": 1280}]
    assert "full: first 1,280 examples" in table_notes(spec, part, part, "mini")


def test_provenance_names_the_staged_commit_on_the_gpu_machine(monkeypatch):
    """The device machine's .git is the session's starting one; FLURKA_COMMIT (from .device/commit) must win, and
    without it the commit is this checkout's HEAD."""
    import subprocess

    from flurka.results.provenance import git_commit, provenance

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.delenv("FLURKA_COMMIT", raising=False)
    assert git_commit().split("+")[0] == head
    monkeypatch.setenv("FLURKA_COMMIT", "0123abcd")
    assert provenance("x")["commit"] == "0123abcd"


def test_from_wandb_without_an_api_key_is_one_line_saying_what_to_set(tmp_path):
    env = {"WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "no-netrc")}
    proc = run_script(["scripts/make_table.py", "table-glue-mini", "--from-wandb", "me/flurka"], env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "WANDB_API_KEY" in line and "wandb login" in line


def test_a_table_built_elsewhere_names_the_gpu_and_commit_its_runs_came_from(tmp_path):
    """Rows trained on a GPU machine, table assembled here (runs of several device calls unpacked): results.json
    keeps the builder's provenance and adds the runs' own; table.md and the results index name the runs' GPU and
    commit, not this machine's, and a table with a missing row is not called done."""
    from flurka.results.index import write_index

    runs = tmp_path / "runs" / "table-time-budget-mini"
    for name, date in (("full", "2026-12-02T17:00:00+00:00"), ("flash", "2026-12-03T09:00:00+00:00")):
        folder = runs / name / "seed0"
        folder.mkdir(parents=True)
        made = {"commit": "abc123def456", "gpu": "NVIDIA H200", "torch": "2.11.0", "triton": "3.6.0", "cuda": "13.0"}
        (folder / "summary.json").write_text(
            json.dumps({"name": name, "seed": 0, "eval_ppl": 90.0, "date": date, **made})
        )
    out = tmp_path / "results" / "table-time-budget"
    run_script(["scripts/make_table.py", "table-time-budget-mini", "--runs-root", str(tmp_path / "runs"),
                "--out", str(out)])  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    assert data["runs"]["gpu"] == ["NVIDIA H200"] and data["runs"]["commit"] == ["abc123def456"]
    assert data["runs"]["dates"] == ["2026-12-02T17:00:00+00:00", "2026-12-03T09:00:00+00:00"]
    assert data["runs"]["runs"] == 2
    md = (out / "table.md").read_text()
    assert "Runs (2): GPU NVIDIA H200; commit abc123def456; torch 2.11.0, Triton 3.6.0, CUDA 13.0" in md
    assert "2026-12-02 to 2026-12-03" in md
    index = write_index(tmp_path / "results").read_text()
    line = next(row for row in index.splitlines() if row.startswith("| table-time-budget |"))
    assert "NVIDIA H200" in line and "`abc123def456`" in line and "2026-12-03" in line
    assert "3 run(s) without a result" in line and "done" not in line
