"""Issue 13, items 1-5: a run folder holds one run, and nothing a user ran is lost or mixed into another."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import flurka.train.loop as loop
from flurka.train.checkpoint import latest_checkpoint, load_checkpoint
from flurka.train.loop import train
from flurka.train.run_folder import RunFolderBusyError
from tests.helpers import ROOT, compose, logged_losses, losses

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.log_every=1"]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run (the lock file only says who holds the folder now)."""
    files = (p for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock")
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


def metric_rows(run_dir: Path) -> list[tuple[int, str]]:
    rows = (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], "train" if "train/loss" in r else "eval") for r in rows]


def test_a_second_run_in_a_held_folder_fails_at_once_naming_it(tmp_path):
    """Another process holds the folder (as a live run does): this run stops before writing anything; once
    that process is killed (-9: no cleanup) the kernel drops its lock and the folder is usable again."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from flurka.train.run_folder import claim; claim(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(run_dir)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RunFolderBusyError, match=f"run folder {run_dir} is in use by another run \\(pid {holder.pid}"
        ):
            train(compose([*SMOKE, f"run_dir={run_dir}", "trainer.max_steps=2"]))
        assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(compose([*SMOKE, f"run_dir={run_dir}", "trainer.max_steps=2"]))["steps"] == 2


def test_scratch_refuses_a_folder_whose_periodic_checkpoints_were_deleted(tmp_path):
    train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=3"]))
    for p in (tmp_path / "checkpoints").glob("ckpt-*.pt"):
        p.unlink()
    (tmp_path / "checkpoints" / "latest.json").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=f"{tmp_path} already holds a run .*init.overwrite=true"):
        train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=3", "trainer.lr=1e-2"]))
    assert (
        snapshot(tmp_path) == before
    )  # best.pt, summary.json, config.yaml and the metrics are the earlier run's, untouched


def test_overwrite_replaces_the_earlier_run_entirely(tmp_path):
    """init.overwrite=true: the folder then describes the new run only (one curve, equal to a fresh folder's)."""
    train(compose([*SMOKE, f"run_dir={tmp_path / 'run'}", "trainer.max_steps=5"]))
    new = [*SMOKE, "trainer.max_steps=3", "trainer.lr=1e-2"]
    train(compose([*new, f"run_dir={tmp_path / 'run'}", "init.overwrite=true"]))
    train(compose([*new, f"run_dir={tmp_path / 'fresh'}"]))
    assert logged_losses(tmp_path / "run") == logged_losses(tmp_path / "fresh")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 3
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["step"] == 3


def test_resuming_a_finished_run_changes_nothing_and_a_larger_max_steps_continues(tmp_path, capsys):
    first = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=4"]))
    before = snapshot(tmp_path)
    again = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=4", "init.mode=resume"]))
    assert "already finished at step 4" in capsys.readouterr().out
    assert again == json.loads(json.dumps(first))  # the summary on disk, not eval_loss None / train loss NaN
    assert snapshot(tmp_path) == before  # not one byte changed
    more = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=6", "init.mode=resume"]))
    assert more["steps"] == 6 and more["eval_loss"] == more["eval_loss"]  # finite, not NaN
    assert sorted(losses(tmp_path)) == list(range(1, 7))


def test_resume_after_a_crash_keeps_one_metrics_row_per_step(tmp_path, monkeypatch):
    """Crash at step 6 with a checkpoint at 4: the rows of steps 5-6 are logged again after the resume, so
    metrics.jsonl must drop the crashed attempt's (the old file held them twice); eval rows likewise."""
    common = [*SMOKE, "trainer.max_steps=8", "trainer.checkpoint_every=4", "trainer.eval_every=3"]

    def crash_at_6(step):
        if step == 6:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(loop, "_fault_injection", crash_at_6)
    with pytest.raises(KeyboardInterrupt):
        train(compose([*common, f"run_dir={tmp_path / 'crashed'}"]))
    assert (6, "train") in metric_rows(tmp_path / "crashed")  # the crashed attempt got past its checkpoint
    monkeypatch.setattr(loop, "_fault_injection", lambda step: None)
    train(compose([*common, f"run_dir={tmp_path / 'crashed'}", "init.mode=resume"]))
    train(compose([*common, f"run_dir={tmp_path / 'whole'}"]))
    rows = metric_rows(tmp_path / "crashed")
    assert len(rows) == len(set(rows)) and [s for s, kind in rows if kind == "train"] == list(range(1, 9))
    assert rows == metric_rows(tmp_path / "whole")


def test_stale_temporaries_of_a_killed_save_are_removed_at_start(tmp_path):
    """A process killed between writing a checkpoint's temporary and renaming it leaves `*.pt.tmp<pid>`; the
    next run in the folder deletes it."""
    run_dir = tmp_path / "run"
    train(compose([*SMOKE, f"run_dir={run_dir}", "trainer.max_steps=2", "trainer.checkpoint_every=2"]))
    script = (
        "import os, sys, torch; from flurka.train import checkpoint as c\n"
        "c.os.replace = lambda *a: os._exit(9)  # killed right after the bytes landed\n"
        "c.save_checkpoint(sys.argv[1], step=4, model_state={'w': torch.ones(3)}, optimizer_state={}, meta={})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(run_dir)], cwd=ROOT, check=False)
    assert proc.returncode == 9
    stale = list((run_dir / "checkpoints").glob("*.tmp*"))
    assert len(stale) == 1 and stale[0].name.startswith("ckpt-00000004.pt.tmp")
    train(compose([*SMOKE, f"run_dir={run_dir}", "trainer.max_steps=3", "init.mode=resume"]))
    assert not list(run_dir.rglob("*.tmp*"))


def test_a_run_killed_between_its_last_checkpoint_and_its_summary_is_finished_on_resume(tmp_path):
    first = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=3"]))
    (tmp_path / "summary.json").unlink()  # what a kill right after the final checkpoint leaves
    again = train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=3", "init.mode=resume"]))
    assert again["steps"] == 3 and again["final_train_loss"] == first["final_train_loss"]
    assert again["eval_loss"] == pytest.approx(first["eval_loss"], abs=1e-6)  # the same model, evaluated again
    assert sorted(losses(tmp_path)) == [1, 2, 3]
