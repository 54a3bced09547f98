"""Build a results table from run folders (or W&B): `python scripts/make_table.py GROUP [options]`.

    python scripts/make_table.py demo --metrics eval_bpc tokens_per_s
    python scripts/make_table.py table-wikitext103 --from-wandb my-team/flurka

Writes results/<GROUP>/{results.json, table.md, table.csv, table.png}. Never edit those files by hand: rerun.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from flurka.results.tables import aggregate, collect_runs, collect_wandb, write_table


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("group", help="the experiment group / table id (runs/<group>/...)")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--metrics", nargs="+", default=["eval_loss", "tokens_per_s"])
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
    rows = aggregate(summaries, args.metrics)
    out = write_table(
        args.out or Path("results") / args.group,
        rows,
        args.metrics,
        title=args.title or args.group,
        notes=args.notes,
        command="python scripts/make_table.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
    )
    print((out / "table.md").read_text())
    return out


if __name__ == "__main__":
    main()
