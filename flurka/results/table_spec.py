"""What a paper table is made of: its spec (rows' settings per scale, metrics, claim check) and the steps from
run summaries to the table's rows — aggregated over seeds, pivoted to one line per variant for task × variant
tables — and the notes under it. The tables themselves are in `paper_tables.py`, their claims in `claims.py`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flurka.results.noise import NoiseFloor, floors_at
from flurka.results.tables import aggregate, format_value

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Column:
    """One task column of a task × variant table. Rows of such a table are named `<task>-<variant>`; the
    table shows one line per variant and one column per task: `metric` of the `<task>-*` rows."""

    task: str  # the row-name prefix (conf/experiment/<table>/<task>-<variant>.yaml)
    metric: str  # the summary key, e.g. eval_matthews
    label: str  # the column header, e.g. "CoLA (MCC)"
    percent: bool = True  # ×100, as the papers print accuracies and correlations
    in_avg: bool = True  # counts toward the "avg" column


def majority_key(metric: str) -> str:
    """The summary key of the same metric for always predicting the commonest training label (the task's
    `majority_baseline`): eval_matthews -> eval_majority_matthews."""
    split, _, name = metric.partition("_")
    return f"{split}_majority_{name}"


@dataclass(frozen=True)
class TableSpec:
    """One paper table: what it shows, on which data at each scale, with which settings, and its claim check."""

    title: str
    metrics: list[str]
    dataset: dict[str, str]  # scale -> the data the table reads there (what the runs read is in their summaries)
    overrides: dict[str, list[str]] = field(default_factory=dict)  # scale -> Hydra overrides for every row
    paper: dict[str, dict[str, float]] | None = None
    claims: Callable[[Rows, Mapping[str, NoiseFloor]], str] | None = None  # (rows, noise floors) -> paragraph
    row_overrides: Callable[[str, str], list[str]] | None = None  # (row, scale) -> overrides for that row
    columns: list[Column] | None = None  # a task × variant table (metrics then lists the summary keys read)
    row_filter: Callable[[str, str], bool] | None = None  # (row, scale) -> does the row run at this scale

    def shown_metrics(self, rows: Rows) -> list[str]:
        """The table's columns: the metrics, or the task columns that have numbers and their average."""
        if not self.columns:
            return self.metrics
        return [c.label for c in self.columns if any(c.label in r for r in rows)] + ["avg"]

    def runs_at(self, row: str, scale: str) -> bool:
        """Whether the row runs at this scale (some tables run other tasks at full scale)."""
        return self.row_filter is None or self.row_filter(row, scale)

    def settings(self, row: str, scale: str) -> list[str]:
        """The Hydra overrides the table gives a row at a scale: the table's, then the row's own."""
        return [*self.overrides.get(scale, []), *(self.row_overrides(row, scale) if self.row_overrides else [])]

    def rows(self, aggregated: Rows) -> Rows:
        """Aggregated run rows -> the table's rows (pivoted to one line per variant for task × variant tables)."""
        return pivot(aggregated, self.columns) if self.columns else aggregated


def table_rows(spec: TableSpec, summaries: Rows) -> tuple[Rows, list[str]]:
    """Run summaries -> (the table's rows, the columns to show): aggregated over seeds, pivoted if the table is
    task × variant. Both scripts that build tables (run_table.py, make_table.py) go through here."""
    rows = spec.rows(aggregate(summaries, spec.metrics))
    return rows, spec.shown_metrics(rows)


def table_notes(spec: TableSpec, summaries: Rows, rows: Rows, scale: str) -> str:
    """The paragraphs under a table: scale, the data the table reads at that scale and what the runs actually
    read, seeds, run sizes, and the claim check."""
    seeds = sorted({s.get("seed", 0) for s in summaries})
    read = data_read(summaries)
    notes = [f"Scale: {scale}; data: {spec.dataset.get(scale, '?')}" + (f"; read: {read}" if read else "")
             + f"; seeds: {seeds}."]  # fmt: skip
    notes.append(run_sizes(summaries, by_task=spec.columns is not None))
    for extra in (evaluation_subset(summaries), majority_levels(spec, summaries),
                  shared_device(summaries)):  # fmt: skip
        if extra:
            notes.append(extra)
    if spec.claims:
        notes.append(spec.claims(rows, floors_at(scale)))
    return "\n\n".join(notes)


def data_read(summaries: Rows) -> str | None:
    """The data the runs actually read (their summaries' data_* keys): each task with the size of its training
    split, then the data root(s). None for summaries that do not record it (older runs)."""
    facts: dict[str, dict[str, Any]] = {}
    for s in summaries:
        if s.get("data_task"):
            facts.setdefault(s["data_task"], s)
    if not facts:
        return None
    items = [
        f"{task} ({s['data_train_size']:,} training {s['data_train_unit']})" if s.get("data_train_size") else task
        for task, s in facts.items()
    ]
    roots = sorted({str(s.get("data_root")) for s in facts.values()})
    return ", ".join(items) + " from " + ", ".join(roots)


def run_sizes(summaries: Rows, by_task: bool = False) -> str:
    """What the runs did: steps, training tokens and sequence length — once if every run did the same, else per
    row (per task prefix in a task × variant table)."""
    if not summaries:
        return "No run finished."
    sizes: dict[str, tuple] = {}
    for s in summaries:
        key = split_row(s["name"])[0] if by_task else s["name"]
        sizes.setdefault(key, (s.get("steps"), s.get("tokens_seen") or 0, s.get("seq_len")))

    def fmt(size: tuple) -> str:
        return f"{size[0]} steps, {size[1]:,} training tokens, sequence length {size[2]}"

    if len(set(sizes.values())) == 1:
        return f"Per run: {fmt(next(iter(sizes.values())))}."
    return "Per run: " + "; ".join(f"{key}: {fmt(size)}" for key, size in sizes.items()) + "."


def evaluation_subset(summaries: Rows) -> str:
    """A sentence naming the runs whose final numbers come from part of the split (trainer.final_eval_batches);
    empty when every run scored the whole dev/test split, as the papers do."""
    capped = {s["name"]: s["eval_examples_cap"] for s in summaries if s.get("eval_examples_cap") is not None}
    if not capped:
        return ""
    which = "; ".join(f"{name}: first {cap:,} examples" for name, cap in sorted(capped.items()))
    return f"Evaluated on a subset of the split, not the whole of it (trainer.final_eval_batches): {which}."


def chance_levels(spec: TableSpec, summaries: Rows) -> dict[str, float]:
    """Each column's chance level (by its label, scaled as the column; by metric name in a table without task
    columns): the score of always predicting the commonest training label on the same examples, from the runs'
    summaries (`majority_*`). Columns whose runs recorded none (regression, perplexity, speed) are left out."""
    columns = spec.columns or [Column("", m, m, percent=False) for m in spec.metrics]
    levels = {}
    for col in columns:
        ours = [s for s in summaries if not col.task or split_row(s["name"])[0] == col.task]
        key = majority_key(col.metric)
        values = {s[key] for s in ours if isinstance(s.get(key), int | float)}
        if values:  # one value unless runs scored different splits
            levels[col.label] = statistics.fmean(values) * (100.0 if col.percent else 1.0)
    return levels


def majority_levels(spec: TableSpec, summaries: Rows) -> str:
    """The sentence under a table giving each column's chance level: a score near it says the model learned
    little, so a gap between variants there is not a difference in quality. Empty when no run recorded one."""
    levels = chance_levels(spec, summaries)
    if not levels:
        return ""
    return (
        "Chance level (always predicting the commonest training label, scored like the runs): "
        + ", ".join(f"{label} {format_value(value)}" for label, value in levels.items())
        + ". A column near its chance level does not tell the variants apart."
    )


def shared_device(summaries: Rows) -> str:
    """A sentence for runs that shared their GPU with other runs (run_table.py --streams): their speeds are not
    those of a run alone, so tokens/s and wall times of such a table are not comparable across tables."""
    shared = [s for s in summaries if int(s.get("concurrent_runs") or 1) > 1]
    if not shared:
        return ""
    k = max(int(s["concurrent_runs"]) for s in shared)
    return (
        f"{len(shared)} of {len(summaries)} runs shared the device with other rows (up to {k} at a time, "
        "run_table.py --streams): quality is unaffected, but their tokens/s and wall times are not solo speeds."
    )


def split_row(name: str) -> tuple[str, str]:
    """`mrpc-flurka_rnn` -> ("mrpc", "flurka_rnn"). Task and variant names never contain '-'."""
    task, sep, variant = name.partition("-")
    if not sep:
        raise ValueError(f"row {name!r} of a task × variant table must be named <task>-<variant>")
    return task, variant


def pivot(rows: Rows, columns: list[Column]) -> Rows:
    """One row per variant: each task's metrics (mean, and std over seeds) under their column labels (a task may
    have several, e.g. MNLI matched and mismatched), and `avg` (with `avg_spread`) over the `in_avg` columns when
    the variant has all of them. Rows of tasks with no column are dropped."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        task, variant = split_row(row["name"])
        cols = [c for c in columns if c.task == task]
        if not cols:
            continue
        line = out.setdefault(variant, {"name": variant, "attention": variant, "n_seeds": row["n_seeds"]})
        line["n_seeds"] = min(line["n_seeds"], row["n_seeds"])
        for col in cols:
            if col.metric in row:
                factor = 100.0 if col.percent else 1.0
                line[col.label] = row[col.metric] * factor
                line[f"{col.label}_std"] = row.get(f"{col.metric}_std", 0.0) * factor
    ran = {label for line in out.values() for label in line}  # tasks not run at this scale are not averaged
    averaged = [c.label for c in columns if c.in_avg and c.label in ran]
    for line in out.values():
        if averaged and all(label in line for label in averaged):
            line["avg"] = sum(line[label] for label in averaged) / len(averaged)
            # the average's spread over seeds, estimated from its columns' (taken as independent); the claim
            # check needs one, the table shows none (only per-seed averages would give it exactly)
            line["avg_spread"] = math.sqrt(sum(line[f"{label}_std"] ** 2 for label in averaged)) / len(averaged)
    return list(out.values())
