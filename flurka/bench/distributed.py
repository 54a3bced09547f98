"""Issue 9: one command that checks training on 2 GPUs against 1 (DDP and FSDP), and a crash + resume on 2 GPUs.

    python scripts/bench.py distributed [--out results/distributed] [--budget-s 540]   # a host with 2 GPUs
    python scripts/bench.py distributed --dry-run [--out /tmp/x]      # the same path on CPU: gloo, tiny model

Every run is `scripts/train.py`, started as a subprocess: alone (1 GPU) or under torchrun (`python -m
torch.distributed.run --standalone --nproc_per_node=2`, NCCL on GPUs, gloo on CPU), with `logger=none
trainer.progress=false`; the numbers are read back from each run's metrics.jsonl and summary.json.

1. Loss curves and throughput, GPT-2 small (12 layers × 12 heads × 768) at seq_len 1024, `full` and `flurka_rnn`:
   1 GPU vs DDP on 2 GPUs with the same global batch (64 sequences, micro-batch 16 per GPU), 200 steps. Reported:
   the largest |Δ train loss| over the 200 steps, tokens/s on 1 and 2 GPUs and their ratio (`scaling`).
   Dropout is 0: each rank draws its own dropout masks, so with dropout the two curves would differ by sampling
   noise as well as by arithmetic, and the comparison would say nothing about the distributed code.
2. FSDP (`trainer.strategy=fsdp`) on a 0.7B GPT (24 layers × d_model 1536): 1 GPU, DDP and FSDP on 2 GPUs, 30
   steps; loss curves against 1 GPU, tokens/s, and peak memory per GPU (rank 0's torch.cuda.max_memory_allocated,
   summary.json `peak_mem_gb`; ranks hold equal shares under both strategies).
3. Crash and resume: the 2-GPU `full` run of (1) again, killed at step 120 (FLURKA_FAULT_AT_STEP; checkpoints
   every 50 steps) and resumed on 2 GPUs (`init.mode=resume`); its losses against the uninterrupted run of (1).
   GPU kernels are not bitwise deterministic (atomics in attention and embedding backward), so the row also
   gives the run-to-run noise floor (the crashed run's own first 120 steps against the uninterrupted run) and
   the replay difference (the steps 101-120 that ran twice, from the same checkpoint).

Results: `results.json` (provenance + rows, DESIGN.md) and `table.md`, rewritten after each part, so a run
stopped by its time budget still leaves what it measured. The task is WikiText-2 when the data root holds it,
else the bundled Shakespeare (the table says which). NVLink multicast stays off in every process started here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TRAIN = "scripts/train.py"
# a program that uses NVLink multicast can take the host's shared GPUs down: off in every process we start
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
CURVE_TOL = 0.05  # nats: our criterion for "the curves match" on GPUs (bf16, reduction order); 2e-5 on CPU
CPU_TOL = 2e-5  # the tolerance of the CPU DDP/FSDP tests in tests/train/test_training.py
COMMON = ("logger=none", "trainer.progress=false", "trainer.log_every=1", "trainer.eval_every=0",
          "trainer.checkpoint_every=0", "seed=0")  # fmt: skip


@dataclass(frozen=True)
class Study:
    """What one invocation runs: override lists for the two models and the timing guesses for the estimate."""

    device: str  # cuda | cpu
    task: str  # a conf/task name
    task_note: str
    variants: tuple[str, ...]
    small: tuple[str, ...]  # curves, throughput and resume
    small_label: str
    big: tuple[str, ...]  # the FSDP comparison
    big_label: str
    crash_at: int
    checkpoint_every: int
    startup_s: float  # per launch: interpreter, imports, data, process group
    step_s: dict[tuple[str, int], float]  # (model label, processes) -> seconds per step, for the estimate
    save_s: dict[str, float]  # model label -> seconds to write the final checkpoints (best.pt + ckpt)
    tol: float


@dataclass
class Launch:
    label: str
    nproc: int
    overrides: tuple[str, ...]
    run_dir: Path
    log: Path
    returncode: int | None = None
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why_not(self) -> str:
        if self.skipped:
            return f"{self.label} not run: {self.skipped}"
        return f"{self.label} exited {self.returncode} (log {self.log})"


# ------------------------------------------------------------------------------------------------ the plan
def with_overrides(base: tuple[str, ...], *extra: str) -> tuple[str, ...]:
    """`base` with `extra` Hydra overrides, a later value replacing an earlier one for the same key."""
    merged: dict[str, str] = {}
    for item in (*base, *extra):
        merged[item.split("=", 1)[0]] = item
    return tuple(merged.values())


def pick_task(choice: str, dry_run: bool) -> tuple[str, str]:
    """(conf/task name, why): WikiText-2 when the data root holds it, else the bundled Shakespeare."""
    from flurka.data.sources import data_root

    wiki = data_root() / "wikitext-2"
    have_wiki = all((wiki / f"{split}.txt").is_file() for split in ("train", "valid", "test"))
    if choice == "wikitext2" or (choice == "auto" and have_wiki and not dry_run):
        return "wikitext2", f"WikiText-2 ({wiki}; sentencepiece BPE, 8000 tokens)"
    why = "dry run" if dry_run else f"no WikiText-2 under {wiki}"
    return "shakespeare", f"the bundled Shakespeare sample, byte level ({why})"


def plan(dry_run: bool, task_choice: str = "auto") -> Study:
    task, note = pick_task(task_choice, dry_run)
    if dry_run:  # the same launches on CPU: a tiny model, a handful of steps, one variant; big = small (reused)
        small = with_overrides(COMMON, "scale=smoke", f"task={task}", "trainer.device=cpu", "trainer.max_steps=6",
                               "trainer.eval_batches=2")  # fmt: skip
        return Study("cpu", task, note, ("full",), small, "gpt-smoke", small, "gpt-smoke", crash_at=5,
                     checkpoint_every=2, startup_s=8.0, step_s={("gpt-smoke", 1): 0.1, ("gpt-smoke", 2): 0.2},
                     save_s={"gpt-smoke": 0.5}, tol=CPU_TOL)  # fmt: skip
    gpt2 = with_overrides(
        COMMON, "model=gpt2_small", "scale=full", f"task={task}", "trainer.device=cuda", "model.dropout=0.0",
        "task.seq_len=1024", "trainer.max_steps=200", "trainer.batch_size=64", "trainer.micro_batch_size=16",
        "trainer.warmup_steps=20", "trainer.lr=6e-4", "trainer.eval_batches=4",
    )  # fmt: skip
    # 0.7B parameters: DDP keeps weights, grads, Adam state and its gradient buckets (~20 bytes a parameter,
    # ~14 GB) on every GPU; FSDP shards the first three. Micro-batch 8 = the per-GPU batch on 2 GPUs (no
    # accumulation, which would keep FSDP's gradients unsharded between micro-steps).
    big = with_overrides(gpt2, "model.n_layers=24", "model.d_model=1536", "model.n_heads=12",
                         "trainer.batch_size=16", "trainer.micro_batch_size=8", "trainer.max_steps=30",
                         "trainer.warmup_steps=5", "trainer.eval_batches=2")  # fmt: skip
    steps = {("gpt2_small", 1): 0.11, ("gpt2_small", 2): 0.06, ("gpt-24x1536", 1): 0.2, ("gpt-24x1536", 2): 0.11}
    return Study("cuda", task, note, ("full", "flurka_rnn"), gpt2, "gpt2_small", big, "gpt-24x1536", crash_at=120,
                 checkpoint_every=50, startup_s=25.0, step_s=steps, save_s={"gpt2_small": 4.0, "gpt-24x1536": 25.0},
                 tol=CURVE_TOL)  # fmt: skip


def max_steps(overrides: tuple[str, ...]) -> int:
    return int(next(o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("trainer.max_steps=")))


def estimate_s(study: Study, label: str, nproc: int, steps: int, saves: int = 1) -> float:
    slow = 2.0 if "flurka" in label else 1.0  # guess: causal FLuRKA loops over chunks in PyTorch (fp32), SDPA does not
    model = study.big_label if label.startswith(study.big_label) else study.small_label
    return study.startup_s + steps * study.step_s[(model, nproc)] * slow + saves * study.save_s[model]


# --------------------------------------------------------------------------------------------- launching
def train_command(nproc: int, overrides: tuple[str, ...], run_dir: Path) -> list[str]:
    """scripts/train.py alone, or under torchrun (as a module: works where no `torchrun` script is on PATH)."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, TRAIN, *overrides, f"run_dir={run_dir}"]


def launch_env(nproc: int, device: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every run: multicast off, and no inherited fault injection (only the crash run's)."""
    env = {k: v for k, v in os.environ.items() if k != "FLURKA_FAULT_AT_STEP"}
    env.update({"PYTHONUNBUFFERED": "1", **NO_MULTICAST, **(extra or {})})
    if device == "cpu":  # one thread a process: 1 vs 2 processes is then 1 vs 2 cores (and no oversubscription)
        env.setdefault("OMP_NUM_THREADS", "1")
    elif nproc > 1:  # torchrun would give each process 1 thread; the model is built on the CPU, so share the cores
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // nproc)))
    return env


@dataclass
class Runner:
    """Starts runs one after another inside a time budget; a run whose estimate does not fit is skipped."""

    runs_root: Path
    budget_s: float
    planned: int
    device: str
    started: float = field(default_factory=time.perf_counter)
    cache: dict[tuple[int, tuple[str, ...]], Launch] = field(default_factory=dict)
    launches: list[Launch] = field(default_factory=list)
    count: int = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(
        self,
        label: str,
        nproc: int,
        overrides: tuple[str, ...],
        *,
        est_s: float,
        env: dict[str, str] | None = None,
        run_dir: Path | None = None,
        reuse: bool = True,
    ) -> Launch:
        """One training launch (or the earlier identical one, under `reuse`); never raises for a failed run.
        A new `run_dir` is emptied first; passing an existing one (a resume) keeps it."""
        key = (nproc, overrides)
        if reuse and key in self.cache:
            return self.cache[key]
        fresh = run_dir is None
        run_dir = run_dir or self.runs_root / label
        launch = Launch(label, nproc, overrides, run_dir, self.runs_root / f"{label}.log")
        self.launches.append(launch)
        self.count += 1
        left = self.budget_s - self.elapsed()
        tag = f"[distributed] {self.count}/{self.planned} {label} ({nproc} process{'es' if nproc > 1 else ''})"
        if est_s > left:
            launch.skipped = f"time budget: ~{est_s:.0f} s needed, {left:.0f} s left of --budget-s {self.budget_s:.0f}"
            print(f"{tag}: skipped, {launch.skipped}", flush=True)
            return launch
        if fresh and run_dir.exists():
            shutil.rmtree(run_dir)  # a folder left by an earlier study: metrics.jsonl would be appended to
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        print(f"{tag}: started (~{est_s:.0f} s; elapsed {self.elapsed():.0f} s)", flush=True)
        t0 = time.perf_counter()
        cmd = train_command(nproc, overrides, run_dir)
        launch.returncode = _run_logged(cmd, launch.log, env or launch_env(nproc, self.device), timeout=left)
        launch.seconds = time.perf_counter() - t0
        print(f"{tag}: exit {launch.returncode} in {launch.seconds:.0f} s (log {launch.log})", flush=True)
        if reuse:
            self.cache[key] = launch
        return launch


def _run_logged(cmd: list[str], log: Path, env: dict[str, str] | None, timeout: float) -> int:
    """Run `cmd` with its output in `log`; past `timeout` kill its whole process group (torchrun + workers)."""
    with log.open("w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n[distributed] killed after {timeout:.0f} s (time budget)\n")
            return -signal.SIGKILL
        except BaseException:  # Ctrl-C, or SIGTERM from an outer `timeout`: its own session would outlive us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def drop_checkpoints(launch: Launch) -> None:
    """Checkpoints are only needed by the resume part; the big model's are gigabytes each."""
    shutil.rmtree(launch.run_dir / "checkpoints", ignore_errors=True)


def log_tail(launch: Launch, lines: int = 25) -> str:
    if not launch.log.exists():
        return ""
    return "\n".join(launch.log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------- reading
def read_losses(run_dir: Path, keep: str = "last") -> dict[int, float]:
    """Train loss per step from metrics.jsonl; a resumed run re-logs its steps: `keep` the first or last record."""
    out: dict[int, float] = {}
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if "train/loss" in rec and (keep == "last" or rec["step"] not in out):
            out[rec["step"]] = rec["train/loss"]
    return out


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def curve_diff(ref: dict[int, float], other: dict[int, float], steps: range | None = None) -> dict[str, Any]:
    """Largest and mean |Δloss| over the steps both curves have (restricted to `steps` when given)."""
    common = sorted(set(ref) & set(other) & (set(steps) if steps is not None else set(ref)))
    if not common:
        return {"steps_compared": 0, "max_abs_diff": None, "mean_abs_diff": None, "max_at_step": None}
    diffs = {s: abs(ref[s] - other[s]) for s in common}
    worst = max(diffs, key=diffs.get)
    return {
        "steps_compared": len(common),
        "max_abs_diff": diffs[worst],
        "mean_abs_diff": sum(diffs.values()) / len(diffs),
        "max_at_step": worst,
    }


def run_fields(launch: Launch, model_label: str) -> dict[str, Any]:
    """The shape of what ran, from its resolved config.yaml and summary.json (DESIGN.md speed-row keys)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(launch.run_dir / "config.yaml"))
    s = read_summary(launch.run_dir) or {}
    m, t = cfg["model"], cfg["trainer"]
    on_gpu = s.get("gpu", "cpu") != "cpu"
    return {
        "model": model_label,
        "variant": s.get("attention", cfg["attention"]["_target_"].rsplit(".", 1)[-1]),
        "task": s.get("task"),
        "B": t["batch_size"],
        "micro_batch": t["micro_batch_size"],
        "N": s.get("seq_len", cfg["task"].get("seq_len")),
        "H": m["n_heads"],
        "D": m["d_model"] // m["n_heads"],
        "d_model": m["d_model"],
        "n_layers": m["n_layers"],
        "params": s.get("params"),
        "dtype": "bf16" if on_gpu and t["precision"] in ("auto", "bf16") else "fp32",
        "causal": True,
        "steps": s.get("steps"),
    }


def _sig(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


# ------------------------------------------------------------------------------------------------- rows
def curve_row(ref: Launch, run: Launch, impl: str, model_label: str, tol: float) -> dict[str, Any]:
    row = {"kind": "curve", "impl": impl, "world_size": run.nproc, "reference": f"{ref.nproc} process", "tol": tol}
    if not (ref.ok and run.ok):
        return {**row, "model": model_label, "error": "; ".join(x.why_not() for x in (ref, run) if not x.ok)}
    a, b = read_losses(ref.run_dir), read_losses(run.run_dir)
    diff = curve_diff(a, b)
    last = max(a) if a else None
    return {
        **run_fields(run, model_label),
        **row,
        **diff,
        "final_loss_ref": a.get(last),
        "final_loss": b.get(last),
        "within_tol": diff["max_abs_diff"] is not None and diff["max_abs_diff"] <= tol,
    }


def throughput_rows(single: Launch, multi: dict[str, Launch], model_label: str, peak: float | None) -> list[dict]:
    """One row per measurement; `scaling` = tokens/s of that run / tokens/s of the 1-process run (1.0 for it)."""
    base = read_summary(single.run_dir) if single.ok else None
    base_tps = base["tokens_per_s"] if base else None
    rows = []
    for impl, launch in {"single": single, **multi}.items():
        summary = read_summary(launch.run_dir) if launch.ok else None
        row: dict[str, Any] = {"kind": "throughput", "impl": impl, "mode": "fwd_bwd", "world_size": launch.nproc}
        if summary is None or not summary.get("tokens_per_s"):
            rows.append({**row, "model": model_label, "scaling": None, "error": launch.why_not()})
            continue
        tps = summary["tokens_per_s"]
        scaling = tps / base_tps if base_tps else None
        fields = run_fields(launch, model_label)
        mfu = summary.get("mfu")
        rows.append({
            **fields, **row,
            "tokens_per_s": _sig(tps),
            "tokens_per_s_per_device": _sig(summary.get("tokens_per_s_per_device")),
            "ms": _sig(1000.0 * fields["B"] * fields["N"] / tps),
            "tflops": _sig(mfu * peak * launch.nproc) if (mfu and peak) else None,
            "mfu": _sig(mfu),
            "scaling": _sig(scaling),
            "efficiency": _sig(scaling / launch.nproc) if scaling else None,
            "peak_mem_gb": _sig(summary.get("peak_mem_gb")),
        })  # fmt: skip
    return rows


def memory_rows(runs: dict[str, Launch], model_label: str) -> list[dict]:
    """Peak memory per GPU (rank 0's max_memory_allocated; null on CPU) for each strategy, and FSDP / DDP."""
    peaks = {impl: (read_summary(r.run_dir) or {}).get("peak_mem_gb") if r.ok else None for impl, r in runs.items()}
    rows = []
    for impl, launch in runs.items():
        row = {"kind": "memory", "model": model_label, "impl": impl, "world_size": launch.nproc,
               "peak_mem_gb": _sig(peaks[impl]), "measured_on": "rank 0"}  # fmt: skip
        if launch.ok:
            row = {**run_fields(launch, model_label), **row}
        else:
            row["error"] = launch.why_not()
        if impl != "ddp" and peaks.get(impl) and peaks.get("ddp"):
            row["vs_ddp"] = _sig(peaks[impl] / peaks["ddp"])
        rows.append(row)
    return rows


def resume_row(whole: Launch, crashed: Launch, resumed: Launch, study: Study, pre_crash: dict[int, float],
               resumed_from: int | None) -> dict[str, Any]:  # fmt: skip
    row = {"kind": "resume", "impl": "ddp", "world_size": resumed.nproc, "crash_at_step": study.crash_at,
           "crash_returncode": crashed.returncode, "resumed_from_step": resumed_from, "tol": study.tol}  # fmt: skip
    problems = [x.why_not() for x in (whole, resumed) if not x.ok]
    if crashed.returncode in (0, None):
        problems.append(f"{crashed.label} did not crash (exit {crashed.returncode})")
    if problems or resumed_from is None:
        return {**row, "model": study.small_label, "error": "; ".join(problems) or "no checkpoint to resume from"}
    ref, final = read_losses(whole.run_dir), read_losses(resumed.run_dir)
    after = range(resumed_from + 1, max(ref) + 1)
    diff = curve_diff(ref, final, after)
    return {
        **run_fields(resumed, study.small_label),
        **row,
        **diff,
        "all_steps_max_abs_diff": curve_diff(ref, final)["max_abs_diff"],
        "noise_floor": curve_diff(ref, pre_crash)["max_abs_diff"],  # the same config, never interrupted
        "replay_max_abs_diff": curve_diff(pre_crash, final, after)["max_abs_diff"],  # same checkpoint, run twice
        "all_steps_present": sorted(final) == sorted(ref),
        "exact": diff["max_abs_diff"] == 0.0,
    }


# ------------------------------------------------------------------------------------------------ parts
def part_curves(runner: Runner, study: Study, peak: float | None) -> tuple[list[dict], dict[str, Launch]]:
    """1 process vs DDP on 2 for each variant: loss curves and tokens/s. Returns the rows and the DDP runs."""
    rows, ddp_runs = [], {}
    steps = max_steps(study.small)
    for variant in study.variants:
        overrides = with_overrides(study.small, f"attention={variant}")
        name = f"{study.small_label}-{variant}"
        single = runner.run(f"{name}-1proc", 1, overrides, est_s=estimate_s(study, name, 1, steps))
        ddp = runner.run(f"{name}-ddp2", 2, overrides, est_s=estimate_s(study, name, 2, steps))
        for launch in (single, ddp):
            drop_checkpoints(launch)
        rows.append(curve_row(single, ddp, "ddp", study.small_label, study.tol))
        rows += throughput_rows(single, {"ddp": ddp}, study.small_label, peak)
        ddp_runs[variant] = ddp
    return rows, ddp_runs


def part_resume(runner: Runner, study: Study, whole: Launch) -> list[dict]:
    """The 2-process `full` run again, killed at `crash_at`, resumed on 2 processes; against the whole run."""
    overrides = with_overrides(whole.overrides, f"trainer.checkpoint_every={study.checkpoint_every}")
    label = f"{whole.label}-crash"
    if not whole.ok:  # nothing to compare with: spend no time on it
        return [{"kind": "resume", "model": study.small_label, "impl": "ddp", "error": whole.why_not()}]
    steps = max_steps(overrides)
    # every rank exits at that step without cleanup, like a SIGKILL
    env = launch_env(2, study.device, {"FLURKA_FAULT_AT_STEP": str(study.crash_at)})
    crashed = runner.run(label, 2, overrides, env=env, reuse=False,
                         est_s=estimate_s(study, label, 2, study.crash_at, saves=0))  # fmt: skip
    pre_crash = read_losses(crashed.run_dir, keep="first") if crashed.returncode is not None else {}
    pointer = crashed.run_dir / "checkpoints" / "latest.json"
    resumed_from = json.loads(pointer.read_text())["step"] if pointer.exists() else None
    if resumed_from is not None and crashed.returncode not in (0, None):
        again = with_overrides(overrides, "init.mode=resume")
        est = estimate_s(study, label, 2, steps - resumed_from)
        resumed = runner.run(f"{label}-resume", 2, again, reuse=False, run_dir=crashed.run_dir, est_s=est)
    else:
        resumed = Launch(f"{label}-resume", 2, overrides, crashed.run_dir, runner.runs_root / f"{label}-resume.log")
        resumed.skipped = "the crashed run left no checkpoint" if crashed.returncode else crashed.why_not()
    drop_checkpoints(resumed)
    return [resume_row(whole, crashed, resumed, study, pre_crash, resumed_from)]


def part_fsdp(runner: Runner, study: Study, peak: float | None) -> list[dict]:
    """The big model: FSDP and DDP on 2 processes, and 1 process; memory per GPU, curves, tokens/s."""
    overrides = with_overrides(study.big, "attention=full")
    steps, name = max_steps(overrides), study.big_label
    runs = {}
    # FSDP first: if the budget runs short, the number the part exists for is already measured
    for impl, nproc in (("fsdp", 2), ("ddp", 2), ("single", 1)):
        extra = ("trainer.strategy=fsdp",) if impl == "fsdp" else ()
        label = f"{name}-{impl}2" if nproc > 1 else f"{name}-1proc"
        runs[impl] = runner.run(label, nproc, with_overrides(overrides, *extra),
                                est_s=estimate_s(study, label, nproc, steps))  # fmt: skip
        drop_checkpoints(runs[impl])
    rows = memory_rows(runs, name)
    rows += [curve_row(runs["single"], runs[impl], impl, name, study.tol) for impl in ("ddp", "fsdp")]
    rows += throughput_rows(runs["single"], {"ddp": runs["ddp"], "fsdp": runs["fsdp"]}, name, peak)
    return rows


# ------------------------------------------------------------------------------------------------ output
def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e3 else f"{value:,.0f}"
    return str(value)


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [_fmt(r.get(key)) for key, _ in columns]
        if r.get("error"):
            cells[-1] = f"not measured: {r['error']}"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_table(rows: list[dict], setup: list[str]) -> str:
    unit, units = ("GPU", "GPUs") if any(r.get("dtype") == "bf16" for r in rows) else ("process", "processes")
    out = ["# Scaling out: 1 vs 2 GPUs (DDP, FSDP), crash and resume (issue 9)", "",
           "Written by `python scripts/bench.py distributed` (`make scaling`); never edited by hand.", "",
           *[f"- {line}" for line in setup], ""]  # fmt: skip
    sections = [
        ("curve", "## Loss curves: 2 vs 1 " + unit + ", same global batch", [
            ("model", "model"), ("variant", "attention"), ("impl", "strategy"), ("steps_compared", "steps"),
            ("max_abs_diff", "max abs Δloss"), ("max_at_step", "at step"), ("mean_abs_diff", "mean abs Δloss"),
            ("final_loss_ref", f"final loss, 1 {unit}"), ("final_loss", f"final loss, 2 {units}"),
            ("within_tol", "within tol")]),
        ("throughput", "## Throughput (tokens/s over the timed steps; scaling = 2-" + unit + " / 1-" + unit + ")", [
            ("model", "model"), ("variant", "attention"), ("impl", "strategy"), ("world_size", units),
            ("tokens_per_s", "tokens/s"), ("ms", "ms/step"), ("tflops", "TFLOP/s"), ("mfu", "MFU"),
            ("scaling", "scaling"), ("efficiency", "efficiency")]),
        ("memory", "## Peak memory per " + unit + " (rank 0, torch.cuda.max_memory_allocated; — on CPU)", [
            ("model", "model"), ("params", "params"), ("impl", "strategy"), ("world_size", units),
            ("peak_mem_gb", "peak GiB"), ("vs_ddp", "vs DDP")]),
        ("resume", "## Crash and resume on 2 " + units + " (vs the uninterrupted run)", [
            ("model", "model"), ("variant", "attention"), ("crash_at_step", "killed at step"),
            ("resumed_from_step", "resumed from"), ("steps_compared", "steps compared"),
            ("max_abs_diff", "max abs Δloss"), ("replay_max_abs_diff", "replay Δ (same steps twice)"),
            ("noise_floor", "noise floor (uninterrupted vs itself)"), ("exact", "exact")]),
    ]  # fmt: skip
    for kind, title, columns in sections:
        chosen = [r for r in rows if r["kind"] == kind]
        out += [title, "", *(_table(chosen, columns) if chosen else ["not measured yet"]), ""]
    return "\n".join(out)


def write_outputs(out: Path, rows: list[dict], setup: list[str], *, complete: bool = False) -> None:
    """results.json (marked complete only once the study is over: issue 21) and table.md."""
    from flurka.results.provenance import write_results

    out.mkdir(parents=True, exist_ok=True)
    # provenance's command: this process's own command line
    write_results(out / "results.json", rows, complete=complete)
    (out / "table.md").write_text(render_table(rows, setup) + "\n")


def setup_lines(study: Study, budget_s: float) -> list[str]:
    launcher = "`python -m torch.distributed.run --standalone --nproc_per_node=2 scripts/train.py` (torchrun)"
    backend = "NCCL" if study.device == "cuda" else "gloo (CPU dry run)"
    return [
        f"task: {study.task_note}",
        f"runs: {launcher}, {backend}; 1-{'GPU' if study.device == 'cuda' else 'process'} runs: plain "
        f"`python scripts/train.py`; NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1",
        f"curves/throughput/resume model ({study.small_label}): `{' '.join(study.small)}`",
        f"FSDP model ({study.big_label}): `{' '.join(study.big)}`",
        "dropout 0: each rank draws its own dropout masks, which would make 1 and 2 processes differ by sampling",
        f"crash: FLURKA_FAULT_AT_STEP={study.crash_at}, checkpoints every {study.checkpoint_every} steps, resumed "
        "with `init.mode=resume` on 2 processes",
        "throughput: tokens/s of summary.json, timed over the steps after `trainer.throughput_skip_steps`; one "
        "step = forward, backward, gradient sync (DDP all-reduce / FSDP reduce-scatter), clipping and AdamW; "
        "issue 9's target: scaling >= 1.8 on 2 GPUs",
        f"curve tolerance {study.tol:g} nats (ours; the CPU tests use {CPU_TOL:g}); time budget {budget_s:.0f} s",
    ]


def prepare(study: Study) -> None:
    """Compose every override list (a typo fails here, before any run) and build the task once, so a
    tokenizer is trained and the splits cached by one process, not raced by two ranks."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    lists = [with_overrides(study.small, f"attention={v}") for v in study.variants]
    lists += [with_overrides(study.small, f"trainer.checkpoint_every={study.checkpoint_every}", "init.mode=resume")]
    lists += [with_overrides(study.big, "attention=full", f"trainer.strategy={s}") for s in ("ddp", "fsdp")]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfgs = [compose("train", overrides=list(overrides)) for overrides in lists]
    instantiate(cfgs[0].task)


def planned_launches(study: Study) -> list[tuple[str, float]]:
    s, b, v = study.small_label, study.big_label, study.variants
    small, big = max_steps(study.small), max_steps(study.big)
    out = [(f"{s}-{x}-{n}", estimate_s(study, f"{s}-{x}", n, small)) for x in v for n in (1, 2)]
    out += [(f"{s}-full-crash", estimate_s(study, s, 2, study.crash_at, saves=0))]
    resumed_from = study.crash_at // study.checkpoint_every * study.checkpoint_every
    out += [(f"{s}-full-resume", estimate_s(study, s, 2, small - resumed_from))]
    if study.big != study.small:  # in the dry run the DDP and 1-process runs of the small model are reused
        out += [(f"{b}-{n}", estimate_s(study, b, n, big)) for n in (1, 2)]
    return [*out, (f"{b}-fsdp", estimate_s(study, b, 2, big))]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py distributed", description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, gloo, 2 processes, a tiny model, a handful of steps")
    p.add_argument("--out", type=Path, help="folder for results.json and table.md (default results/distributed; "
                   "with --dry-run a new temporary folder)")  # fmt: skip
    p.add_argument("--runs-root", type=Path, help="where the run folders go (default runs/distributed; with "
                   "--dry-run a temporary folder, deleted)")  # fmt: skip
    p.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget: runs that would not fit are "
                   "skipped and reported as not measured (default 540: one 10-minute device call)")  # fmt: skip
    p.add_argument("--task", choices=("auto", "wikitext2", "shakespeare"), default="auto")
    args = p.parse_args(argv)
    os.environ.update(NO_MULTICAST)  # for this process too (it may touch CUDA for provenance)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # an outer `timeout`: unwind, ending the run in flight
    if not args.dry_run:
        import torch

        if torch.cuda.device_count() < 2:
            raise SystemExit(f"the study needs 2 GPUs; this host has {torch.cuda.device_count()} (use --dry-run)")
    study = plan(args.dry_run, args.task)
    out = args.out or (Path(tempfile.mkdtemp(prefix="flurka-distributed-")) if args.dry_run else
                       Path("results/distributed"))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="flurka-distributed-runs-") as tmp:
        runs_root = args.runs_root or (Path(tmp) if args.dry_run else Path("runs/distributed"))
        run_study(study, out.resolve(), runs_root.resolve(), args.budget_s)


def run_study(study: Study, out: Path, runs_root: Path, budget_s: float) -> list[dict]:
    launches = planned_launches(study)
    total = sum(s for _, s in launches) + (15 if study.task == "wikitext2" else 2)
    print(f"[distributed] {len(launches)} launches on {study.device}, task {study.task}; estimate ~{total / 60:.1f} "
          f"min (budget {budget_s:.0f} s); results -> {out}", flush=True)  # fmt: skip
    runner = Runner(runs_root, budget_s, planned=len(launches), device=study.device)
    prepare(study)
    print(f"[distributed] configs composed, data ready ({runner.elapsed():.0f} s)", flush=True)
    peak = None
    if study.device == "cuda":
        import torch

        from flurka.train.throughput import peak_tflops

        peak = peak_tflops(torch.device("cuda"))
    setup, rows = setup_lines(study, budget_s), []

    def add(new: list[dict]) -> None:  # a run reused by a later part (the dry run) gives the same rows again
        rows.extend(r for r in new if r not in rows)
        write_outputs(out, rows, setup)  # after every part: a run cut short keeps what it measured

    curves, ddp_runs = part_curves(runner, study, peak)
    add(curves)
    add(part_resume(runner, study, ddp_runs["full"]))
    add(part_fsdp(runner, study, peak))
    write_outputs(out, rows, setup, complete=True)
    for r in rows:
        if r.get("error"):
            print(f"[distributed] not measured ({r['kind']}, {r.get('impl')}): {r['error']}", flush=True)
    for launch in [x for x in runner.launches if x.returncode not in (0, None) and not x.label.endswith("-crash")]:
        print(f"--- {launch.log}\n{log_tail(launch)}", flush=True)
    print(f"[distributed] done in {runner.elapsed():.0f} s: {out / 'results.json'}, {out / 'table.md'}", flush=True)
    return rows
