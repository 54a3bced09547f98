"""Provenance for every results JSON: which code, on which machine and software, from which command.

Every results file has the same top level (DESIGN.md): {"provenance": {...}, "rows": [...]}, so one reader
serves every table and plot.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def git_commit(short: bool = False) -> str:
    """The commit of the checkout this runs from, with '+dirty' when tracked files differ from it.

    FLURKA_COMMIT, when set, wins: the device tool's GPU machine gets a copy of the working tree whose .git is
    the session's starting one, so git there names an older commit (`make device-stage` records the real one
    in .device/commit and scripts/gpu_session.sh exports it)."""
    if os.environ.get("FLURKA_COMMIT"):
        return os.environ["FLURKA_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        args = ["git", "rev-parse", "--short" if short else "--verify", "HEAD"]
        sha = subprocess.run(args, cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("FLURKA_COMMIT", "unknown")


def gpu_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "not installed"


def provenance(command: str | None = None) -> dict[str, Any]:
    """Everything needed to say where a number came from."""
    return {
        "commit": git_commit(),
        "gpu": gpu_name(),
        "torch": str(torch.__version__),
        "triton": triton_version(),
        "cuda": torch.version.cuda or "none",
        "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


RUN_KEYS = ("commit", "gpu", "torch", "triton", "cuda")


def runs_provenance(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a table's numbers came from: the distinct commit / GPU / torch / Triton / CUDA of its runs (each
    run's summary.json carries its own provenance) and the span of their dates. A table is often assembled on
    another machine than the one that trained its rows (runs of several GPU calls unpacked on a laptop), so the
    table's own provenance says only who built the table; this says who produced the numbers."""
    out: dict[str, Any] = {key: sorted({str(s[key]) for s in summaries if key in s}) for key in RUN_KEYS}
    dates = sorted(str(s["date"]) for s in summaries if s.get("date"))
    out["dates"] = [dates[0], dates[-1]] if dates else []
    out["runs"] = len(summaries)
    return out


def numbers_provenance(data: dict[str, Any]) -> dict[str, list[str]]:
    """Where a results file's numbers came from, as lists per RUN_KEYS key plus "dates": the runs' own provenance
    when the file records it (a table built on another machine than the one that trained its rows), else the
    file's own (a speed suite measures where it writes)."""
    runs = data.get("runs") or {}
    if runs.get("runs"):
        return {key: list(runs.get(key) or []) for key in (*RUN_KEYS, "dates")}
    prov = data["provenance"]
    return {**{key: [str(prov.get(key, "?"))] for key in RUN_KEYS}, "dates": [prov["date"]]}


def describe_runs(runs: dict[str, Any]) -> str:
    """One sentence for table.md: what the runs ran on (lists when runs differ)."""
    if not runs.get("runs"):
        return ""
    show = lambda key: ", ".join(runs.get(key) or ["?"])  # noqa: E731
    first, last = [d[:10] for d in runs.get("dates") or ["", ""]]
    when = (f", {first}" + (f" to {last}" if last != first else "")) if first else ""
    return (
        f"Runs ({runs['runs']}): GPU {show('gpu')}; commit {show('commit')}; torch {show('torch')}, "
        f"Triton {show('triton')}, CUDA {show('cuda')}{when}."
    )


def write_results(path: str | Path, rows: list[dict[str, Any]], command: str | None = None, **extra: Any) -> Path:
    """Write {"provenance", "rows", **extra} atomically (temp file + rename), so a crash never leaves half a
    file. `extra` holds what is not a measurement, e.g. a table's rows that failed or never ran."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"provenance": provenance(command), "rows": rows, **extra}, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if set(data) < {"provenance", "rows"}:
        raise ValueError(f"{path}: not a flurka results file (needs 'provenance' and 'rows')")
    return data
