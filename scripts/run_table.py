"""Run every row of a paper table, then build it: `python scripts/run_table.py TABLE --scale smoke|mini|full`.

Rows are the files in conf/experiment/<TABLE>/. smoke and mini run here, one row after another (mini wants
one GPU); full prints one `torchrun` command per row (Hydra multirun and torchrun do not nest) and runs
nothing. The table lands in results/<TABLE>/ (results.json, table.md with the claim check, table.csv, PNG).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from flurka.results.index import write_index
from flurka.results.paper_tables import TABLES
from flurka.results.table_spec import table_notes, table_rows
from flurka.results.tables import collect_runs, where_written, write_table
from flurka.train.loop import train

CONF = Path(__file__).resolve().parents[1] / "conf"


def starts_others(row: str) -> bool:
    """Rows that others start from (up-training's base, GLUE's pre-training runs): they run first."""
    return row == "base" or row.startswith("pretrain-")


def rows_of(table: str, scale: str | None = None) -> list[str]:
    """The table's rows (at `scale`, where the table runs different tasks per scale), dependencies first."""
    rows = sorted(p.stem for p in (CONF / "experiment" / table).glob("*.yaml"))
    return dependencies_first([r for r in rows if scale is None or TABLES[table].runs_at(r, scale)])


def dependencies_first(rows: list[str]) -> list[str]:
    """A row's checkpoint exists before the rows that load it (stable: the order is kept within each group)."""
    return sorted(rows, key=lambda r: not starts_others(r))


def main(argv: list[str] | None = None) -> Path | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("table", choices=sorted(TABLES))
    p.add_argument("--scale", default="smoke", choices=["smoke", "mini", "full"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--rows", help="a comma-separated subset of rows (default: all); other rows' runs are kept")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--out", type=Path, help="default: results/<table> (smoke: runs/<table>-smoke-table)")
    p.add_argument("--gpus", type=int, default=8, help="full scale: processes per torchrun command")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every row")
    args = p.parse_intermixed_args(argv)
    spec = TABLES[args.table]
    rows = dependencies_first(args.rows.split(",")) if args.rows else rows_of(args.table, args.scale)
    unknown = set(rows) - set(rows_of(args.table))
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)} for {args.table}; rows: {', '.join(rows_of(args.table))}")
    group = f"{args.table}-{args.scale}"
    where = [f"group={group}", f"runs_root={args.runs_root}"]
    if args.scale == "full":
        for row in rows:
            for seed in args.seeds:
                launcher = ["torchrun", f"--nproc_per_node={args.gpus}", "scripts/train.py"]
                settings = spec.settings(row, args.scale)
                cmd = [*launcher, f"experiment={args.table}/{row}", *settings, *where, *args.overrides, f"seed={seed}"]
                print(" ".join(shlex.quote(c) for c in cmd))
        return None
    # A table is rebuilt from fresh runs. With --rows only those rows are rerun and the group's other rows are
    # kept, so a table too long for one sitting (or one GPU call) is built over several; each row's summary
    # carries its own commit.
    if args.rows:
        for row in rows:
            shutil.rmtree(Path(args.runs_root) / group / row, ignore_errors=True)
    else:
        shutil.rmtree(Path(args.runs_root) / group, ignore_errors=True)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for row in rows:
            for seed in args.seeds:
                print(f"[{args.table}] {row} seed {seed} ({args.scale})", flush=True)
                # the table's settings, then the row's, then the user's: the command line has the last word
                settings = spec.settings(row, args.scale)
                overrides = [f"experiment={args.table}/{row}", *settings, *where, *args.overrides, f"seed={seed}"]
                train(compose("train", overrides=overrides))
    summaries = collect_runs(args.runs_root, group)
    rows_out, shown = table_rows(spec, summaries)
    out = args.out or (
        Path("results") / args.table if args.scale == "mini" else Path(args.runs_root) / f"{group}-table"
    )
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
    )
    if args.scale == "mini" and args.out is None:
        write_index()  # results/README.md
    print((out / "table.md").read_text())
    print(where_written(out))
    return out


if __name__ == "__main__":
    main()
