"""scripts/gpu_session.sh, the one command of a device call: its steps stop at DEADLINE_S so that what was
measured is still packed before the call's limit, and an unknown step is refused before anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def session(tmp_path: Path, *steps: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_session.sh"), *steps],
        cwd=tmp_path,  # no runs/ or results/ here: nothing to pack
        env={**os.environ, "OUT": str(tmp_path / "out"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_steps_past_the_deadline_are_skipped_and_said_so(tmp_path):
    proc = session(tmp_path, "table-time-budget", "table-uptrain@base", DEADLINE_S="0")
    assert proc.returncode == 1
    log = (tmp_path / "out" / "tables.log").read_text()
    assert log.count("skipped, DEADLINE_S passed") == 2 and "table-uptrain" in log


def test_a_step_is_interrupted_at_the_deadline(tmp_path):
    """The running step gets SIGINT when the deadline passes (Python unwinds; the session goes on to pack)."""
    script = tmp_path / "scripts" / "run_table.py"
    script.parent.mkdir()
    script.write_text("import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('interrupted')\n")
    proc = session(tmp_path, "table-wmt", DEADLINE_S="2")
    assert "interrupted" in (tmp_path / "out" / "tables.log").read_text()
    assert proc.returncode == 1  # a step cut short counts as unfinished, however cleanly it stopped


def test_an_unknown_step_is_refused(tmp_path):
    proc = session(tmp_path, "tabels")
    assert proc.returncode == 2 and "unknown step 'tabels'" in proc.stderr


def test_one_bench_suite_runs_quick_unless_told_otherwise(tmp_path):
    script = tmp_path / "scripts" / "bench.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('argv', sys.argv[1:])\n")
    session(tmp_path, "bench-train")
    session(tmp_path, "bench-lightning", BENCH_ARGS="--ns 512")
    log = (tmp_path / "out" / "bench.log").read_text()
    assert "argv ['train', '--quick']" in log and "argv ['lightning', '--ns', '512']" in log


def test_streams_reach_every_table_step(tmp_path):
    script = tmp_path / "scripts" / "run_table.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('argv', sys.argv[1:])\n")
    session(tmp_path, "table-glue@pretrain-full,cola-full", STREAMS="3", SEEDS="0 1")
    session(tmp_path, "table-lra")
    log = (tmp_path / "out" / "tables.log").read_text()
    assert "'--rows', 'pretrain-full,cola-full', '--streams', '3', " in log and "'--seeds', '0', '1']" in log
    assert "argv ['table-lra', '--scale', 'mini', 'logger=none'" in log  # no STREAMS: one row at a time
