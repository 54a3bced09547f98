"""Run folders (or W&B runs) -> a paper table: results.json, table.md, table.csv and a plot.

Each row of a table is one experiment name (one attention variant, usually) aggregated over its seeds: mean
and sample standard deviation of every metric, with the number of seeds. Nothing here edits a number; the
paper's values, where PAPERS.md gives them, are placed beside ours and labelled as the paper's.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from flurka.results.provenance import describe_runs, runs_provenance, write_results

NUMERIC_SKIP = {"seed", "steps", "world_size"}


def collect_runs(runs_root: str | Path, group: str) -> list[dict[str, Any]]:
    """Every summary.json under runs/<group>/<name>/seed*/, tagged with its row name."""
    out = []
    for path in sorted(Path(runs_root, group).glob("*/seed*/summary.json")):
        summary = json.loads(path.read_text())
        summary.setdefault("name", path.parent.parent.name)
        out.append(summary)
    return out


FAILED_FILE = "failed.json"


def record_failure(run_dir: str | Path, name: str, seed: int, error: BaseException) -> dict[str, Any]:
    """Write <run_dir>/failed.json for a table row whose run raised, and return the record. The run folder keeps
    whatever the run wrote before it failed (its metrics and checkpoints), so nothing is lost."""
    import traceback

    record = {
        "name": name,
        "seed": seed,
        "error": f"{type(error).__name__}: {error}".strip(),
        "traceback": "".join(traceback.format_exception(error))[-4000:],
    }
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FAILED_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def collect_failures(runs_root: str | Path, group: str) -> list[dict[str, Any]]:
    """Every failed.json under runs/<group>/<name>/seed*/ whose run has not since finished (no summary.json)."""
    out = []
    for path in sorted(Path(runs_root, group).glob(f"*/seed*/{FAILED_FILE}")):
        if not (path.parent / "summary.json").exists():
            out.append(json.loads(path.read_text()))
    return out


def unfinished_rows(
    expected: list[str], seeds: list[int], summaries: list[dict[str, Any]], failures: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(failed, missing): the expected (row, seed) runs that failed, and those with neither a summary nor a
    failure record (never run, or killed before they could say so)."""
    done = {(s["name"], int(s.get("seed", 0))) for s in summaries}
    failed = [f for f in failures if f["name"] in expected and int(f["seed"]) in seeds]
    failed_keys = {(f["name"], int(f["seed"])) for f in failed}
    missing = [
        {"name": row, "seed": seed}
        for row in expected
        for seed in seeds
        if (row, seed) not in done and (row, seed) not in failed_keys
    ]
    return failed, missing


def unfinished_markdown(failed: list[dict[str, Any]], missing: list[dict[str, Any]]) -> str:
    """The table.md section that names every row without a result, so a partial table never reads as whole."""
    if not failed and not missing:
        return ""
    lines = ["## Rows without a result", "", "| row | seed | status |", "|---|---|---|"]
    for f in failed:
        error = f["error"].splitlines()[0] if f["error"] else "?"
        lines.append(f"| {f['name']} | {f['seed']} | failed: {error[:300].replace('|', '/')} |")
    lines += [f"| {m['name']} | {m['seed']} | missing: no run finished |" for m in missing]
    return "\n".join(lines) + "\n"


class WandbUnavailableError(RuntimeError):
    """W&B cannot be read (no API key, or the API refused): scripts print the message as one line."""


WANDB_HOST = "api.wandb.ai"


def _wandb_key_configured() -> bool:
    """WANDB_API_KEY, or the netrc entry `wandb login` writes: checked first, so a missing key is one clear line
    (wandb itself would prompt on a terminal or raise from deep inside its client)."""
    import netrc

    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(WANDB_HOST) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def collect_wandb(path: str, group: str) -> list[dict[str, Any]]:
    """The same numbers from W&B's public API: finished runs of `group` in ENTITY/PROJECT."""
    if not _wandb_key_configured():
        raise WandbUnavailableError(
            "--from-wandb needs a W&B API key: set WANDB_API_KEY=<key from https://wandb.ai/authorize> "
            "(or run `wandb login`), or build the table from local run folders (drop --from-wandb)"
        )
    import wandb

    try:
        runs = list(wandb.Api().runs(path, filters={"group": group, "state": "finished"}))
    except (wandb.errors.UsageError, wandb.errors.AuthenticationError, wandb.errors.CommError, ValueError) as e:
        raise WandbUnavailableError(f"W&B refused to list {path} (group {group}): {str(e).splitlines()[0]}") from e
    out = []
    for run in runs:
        summary = {k: v for k, v in run.summary.items() if not k.startswith("_")}
        summary.setdefault("name", run.name)
        summary.setdefault("seed", run.config.get("seed", 0))
        out.append(summary)
    return out


def aggregate(summaries: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per name: `<metric>` (mean), `<metric>_std` (sample std, 0 for one seed), `n_seeds`."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        by_name[s["name"]].append(s)
    rows = []
    for name, group in by_name.items():
        row: dict[str, Any] = {"name": name, "n_seeds": len(group)}
        for key in ("attention", "task", "model", "seq_len", "tokens_seen", "params", "commit", "gpu"):
            values = {str(s.get(key)) for s in group if key in s}
            if values:
                row[key] = group[0][key] if len(values) == 1 else sorted(values)
        for metric in metrics:
            values = [float(s[metric]) for s in group if isinstance(s.get(metric), int | float)]
            values = [v for v in values if math.isfinite(v)]
            if values:
                row[metric] = statistics.fmean(values)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def format_value(value: Any) -> str:
    """How a number reads in a table or on a plot: thousands separated, else three decimals."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]], metrics: list[str], paper: dict[str, dict[str, float]] | None) -> str:
    head = ["row", "seeds", *metrics]
    if paper:
        head += [f"paper {m}" for m in next(iter(paper.values()))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["name"], str(row["n_seeds"])]
        for m in metrics:
            mean = row.get(m)
            spread = row["n_seeds"] > 1 and f"{m}_std" in row  # an average of columns has no std of its own
            shown = "—" if mean is None else format_value(mean)
            cells.append(shown + (f" ± {format_value(row[f'{m}_std'])}" if spread and mean is not None else ""))
        if paper:
            ref = paper.get(row.get("attention", row["name"]), {})
            cells += [format_value(ref.get(k)) if k in ref else "—" for k in next(iter(paper.values()))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    out_dir: str | Path,
    rows: list[dict[str, Any]],
    metrics: list[str],
    *,
    title: str,
    notes: str = "",
    paper: dict[str, dict[str, float]] | None = None,
    command: str | None = None,
    failed: list[dict[str, Any]] | None = None,
    missing: list[dict[str, Any]] | None = None,
    summaries: list[dict[str, Any]] | None = None,
    chance: dict[str, float] | None = None,
) -> Path:
    """results.json (DESIGN.md schema), table.md (with `notes` under the table), table.csv, and table.png (a
    panel per metric column, flurka.results.plots). `failed` / `missing`: the rows without a result (see
    `unfinished_rows`), named in results.json and table.md. `summaries`: the runs behind the rows, whose own
    provenance (GPU, commit, versions) goes into results.json as "runs" and into table.md. `chance`: a column's
    chance level (table_spec.chance_levels), drawn as a line on its panel."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed, missing = failed or [], missing or []
    brief_failures = [{k: f[k] for k in ("name", "seed", "error")} for f in failed]
    runs = runs_provenance(summaries or [])
    write_results(out / "results.json", rows, command, failed=brief_failures, missing=missing, runs=runs)
    unfinished = unfinished_markdown(failed, missing)
    made = describe_runs(runs)
    (out / "table.md").write_text(
        f"# {title}\n\n"
        + markdown_table(rows, metrics, paper)
        + (f"\n{notes}\n" if notes else "")
        + (f"\n{unfinished}" if unfinished else "")
        + (f"\n{made} Table built by: `{command}`.\n" if made else "")
    )
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "name", k))
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(
            {k: (v if not isinstance(v, list) else ";".join(map(str, v))) for k, v in r.items()} for r in rows
        )
    from flurka.results.plots import save_table_plot  # plots imports format_value from here

    save_table_plot(out / "table.png", rows, metrics, title, chance=chance)
    return out


def where_written(out: str | Path) -> str:
    """The line a script ends with: where the table (and its plot, when there is one) went."""
    out = Path(out)
    plot = out / "table.png"
    return f"table: {out / 'table.md'}" + (f"\nplot:  {plot}" if plot.exists() else " (no metric to plot)")
