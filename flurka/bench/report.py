"""What every FLuRKA figure folder holds, written in one place (PAPERS.md §1; Figs. 1, 3, 4, 5).

`results/flurka_speed/<figure>/`: `results.json` (provenance + rows, `write_results`), `results.csv` (the same
rows, flat), `results.png` and `table.md` (the paper's claim beside our number, and whether we reach it).
Every speed suite keeps its rows in a `ResultsLog`, which rewrites the JSON after each measured point (issue 21).
Also the speedup arithmetic the figures share: a FLuRKA row against its low-rank constituent (Linformer), its
kernel constituent, full attention and flash, matched on the shape keys, from measured ms or from FLOPs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flurka.bench.flops import KERNEL_OF
from flurka.results.provenance import write_results

# The paper's speed claims, word for word from PAPERS.md §1 (abstract of arXiv 2306.15799 v2; v1 for full).
CLAIMS = {
    "low_rank": ("up to 3.3× over low-rank methods", 3.3),
    "kernel": ("up to 1.7× over kernel methods", 1.7),
    "flash": ("up to 20× over flash-attention models", 20.0),
    "full": ("up to 30× over full attention (paper v1)", 30.0),
}
FLURKA = tuple(KERNEL_OF)  # flurka_performer, flurka_rnn, flurka_eva
SHAPE_KEYS = ("mode", "N", "H", "d_model", "d_k")
# what a FLuRKA variant is compared against: a function of the FLuRKA variant's name
BASELINES: dict[str, Callable[[str], str]] = {
    "low_rank": lambda _: "linformer",
    "kernel": lambda name: KERNEL_OF[name],
    "full": lambda _: "full",
    "flash": lambda _: "flash",
}


class ResultsLog(list):
    """A sweep's rows that follow themselves to disk: each `append` / `extend` / `+=` rewrites the results JSON
    (atomically, `write_results`) marked `"complete": false`, and `finish()` marks it complete. So a run cut
    short (killed by a timeout, interrupted, a crash) leaves valid JSON holding every point it measured, and a
    reader tells a finished sweep from a partial one (issue 21). The JSON is written at once, empty, so a run
    that dies before its first point does not leave an older run's file looking like this one's result."""

    def __init__(self, path: str | Path, **extra: Any) -> None:
        super().__init__()
        self.path = Path(path)
        self.extra = extra  # top-level keys beside provenance and rows (what the sweep is, not a measurement)
        self.write()

    def append(self, row: dict) -> None:
        super().append(row)
        self.write()

    def extend(self, rows: Iterable[dict]) -> None:
        super().extend(rows)
        self.write()

    def __iadd__(self, rows: Iterable[dict]) -> ResultsLog:  # type: ignore[override, misc]
        self.extend(rows)
        return self

    def write(self, *, complete: bool = False) -> Path:
        return write_results(self.path, list(self), complete=complete, **self.extra)

    def finish(self) -> Path:
        """The sweep ended: the same rows, marked complete."""
        return self.write(complete=True)


def results_path(out: str | Path) -> Path:
    """`--out` names the JSON file (`…/results.json`, or any `*.json`) or the folder that will hold it."""
    out = Path(out)
    return out if out.suffix == ".json" else out / "results.json"


def ratio(slow: float | None, fast: float | None) -> float | None:
    """slow / fast, or None when either side is missing (an OOM row) or not positive."""
    if slow is None or fast is None or not (slow > 0 and fast > 0):
        return None
    return float(f"{slow / fast:.4g}")  # significant figures: a 1000× slowdown must not round to 0


def _matches(base: dict, row: dict, keys: Iterable[str]) -> bool:
    # a baseline without a value for a key (e.g. a kernel method has no d_k) does not depend on it
    return all(base.get(k) is None or base.get(k) == row.get(k) for k in keys)


def find_row(rows: list[dict], variant: str, like: dict, keys: Iterable[str] = SHAPE_KEYS) -> dict | None:
    """The `variant` row measured at the same shape as `like`; baselines with no value for a key match any."""
    keys = tuple(keys)
    for r in rows:
        if r.get("variant") == variant and _matches(r, like, keys):
            return r
    return None


def speedup_over(
    rows: list[dict], row: dict, baseline: str, *, field: str = "ms", keys: Iterable[str] = SHAPE_KEYS
) -> float | None:
    """How many times faster `row` is than the `baseline` variant at its shape (`field`: "ms" or FLOPs)."""
    base = find_row(rows, baseline, row, keys)
    return None if base is None else ratio(base.get(field), row.get(field))


def best_flurka_speedup(
    rows: list[dict],
    kind: str,
    *,
    field: str = "ms",
    mode: str = "fwd",
    baseline: str | None = None,
    variants: Iterable[str] = FLURKA,
) -> tuple[float | None, str]:
    """The best speedup of any FLuRKA row (of `variants`) over its `kind` baseline (low_rank | kernel | full |
    flash), or over the variant named `baseline`; with where it was measured."""
    best: tuple[float | None, str] = (None, "no matching rows")
    variants = tuple(variants)
    for r in rows:
        if r.get("variant") not in variants or r.get("mode") != mode:
            continue
        base = baseline or BASELINES[kind](r["variant"])
        s = speedup_over(rows, r, base, field=field)
        if s is not None and (best[0] is None or s > best[0]):
            where = ", ".join(f"{k}={r[k]}" for k in ("N", "d_model", "d_k") if r.get(k) is not None)
            best = (s, f"{r['variant']} vs {base}, {where}, {mode}")
    return best


@dataclass
class Claim:
    """One line of table.md: the paper's claim, our best number and where it was measured.

    A speed claim ("up to 3.3×") is reached when our best ratio is at least the paper's. A claim that is not a
    number to reach (Fig. 1: "the matrix is low-rank") carries our result as `ours_text` and the verdict in
    `holds`, with the criterion spelled out in `where`."""

    claim: str
    paper: float | None
    ours: float | None
    where: str
    predicted: float | None = None  # the FLOP model's ratio at the same shapes, where the figure has one
    unit: str = "×"
    ours_text: str | None = None
    holds: bool | None = None

    def fmt(self, x: float) -> str:
        return f"{x:.2f}{self.unit}" if abs(x) < 100 else f"{x:.0f}{self.unit}"

    @property
    def ours_str(self) -> str:
        return self.ours_text or ("—" if self.ours is None else self.fmt(self.ours))

    @property
    def reached(self) -> bool | None:
        if self.holds is not None:
            return self.holds
        if self.ours is None or self.paper is None:
            return None
        return self.ours >= self.paper

    def verdict(self) -> str:
        if self.ours is None and self.ours_text is None:
            return f"The paper reports {self.claim}; we have no measurement to compare ({self.where})."
        if self.reached is None:
            return f"The paper reports {self.claim}; we measure {self.ours_str} ({self.where})."
        if self.ours_text is not None:
            verb = "supports" if self.reached else "does not support"
            return f"Our measurement, {self.ours_str} ({self.where}), {verb} the paper's claim: {self.claim}."
        verb = "reaches" if self.reached else "does not reach"
        return f"Our best, {self.ours_str} ({self.where}), {verb} the paper's {self.claim}."


def claim_for(
    kind: str, rows: list[dict], *, mode: str = "fwd", flop_field: str | None = None, label: str = "", **select
) -> Claim:
    """The paper's speed claim `kind` checked against the best FLuRKA row; with `flop_field`, also the best
    ratio the FLOP model predicts over the same rows. `select`: `baseline=` / `variants=` of best_flurka_speedup."""
    text, paper = CLAIMS[kind]
    ours, where = best_flurka_speedup(rows, kind, mode=mode, **select)
    pred = best_flurka_speedup(rows, kind, field=flop_field, mode=mode, **select)[0] if flop_field else None
    return Claim(f"{text} ({label})" if label else text, paper, ours, where, pred)


def claims_markdown(claims: list[Claim]) -> str:
    has_pred = any(c.predicted is not None for c in claims)
    pred_col = " FLOP model (best) |" if has_pred else ""
    head = f"| paper's claim | ours (best measured) |{pred_col} where (best measured) |"
    lines = [head, "|---|---|" + ("---|" if has_pred else "") + "---|"]
    for c in claims:
        pred = (" — |" if c.predicted is None else f" {c.fmt(c.predicted)} |") if has_pred else ""
        lines.append(f"| {c.claim} | {c.ours_str} |{pred} {c.where} |")
    return "\n".join([*lines, "", *(f"- {c.verdict()}" for c in claims)])


def _cell(v: Any) -> Any:
    if isinstance(v, (list, dict, tuple)):
        return json.dumps(v)
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return "" if v is None else v


def write_csv(path: Path, rows: list[dict]) -> Path:
    """The rows as CSV: the union of their keys in first-seen order; lists and dicts as JSON text."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in columns})
    return path


def write_figure(
    out: str | Path,
    rows: list[dict],
    *,
    title: str,
    setup: list[str],
    claims: list[Claim],
    plot: Callable[[list[dict], Path], None],
    dry_run: bool = False,
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """Write results.json (with provenance, marked complete: the sweep is over), results.csv, results.png and
    table.md for one figure."""
    json_path = write_results(results_path(out), list(rows), complete=True)
    paths = {"json": json_path, "csv": write_csv(json_path.with_suffix(".csv"), rows)}
    paths["png"] = json_path.with_suffix(".png")
    plot(rows, paths["png"])
    paths["md"] = write_claims_table(
        json_path, json_path.parent / "table.md", title=title, setup=setup, claims=claims, notes=notes, dry_run=dry_run
    )
    return paths


def write_claims_table(
    json_path: Path,
    md_path: Path,
    *,
    title: str,
    setup: list[str],
    claims: list[Claim],
    notes: list[str] | None = None,
    dry_run: bool = False,
) -> Path:
    """A figure's table.md (or a speed suite's <suite>.md): the setup, the provenance of the results JSON it was
    built from, the paper's claims beside our numbers with a verdict each, then any notes."""
    prov = json.loads(Path(json_path).read_text())["provenance"]
    md = [f"# {title}", ""]
    if dry_run:
        md += ["**Dry run** (tiny shapes on CPU): checks the script; these numbers are not measurements.", ""]
    md += [f"- {line}" for line in setup]
    md += [f"- commit `{prov['commit']}`, {prov['gpu']}, torch {prov['torch']}, triton {prov['triton']}",
           f"- command: `{prov['command']}`", "", claims_markdown(claims), ""]  # fmt: skip
    md += [*(notes or []), ""]
    md_path = Path(md_path)
    md_path.write_text("\n".join(md).rstrip() + "\n")
    return md_path


def estimate_seconds(flops: Iterable[float], *, rate: float = 300e12, overhead_s: float = 0.6) -> float:
    """A rough wall time on an H100 for timing layers of these FLOPs: `bench_ms` runs each ~10 times (warm-up,
    estimate, repeats) at `rate` FLOP/s, plus building the module and Triton's first compile per shape."""
    return sum(overhead_s + 10 * f / rate for f in flops)


def plt_agg():
    """matplotlib.pyplot on the Agg backend (no display on a GPU node)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
