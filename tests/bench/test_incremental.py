"""Issue 21: every speed suite rewrites its results JSON after each measured point, marked `"complete": false`
until its sweep ends, so a run cut short (a timeout's kill, Ctrl-C, a crash) leaves valid JSON of what it
measured. The suites run here at their CPU dry-run sizes; nothing is timed for a result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flurka.bench import flurka as fig3
from flurka.bench import flurka_ablation as fig4
from flurka.bench import flurka_vs_flash as fig5
from flurka.bench import train
from flurka.bench.report import ResultsLog
from tests.helpers import ROOT


def read(path) -> dict:
    data = json.loads(path.read_text())
    assert set(data) >= {"provenance", "rows", "complete"}
    return data


def test_results_log_writes_every_row_as_it_comes_and_marks_the_end(tmp_path):
    path = tmp_path / "speed" / "x.json"
    rows = ResultsLog(path, setup={"tokens": 4})
    assert read(path)["rows"] == [] and read(path)["complete"] is False  # a run that dies at once says so
    rows.append({"N": 1})
    assert read(path)["rows"] == [{"N": 1}]
    rows += [{"N": 2}]
    rows.extend([{"N": 3}])
    data = read(path)
    assert [r["N"] for r in data["rows"]] == [1, 2, 3] and data["complete"] is False and data["setup"] == {"tokens": 4}
    rows.finish()
    assert read(path)["complete"] is True and list(tmp_path.rglob("*.tmp")) == []


class Interrupt:
    """A timing function that lets `k` points through, then raises KeyboardInterrupt (as Ctrl-C would)."""

    def __init__(self, real, k: int) -> None:
        self.real, self.k, self.calls = real, k, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.k:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


# (suite's main, the module whose timing function each point calls once, its name, the file it writes, argv)
SUITES = {
    "train": (train.main, train, "step_times_ms", "train.json", ["--variants", "full", "flash", "linear"]),
    "flurka": (fig3.main, fig3, "_time", "results.json", ["--variants", "full", "performer", "flurka_rnn"]),
    "flurka_ablation": (fig4.main, fig3, "_time", "results.json", []),
    "flurka_vs_flash": (fig5.main, fig3, "_time", "results.json", []),
}


@pytest.mark.parametrize("suite", list(SUITES))
def test_a_sweep_interrupted_after_k_points_leaves_those_points_marked_incomplete(suite, tmp_path, monkeypatch):
    main, module, timer, name, argv = SUITES[suite]
    k = 3
    monkeypatch.setattr(module, timer, Interrupt(getattr(module, timer), k))
    out = tmp_path / name
    with pytest.raises(KeyboardInterrupt):
        main(["--dry-run", *argv, "--out", str(out)])
    data = read(out)
    assert data["complete"] is False
    assert len(data["rows"]) == k and all(r["ms"] is not None for r in data["rows"])
    assert not out.with_suffix(".png").exists()  # the plot and table come once the sweep ends


# variants x N (x mode); Fig. 3 also times the plain formulation of performer and flurka_rnn
@pytest.mark.parametrize(("suite", "points"), [("train", 3 * 2), ("flurka", (3 + 2) * 2 * 2)])
def test_a_sweep_that_ends_is_marked_complete(suite, points, tmp_path):
    main, _, _, name, argv = SUITES[suite]
    out = tmp_path / name
    main(["--dry-run", *argv, "--out", str(out)])
    data = read(out)
    assert data["complete"] is True and len(data["rows"]) == points
    assert out.with_suffix(".png").exists()


def test_a_killed_run_leaves_valid_json_of_what_it_measured(tmp_path):
    out = tmp_path / "train.json"
    cmd = [sys.executable, "scripts/bench.py", "train", "--dry-run", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(json.loads(out.read_text())["rows"]) >= 2:  # os.replace: never half a file
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)  # what `timeout -s KILL` does: no handler, no cleanup runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = read(out)
    assert data["complete"] is False
    total = 2 * len(train.VARIANTS)
    assert 2 <= len(data["rows"]) < total and all(r["status"] == "ok" for r in data["rows"])
