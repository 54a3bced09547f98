"""The run folder's life cycle: what `train()` checks and tidies before it writes anything.

- One run at a time: rank 0 takes an exclusive lock on `<run_dir>/.lock` (flock, so the kernel releases it
  when the process dies, even by SIGKILL); a second run with the same folder fails at once, naming it.
- A scratch (or up-training) run never replaces an earlier run's files: a folder holding summary.json,
  metrics or checkpoints is refused unless `init.overwrite=true`, which deletes that run first.
- Resuming a finished run says so and changes nothing; resuming a crashed one first cuts metrics.jsonl back
  to the checkpoint's step, so the file holds one row per step of the run the folder describes.
- Temporaries (`*.tmp<pid>`) left by a process killed mid-write are deleted (under the lock, no live writer).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flurka.train import dist
from flurka.train.naming import RunError, RunExistsError, run_exists_message

LOCK_NAME = ".lock"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


class RunFolderBusyError(RunError, RuntimeError):
    """Another live process holds the run folder."""


class RunFolderLock:
    """An exclusive, non-blocking flock on `<run_dir>/.lock`; the file says who holds it (for the message)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusyError(
                f"run folder {self.run_dir} is in use by another run ({holder}). Two runs in one folder would mix "
                "their metrics and checkpoints: wait for it to finish, or give this run another name, seed or "
                "run_dir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


_held: list[RunFolderLock] = []  # locks taken by the train() calls in progress in this process


def claim(run_dir: Path) -> RunFolderLock:
    """Lock `run_dir` until the enclosing `@releases_run_folders` call returns (or this process dies)."""
    lock = RunFolderLock(run_dir)
    lock.acquire()
    _held.append(lock)
    return lock


def releases_run_folders(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Release the folders `fn` claimed when it returns or raises (a test may call train() many times)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = len(_held)
        try:
            return fn(*args, **kwargs)
        finally:
            while len(_held) > depth:
                _held.pop().release()

    return wrapper


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete `*.tmp<pid>` files (atomic writes interrupted by a kill) in the folder and its checkpoints/."""
    stale = [p for d in (run_dir, run_dir / "checkpoints") for p in d.glob("*.tmp[0-9]*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def earlier_run_files(run_dir: Path) -> list[Path]:
    """The files that show a run was started (or finished) in this folder."""
    ckpt = run_dir / "checkpoints"
    found = [p for p in (run_dir / SUMMARY, run_dir / METRICS) if p.is_file() and p.stat().st_size > 0]
    if ckpt.is_dir():
        found += sorted(p for p in ckpt.iterdir() if p.suffix == ".pt" or p.name == "latest.json")
    return found


def clear_earlier_run(run_dir: Path) -> None:
    """`init.overwrite=true`: delete the earlier run's record, so nothing of it mixes with the new one."""
    for name in (SUMMARY, METRICS, "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _prepare(run_dir: Path, resume: bool, overwrite: bool) -> None:
    claim(run_dir)
    remove_stale_temporaries(run_dir)
    if resume:
        return
    found = earlier_run_files(run_dir)
    if found and not overwrite:
        names = ", ".join(str(p.relative_to(run_dir)) for p in found[:6])
        raise RunExistsError(run_exists_message(str(run_dir), names))
    if found:
        print(f"[flurka] init.overwrite=true: deleting the earlier run in {run_dir}")
        clear_earlier_run(run_dir)


def prepare_run_folder(run_dir: Path, *, resume: bool, overwrite: bool, info: dist.DistInfo) -> None:
    """Rank 0 locks and checks the folder; its error (if any) stops every rank, not only rank 0."""
    error = None
    if info.is_main:
        try:
            _prepare(Path(run_dir), resume, overwrite)
        except (RunFolderBusyError, FileExistsError) as err:
            error = err
    error = dist.broadcast_object(error, info)
    if error is not None:
        raise error


def finished_summary(run_dir: Path, step: int, train_seconds: float, max_steps: int, budget: float | None):
    """The summary of a run that already reached max_steps (or its time budget) at `step`, else None."""
    path = Path(run_dir) / SUMMARY
    if not (step >= max_steps or (budget and train_seconds >= budget)) or not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("steps") != step:
        return None  # the summary is of another point of this run: finish normally and rewrite it
    return summary


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Keep the metrics.jsonl rows up to `step` (the checkpoint resumed from): the rows after it belong to the
    crashed attempt and are logged again. A torn last line (killed mid-write) is dropped too."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)
