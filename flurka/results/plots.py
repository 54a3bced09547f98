"""The plot beside a table: one figure, one panel per metric column, a horizontal bar per row with error bars
over seeds. Horizontal bars keep row names level and whole, however many rows a table has; the title wraps
instead of running off the figure; the size reads at a README's width."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from flurka.results.tables import format_value

PANEL_WIDTH_IN = 4.2
ROW_HEIGHT_IN = 0.32
MAX_COLUMNS = 3
DPI = 150
TITLE_CHARS_PER_IN = 13  # ~ characters of a 11 pt title per inch of figure width


def _value(row: dict[str, Any], metric: str) -> float | None:
    v = row.get(metric)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def plotted_metrics(rows: list[dict[str, Any]], metrics: list[str]) -> list[str]:
    """The metric columns that have a number in at least one row (each becomes a panel)."""
    return [m for m in metrics if any(_value(r, m) is not None for r in rows)]


def table_figure(rows: list[dict[str, Any]], metrics: list[str], title: str, chance: dict[str, float] | None = None):
    """A matplotlib Figure: a panel per plotted metric, rows top to bottom in table order; a dashed line at a
    metric's chance level where `chance` gives one (so a bar at chance reads as such)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    shown = plotted_metrics(rows, metrics)
    ncols = min(MAX_COLUMNS, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    width = PANEL_WIDTH_IN * ncols
    height = nrows * (0.9 + ROW_HEIGHT_IN * len(rows)) + 0.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained")
    names = [r["name"] for r in rows]
    positions = list(range(len(rows)))
    for ax, metric in zip(axes.flat, shown, strict=False):
        values = [_value(r, metric) for r in rows]
        errors = [
            float(r.get(f"{metric}_std", 0.0)) if r.get("n_seeds", 1) > 1 and _value(r, metric) is not None else 0.0
            for r in rows
        ]
        ax.barh(positions, [v if v is not None else 0.0 for v in values], xerr=errors if any(errors) else None,
                capsize=3, color="#4C72B0")  # fmt: skip
        for y, v, e in zip(positions, values, errors, strict=True):
            if v is None:  # a row without this metric: said so, not drawn as zero
                ax.text(0, y, " no value", va="center", fontsize=8, color="0.4")
            else:  # the number past its bar and error bar, so the plot reads without the table
                side = "left" if v >= 0 else "right"
                ax.text(v + math.copysign(e, v), y, f" {format_value(v)} ", va="center", ha=side, fontsize=8)
        ax.margins(x=0.28)  # room for those numbers inside the panel
        ax.set_yticks(positions, names, fontsize=9)
        ax.invert_yaxis()  # the first table row on top, as in table.md
        ax.set_title(metric, fontsize=10)
        if chance and metric in chance:
            ax.axvline(chance[metric], color="#C44E52", linestyle="--", linewidth=1.2)
            ax.text(chance[metric], -0.6, " chance", color="#C44E52", fontsize=8, va="bottom")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # few ticks: wide numbers (tokens/s) never touch
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}" if abs(x) >= 1000 else f"{x:g}"))
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    seeds = sorted({int(r.get("n_seeds", 1)) for r in rows})
    note = " (error bars: std over seeds)" if seeds and seeds[-1] > 1 else ""
    fig.suptitle(textwrap.fill(title + note, int(width * TITLE_CHARS_PER_IN)), fontsize=11)
    return fig


def save_table_plot(
    path: str | Path,
    rows: list[dict[str, Any]],
    metrics: list[str],
    title: str,
    chance: dict[str, float] | None = None,
) -> Path | None:
    """Write the figure to `path` (PNG); None when no metric has a number to draw."""
    if not rows or not plotted_metrics(rows, metrics):
        return None
    import matplotlib.pyplot as plt

    fig = table_figure(rows, metrics, title, chance)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)
