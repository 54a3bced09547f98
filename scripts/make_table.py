"""Build a results table from run folders (or W&B): `python scripts/make_table.py GROUP [options]`.

    python scripts/make_table.py demo --metrics eval_bpc tokens_per_s
    python scripts/make_table.py table-glue-mini --from-wandb my-team/flurka

A paper table's group (`<table>` or `<table>-<scale>`, as run_table.py names it) is built as that table is:
its metrics, its task columns and the claim check under it.

Writes results/<GROUP>/{results.json, table.md, table.csv, table.png}. Never edit those files by hand: rerun.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from flurka.results.paper_tables import TABLES, TableSpec, table_rows
from flurka.results.tables import aggregate, collect_runs, collect_wandb, write_table


def paper_table(group: str) -> TableSpec | None:
    for name, spec in TABLES.items():
        if group == name or group in (f"{name}-{scale}" for scale in ("smoke", "mini", "full")):
            return spec
    return None


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("group", help="the experiment group / table id (runs/<group>/...)")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--metrics", nargs="+", help="default: the paper table's, else eval_loss tokens_per_s")
    p.add_argument("--from-wandb", metavar="ENTITY/PROJECT", help="read the group's finished runs from W&B")
    p.add_argument("--out", type=Path, help="default: results/<group>")
    p.add_argument("--title")
    p.add_argument("--notes", default="", help="a paragraph placed under the table")
    args = p.parse_args(argv)
    summaries = (
        collect_wandb(args.from_wandb, args.group) if args.from_wandb else collect_runs(args.runs_root, args.group)
    )
    if not summaries:
        where = f"W&B {args.from_wandb}" if args.from_wandb else f"{args.runs_root}/{args.group}/*/seed*/summary.json"
        raise SystemExit(f"no finished runs found in {where}")
    spec = paper_table(args.group)
    if spec is not None and not args.metrics:
        rows, shown = table_rows(spec, summaries)
        notes = "\n\n".join(n for n in (args.notes, spec.claims(rows) if spec.claims else "") if n)
        title, paper = args.title or spec.title, spec.paper
    else:
        shown = args.metrics or ["eval_loss", "tokens_per_s"]
        rows, notes, title, paper = aggregate(summaries, shown), args.notes, args.title or args.group, None
    out = write_table(
        args.out or Path("results") / args.group,
        rows,
        shown,
        title=title,
        notes=notes,
        paper=paper,
        command="python scripts/make_table.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
    )
    print((out / "table.md").read_text())
    return out


if __name__ == "__main__":
    main()
