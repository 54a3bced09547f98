"""Default run names tell configurations apart; the same command twice is one line that says what to type."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from flurka.train.loop import train
from flurka.train.naming import config_hash
from tests.helpers import ROOT, compose, run_script

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.max_steps=2", "trainer.eval_batches=1"]


def _hash(overrides: list[str]) -> str:
    from omegaconf import OmegaConf

    return config_hash(OmegaConf.to_container(compose([*SMOKE, *overrides]), resolve=True))


def test_the_readme_commands_get_folders_of_their_own(tmp_path):
    """Two README commands with the same task/model/attention but other overrides used to collide."""
    runs = f"runs_root={tmp_path}"
    first = train(compose([*SMOKE, runs, "attention=performer"]))
    second = train(compose([*SMOKE, runs, "attention=performer", "attention.n_features=16", "model.n_layers=1"]))
    assert first["run_dir"] != second["run_dir"]
    for summary in (first, second):
        folder = Path(summary["run_dir"])
        assert (folder / "summary.json").exists() and folder.parent.name.startswith("shakespeare-gpt-performer-")


def test_the_name_follows_what_is_trained_not_where_it_is_written():
    base = _hash([])
    for same in (["init.mode=resume"], ["logger=wandb"], ["data.root=/elsewhere"], ["trainer.progress=true"],
                 ["runs_root=/tmp/x", "group=g"], ["seed=3"]):  # fmt: skip
        assert _hash(same) == base, same
    changed = [["trainer.lr=3e-4"], ["model.n_layers=3"], ["attention=linear"], ["task.seq_len=32"]]
    assert len({base, *(_hash(o) for o in changed)}) == 1 + len(changed)


def test_the_same_command_twice_is_one_line_offering_resume_or_a_new_name(tmp_path):
    cmd = ["scripts/train.py", *SMOKE, f"runs_root={tmp_path}"]
    first = run_script(cmd).stdout
    assert "tokens/s not measured" in first  # 2 steps, all inside throughput_skip_steps: no number, not "0"
    proc = run_script(cmd, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert "init.mode=resume" in line and "name=" in line and str(tmp_path) in line


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make on PATH")
def test_make_smoke_runs_twice_in_a_row(tmp_path):
    """`make smoke` twice used to fail at once: the second run found the first one's folders."""
    import subprocess

    make = ["make", "-o", "install", "smoke", f"BIN={Path(sys.executable).parent}", f"RUNS={tmp_path}",
            "SMOKE_ATTENTIONS=full linear", "SMOKE_ARGS=trainer.max_steps=2 trainer.eval_batches=1"]  # fmt: skip
    for _ in range(2):
        proc = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name.split("-")[2] for p in (tmp_path / "smoke").iterdir()) == ["full", "linear"]
