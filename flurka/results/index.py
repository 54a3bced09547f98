"""results/README.md: an index of every table and figure — command, status, date, commit — regenerated from
the results files themselves whenever a script writes one (never edited by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from flurka.results.provenance import numbers_provenance

SPEED = {  # results/speed/<suite>.json
    "flash": "make bench-flash",
    "scfa": "make fig-scfa-runtime",
    "lightning": "make fig-lightning",
    "train": "make bench-train",
}
FLURKA_FIGURES = {  # results/flurka_speed/<figure>/results.json
    "fig3_seqlen": "make fig-flurka-seqlen",
    "fig4_ablation": "make fig-flurka-ablation",
    "fig5_vs_flash": "make fig-flurka-vs-flash",
    "fig1_rank": "make fig-flurka-rank",
}


def made_by(data: dict) -> tuple[str, str, str]:
    """(date, commit, GPU) of the numbers (`numbers_provenance`): the latest date, every commit and GPU."""
    made = numbers_provenance(data)
    dates = made["dates"] or [data["provenance"]["date"]]
    return dates[-1][:10], ", ".join(c[:12] for c in made["commit"]), ", ".join(made["gpu"])


def table_status(data: dict) -> str:
    """'mini done' only when no row failed or is missing; else how many runs of the table lack a result."""
    lacking = len(data.get("failed") or []) + len(data.get("missing") or [])
    done = f"mini: {len(data['rows'])} rows" + (f", {lacking} run(s) without a result" if lacking else " done")
    return done + "; full not run"


def write_index(results_root: str | Path = "results") -> Path:
    from flurka.results.paper_tables import TABLES

    root = Path(results_root)
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Results index",
        "",
        "Written by the project's scripts (`flurka/results/index.py`); every file below carries its provenance.",
        "`runs/` holds the run folders the tables were built from (summary, resolved config, curves; no",
        "checkpoints), kept by `scripts/archive_runs.py`: `scripts/make_table.py <table>-mini --runs-root",
        "results/runs` rebuilds a table from the clone.",
        "",
        "| result | command | status | date | commit | GPU |",
        "|---|---|---|---|---|---|",
    ]
    entries = [(t, f"make {t} SCALE=mini", root / t / "results.json") for t in TABLES]
    entries += [(f"speed/{s}", cmd, root / "speed" / f"{s}.json") for s, cmd in SPEED.items()]
    entries += [
        (f"flurka_speed/{f}", cmd, root / "flurka_speed" / f / "results.json") for f, cmd in FLURKA_FIGURES.items()
    ]
    entries.append(("distributed", "make scaling", root / "distributed" / "results.json"))
    for name, cmd, path in entries:
        if path.exists():
            data = json.loads(path.read_text())
            date, commit, gpu = made_by(data)
            status = table_status(data) if name in TABLES else "measured"
            lines.append(f"| {name} | `{cmd}` | {status} | {date} | `{commit}` | {gpu} |")
        else:
            lines.append(f"| {name} | `{cmd}` | not run yet | | | |")
    out = root / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out
