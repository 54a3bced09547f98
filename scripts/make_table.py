"""Build a results table from run folders (or W&B): `python scripts/make_table.py GROUP [options]`.

    python scripts/make_table.py demo --metrics eval_bpc tokens_per_s
    python scripts/make_table.py table-glue-mini --from-wandb my-team/flurka

A paper table's group (`<table>` or `<table>-<scale>`, as run_table.py names it) is built as that table is:
its metrics, its task columns and the claim check under it.

Writes results/<GROUP>/{results.json, table.md, table.csv, table.png} (a paper table's smoke or full group:
runs/<table>-<scale>-table/, never the committed mini results). Rows of a paper table that failed or have no
finished run are named on stderr and in table.md. Never edit those files by hand: rerun.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from flurka.results.index import write_index
from flurka.results.paper_tables import TABLES, find_table, rows_of, table_out
from flurka.results.table_spec import chance_levels, table_notes, table_rows
from flurka.results.tables import (
    WandbUnavailableError,
    aggregate,
    collect_failures,
    collect_runs,
    collect_wandb,
    unfinished_rows,
    where_written,
    write_table,
)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("group", help="the experiment group / table id (runs/<group>/...)")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--metrics", nargs="+", help="default: the paper table's, else eval_loss tokens_per_s")
    p.add_argument("--from-wandb", metavar="ENTITY/PROJECT", help="read the group's finished runs from W&B")
    p.add_argument(
        "--out",
        type=Path,
        help="default: results/<table> for a paper table's mini group, runs/<table>-<scale>-table for its smoke or "
        "full group, else results/<group>",
    )
    p.add_argument("--title")
    p.add_argument("--notes", default="", help="a paragraph placed under the table")
    args = p.parse_args(argv)
    try:
        summaries = (
            collect_wandb(args.from_wandb, args.group) if args.from_wandb else collect_runs(args.runs_root, args.group)
        )
    except WandbUnavailableError as e:  # one line saying what to set, not a traceback from inside wandb
        raise SystemExit(f"make_table.py: {e}") from None
    if not summaries:
        where = f"W&B {args.from_wandb}" if args.from_wandb else f"{args.runs_root}/{args.group}/*/seed*/summary.json"
        raise SystemExit(f"no finished runs found in {where}")
    table = find_table(args.group)
    failed, missing, chance = [], [], None
    if table is not None and not args.metrics:
        spec = TABLES[table[0]]
        rows, shown = table_rows(spec, summaries)
        chance = chance_levels(spec, summaries)
        notes = "\n\n".join(n for n in (args.notes, table_notes(spec, summaries, rows, table[1])) if n)
        title, paper = args.title or spec.title, spec.paper
        if not args.from_wandb:  # a partial group (a table built over several calls) names what it lacks
            seeds = sorted({int(s.get("seed", 0)) for s in summaries})
            failures = collect_failures(args.runs_root, args.group)
            failed, missing = unfinished_rows(rows_of(*table), seeds, summaries, failures)
            for f in failed:
                print(f"row {f['name']} seed {f['seed']} failed: {f['error'].splitlines()[0]}", file=sys.stderr)
            if missing:
                names = ", ".join(sorted({m["name"] for m in missing}))
                print(f"{args.group}: no finished run for rows {names}", file=sys.stderr)
    else:
        shown = args.metrics or ["eval_loss", "tokens_per_s"]
        rows, notes, title, paper = aggregate(summaries, shown), args.notes, args.title or args.group, None
    default_out = table_out(*table, args.runs_root) if table else Path("results") / args.group
    out = write_table(
        args.out or default_out,
        rows,
        shown,
        title=title,
        notes=notes,
        paper=paper,
        command="python scripts/make_table.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        failed=failed,
        missing=missing,
        summaries=summaries,
        chance=chance,
    )
    if args.out is None and table is not None and table[1] == "mini":
        write_index()  # results/README.md lists the table
    print((out / "table.md").read_text())
    print(where_written(out))
    return out


if __name__ == "__main__":
    main()
