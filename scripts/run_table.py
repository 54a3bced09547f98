"""Run every row of a paper table, then build it: `python scripts/run_table.py TABLE --scale smoke|mini|full`.

Rows are the files in conf/experiment/<TABLE>/. smoke and mini run here, one row after another (mini wants
one GPU); full prints one `torchrun` command per row (Hydra multirun and torchrun do not nest) and runs
nothing. A mini table lands in results/<TABLE>/ (results.json, table.md with the claim check, table.csv, PNG),
a smoke one in runs/<TABLE>-smoke-table/, so smoke runs never touch committed results.

A row that raises is recorded as failed (runs/.../failed.json, then results.json and table.md) and the next
row runs; rows that start from a failed row's checkpoint are marked failed without running. The exit code is
the number of rows this command ran that failed (0: all of them finished); table.md also names rows that failed
in earlier calls and rows with no run yet.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from hydra import compose, initialize_config_dir

from flurka.results.index import write_index
from flurka.results.paper_tables import TABLES, dependencies_first, rows_of, table_out
from flurka.results.table_spec import chance_levels, table_notes, table_rows
from flurka.results.tables import (
    collect_failures,
    collect_runs,
    record_failure,
    unfinished_rows,
    where_written,
    write_table,
)
from flurka.train.loop import run_dir_for, train

CONF = Path(__file__).resolve().parents[1] / "conf"


class TableRun(NamedTuple):
    """What a table run produced: the table's folder (None at full scale, which only prints commands) and the
    failure records of the rows this call ran that failed (they are also in results.json and table.md)."""

    out: Path | None
    failed: tuple[dict, ...] = ()


def depends_on_failed(cfg, failed_runs: set[tuple[str, int]]) -> str | None:
    """The failed row whose checkpoint this row starts from (GLUE fine-tuning, up-training), if any: the same
    row at the same seed (seed 1's fine-tuning does not depend on seed 0's pre-training)."""
    path = str(cfg.get("init", {}).get("path") or "")
    return next((row for row, seed in sorted(failed_runs) if f"/{row}/seed{seed}/" in path), None)


def run(argv: list[str] | None = None) -> TableRun:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("table", choices=sorted(TABLES))
    p.add_argument("--scale", default="smoke", choices=["smoke", "mini", "full"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--rows", help="a comma-separated subset of rows (default: all); other rows' runs are kept")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--out", type=Path, help="default: results/<table> at mini, runs/<table>-<scale>-table else")
    p.add_argument("--gpus", type=int, default=8, help="full scale: processes per torchrun command")
    p.add_argument(
        "--streams",
        type=int,
        default=1,
        help="smoke/mini: run the rows in this many processes at once on the one GPU (a row stays with the row "
        "whose checkpoint it loads); mini's small models leave an H200 mostly idle. Quality is unaffected; "
        "tokens/s then are not solo speeds, as the summaries (concurrent_runs) and the table's notes say",
    )
    p.add_argument("--runs-only", action="store_true", help=argparse.SUPPRESS)  # a stream: its parent builds the table
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every row")
    args = p.parse_intermixed_args(argv)
    spec = TABLES[args.table]
    rows = dependencies_first(args.rows.split(",")) if args.rows else rows_of(args.table, args.scale)
    every_row = rows_of(args.table)
    unknown = set(rows) - set(every_row)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)} for {args.table}; rows: {', '.join(every_row)}")
    group = f"{args.table}-{args.scale}"
    where = [f"group={group}", f"runs_root={args.runs_root}"]
    if args.scale == "full":
        for row in rows:
            for seed in args.seeds:
                launcher = ["torchrun", f"--nproc_per_node={args.gpus}", "scripts/train.py"]
                settings = spec.settings(row, args.scale)
                cmd = [*launcher, f"experiment={args.table}/{row}", *settings, *where, *args.overrides, f"seed={seed}"]
                print(" ".join(shlex.quote(c) for c in cmd))
        return TableRun(out=None)
    if args.streams < 1:
        raise SystemExit(f"--streams must be at least 1; got {args.streams}")
    if args.streams > 1:
        this_call = run_streams(args, rows, where)
    else:
        this_call = run_rows(args, spec, rows, where)
    if args.runs_only:
        return TableRun(out=None, failed=tuple(this_call))
    return build_table(args, spec, rows, group, this_call, argv)


def row_configs(args: argparse.Namespace, spec, rows: list[str], where: list[str], seed: int):
    """(row, its composed config) for each row at one seed: the table's settings, then the row's, then the
    user's (the command line has the last word)."""
    for row in rows:
        overrides = [f"experiment={args.table}/{row}", *spec.settings(row, args.scale), *where, *args.overrides]
        yield row, compose("train", overrides=[*overrides, f"seed={seed}"])


def run_rows(args: argparse.Namespace, spec, rows: list[str], where: list[str]) -> list[dict]:
    """Run the rows one after another in this process; returns the failure records of the rows that failed."""
    # Each row reruns from scratch: its own run folder is cleared just before it runs, and only then, so the
    # group's other rows (earlier calls' parts of the table, with --rows) keep their runs. A row that raises is
    # recorded (failed.json in its folder) and the table goes on; the table names it.
    # Seeds outermost: a call cut short (a device call's time limit) loses the last seed's rows, not whole rows.
    failed_runs: set[tuple[str, int]] = set()
    this_call: list[dict] = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for seed in args.seeds:
            for row, cfg in row_configs(args, spec, rows, where, seed):
                print(f"[{args.table}] {row} seed {seed} ({args.scale})", flush=True)
                run_dir = run_dir_for(cfg, attention="", model="", task="")  # every row names itself (cfg.name)
                shutil.rmtree(run_dir, ignore_errors=True)
                base = depends_on_failed(cfg, failed_runs)
                try:
                    if base is not None:
                        raise RuntimeError(f"not run: it starts from row {base}, which failed")
                    train(cfg)
                except Exception as error:  # any failure of one row is recorded; the table goes on
                    traceback.print_exc()
                    this_call.append(record_failure(run_dir, row, seed, error))
                    failed_runs.add((row, seed))
                    print(f"[{args.table}] {row} seed {seed} FAILED: {type(error).__name__}: {error}", flush=True)
    return this_call


def stream_groups(costs: dict[str, float], base_of: dict[str, str | None], streams: int) -> list[list[str]]:
    """Rows split into at most `streams` groups of about equal cost (largest first onto the least loaded group),
    a row always in the group of the row whose checkpoint it loads, each group in dependency order."""

    def root(row: str) -> str:
        while base_of.get(row):
            row = base_of[row]
        return row

    chains: dict[str, list[str]] = {}
    for row in costs:  # costs keeps the rows' order, dependencies first
        chains.setdefault(root(row), []).append(row)
    groups: list[list[str]] = [[] for _ in range(min(streams, len(chains)))]
    load = [0.0] * len(groups)
    for chain in sorted(chains.values(), key=lambda c: -sum(costs[r] for r in c)):
        i = load.index(min(load))
        groups[i] += chain
        load[i] += sum(costs[r] for r in chain)
    return [dependencies_first(g) for g in groups if g]


def stream_env(environ: Mapping[str, str], n_streams: int) -> dict[str, str]:
    """The environment of each of `n_streams` child runs: it says how many share the device, and splits the CPU
    cores among them. Each child's torch would otherwise start one intra-op thread per core, so n streams would
    run n × cores spinning threads on the host that launches their kernels; a thread count set by the user wins."""
    cores = max(1, (os.cpu_count() or 1) // n_streams)
    return {"OMP_NUM_THREADS": str(cores), **environ, "FLURKA_CONCURRENT_RUNS": str(n_streams)}


def run_streams(args: argparse.Namespace, rows: list[str], where: list[str]) -> list[dict]:
    """Run the rows in `args.streams` child processes of this script at once (each with --rows of its group),
    their output prefixed with the stream's number; returns the failure records of this call's rows."""
    spec = TABLES[args.table]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfgs = dict(row_configs(args, spec, rows, where, args.seeds[0]))
    # a row's cost: the tokens it trains on; its base: the row whose checkpoint it starts from (init.path)
    costs = {
        r: float(c.trainer.max_steps * c.trainer.batch_size * (c.task.get("seq_len") or 1)) for r, c in cfgs.items()
    }
    init_paths = {r: str(c.get("init", {}).get("path") or "") for r, c in cfgs.items()}
    base_of = {r: next((b for b in rows if f"/{b}/seed" in path), None) for r, path in init_paths.items()}
    groups = stream_groups(costs, base_of, args.streams)
    prepare_tasks(args.table, cfgs.values())
    env = stream_env(os.environ, len(groups))
    children = []
    for i, group_rows in enumerate(groups):
        cmd = [sys.executable, __file__, args.table, "--scale", args.scale, "--rows", ",".join(group_rows),
               "--runs-root", args.runs_root, "--runs-only", *args.overrides,
               "--seeds", *map(str, args.seeds)]  # fmt: skip
        print(f"[{args.table}] stream {i}: {', '.join(group_rows)}", flush=True)
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        relay = threading.Thread(target=prefix_lines, args=(child.stdout, f"[stream {i}] "), daemon=True)
        relay.start()
        children.append((child, relay))
    try:
        for child, relay in children:
            child.wait()
            relay.join()
    finally:  # an interrupt reached the children too (one process group): let them unwind, then make sure
        for child, _ in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.terminate()
                child.wait()
    group = f"{args.table}-{args.scale}"
    return [f for f in collect_failures(args.runs_root, group) if f["name"] in rows and int(f["seed"]) in args.seeds]


def prepare_tasks(table: str, cfgs) -> None:
    """Build each distinct task of the rows once, here, before the streams start: what a task derives from its
    data (a trained tokenizer, token arrays, regenerated ListOps: minutes the first time) is then cached once,
    not built by every stream at the same time. A task that fails to build is left to its rows, which record
    the failure as they would without streams."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from flurka.train.loop import check_config

    built = set()
    for cfg in cfgs:
        key = OmegaConf.to_yaml(cfg.task)
        if key in built:
            continue
        built.add(key)
        try:
            check_config(OmegaConf.to_container(cfg, resolve=True))  # the data's verify mode, as train() sets it
            task = instantiate(cfg.task)
            print(f"[{table}] prepared task {task.name}", flush=True)
        except Exception as error:  # the rows of this task fail and say why; the others go on
            print(f"[{table}] could not prepare {cfg.task._target_}: {type(error).__name__}: {error}", flush=True)


def prefix_lines(stream, prefix: str) -> None:
    for line in stream:
        print(prefix + line, end="", flush=True)


def build_table(args: argparse.Namespace, spec, rows: list[str], group: str, this_call: list[dict], argv) -> TableRun:
    """The table from every run of the group (this call's and earlier calls'), written with its notes."""
    every_row = rows_of(args.table)
    summaries = [s for s in collect_runs(args.runs_root, group) if s["name"] in every_row]
    expected = sorted(set(rows_of(args.table, args.scale)) | set(rows))  # a table built in parts names the rest
    failed, missing = unfinished_rows(expected, args.seeds, summaries, collect_failures(args.runs_root, group))
    rows_out, shown = table_rows(spec, summaries)
    out = args.out or table_out(args.table, args.scale, args.runs_root)
    cmd = "python scripts/run_table.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    write_table(
        out,
        rows_out,
        shown,
        title=spec.title,
        notes=table_notes(spec, summaries, rows_out, args.scale),
        paper=spec.paper,
        command=cmd,
        failed=failed,
        missing=missing,
        summaries=summaries,
        chance=chance_levels(spec, summaries),
    )
    if args.scale == "mini" and args.out is None:
        write_index()  # results/README.md
    print((out / "table.md").read_text())
    failed_rows = {f["name"] for f in this_call}
    if failed_rows:
        print(f"[{args.table}] {len(failed_rows)} row(s) failed: {', '.join(sorted(failed_rows))}", file=sys.stderr)
    earlier = sorted({f["name"] for f in failed} - failed_rows)
    if earlier:
        print(f"[{args.table}] failed in an earlier call, not rerun: {', '.join(earlier)}", file=sys.stderr)
    print(where_written(out))
    return TableRun(out=out, failed=tuple(this_call))


def main(argv: list[str] | None = None) -> Path | None:
    """Run the table; returns its folder (None at full scale)."""
    return run(argv).out


def exit_code(outcome: TableRun) -> int:
    """The number of rows that failed (capped at 100: exit codes above 125 mean other things to a shell)."""
    return min(len({f["name"] for f in outcome.failed}), 100)


if __name__ == "__main__":
    sys.exit(exit_code(run()))
