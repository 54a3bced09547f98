"""Keep the run folders behind the committed tables: `python scripts/archive_runs.py RUNS_ROOT [--to results/runs]`.

A device call's run folders come back as runs.tgz (checkpoints left out) and are gone with the machine. This
copies, for every run of a paper table's mini group (`<table>-mini/<row>/seed<k>/`), the small files that say
what the run did — summary.json (its numbers and provenance), config.yaml (the resolved config), metrics.jsonl
(the curves) and failed.json (for a row that failed) — into results/runs/, so that anyone can rebuild a table
from the clone with `scripts/make_table.py <table>-mini --runs-root results/runs`, and a later session can add
the runs it lacks. A run with neither a summary nor a failure record (cut short) is not kept: the table names
it missing. Files are copied as written, never edited; an archived run is replaced by a newer run of it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from flurka.results.paper_tables import TABLES
from flurka.results.tables import FAILED_FILE

KEPT = ("summary.json", "config.yaml", "metrics.jsonl", FAILED_FILE)


def archive(runs_root: Path, to: Path) -> list[Path]:
    """Copy the kept files of every finished or failed mini-scale table run under `runs_root` into `to`; returns
    the archived run folders."""
    kept = []
    for table in TABLES:
        group = runs_root / f"{table}-mini"
        for run in sorted(group.glob("*/seed*")):
            if not ((run / "summary.json").is_file() or (run / FAILED_FILE).is_file()):
                continue  # cut short: no result to keep
            dest = to / run.relative_to(runs_root)
            shutil.rmtree(dest, ignore_errors=True)  # a rerun replaces the whole run, never mixes with it
            dest.mkdir(parents=True)
            for name in KEPT:
                if (run / name).is_file():
                    shutil.copy2(run / name, dest / name)
            kept.append(dest)
    return kept


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs_root", type=Path, help="where the run folders are (e.g. an unpacked runs.tgz: <dir>/runs)")
    p.add_argument("--to", type=Path, default=Path("results/runs"))
    args = p.parse_args(argv)
    kept = archive(args.runs_root, args.to)
    groups = sorted({k.parent.parent.name for k in kept})
    print(f"archived {len(kept)} runs of {', '.join(groups) or 'no table'} into {args.to}")
    for group in groups:
        print(f"  rebuild: python scripts/make_table.py {group} --runs-root {args.to}")


if __name__ == "__main__":
    main()
