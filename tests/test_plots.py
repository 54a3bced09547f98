"""The table plot: every metric column a panel, error bars over seeds, level names, a title that fits."""

from __future__ import annotations

import statistics

import pytest
from matplotlib.container import BarContainer

from flurka.results.plots import DPI, table_figure
from flurka.results.tables import aggregate, write_table

METRICS = ["eval_ppl", "eval_loss", "tokens_per_s"]
NAMES = ["full", "flurka_performer_with_a_long_row_name", "linear"]


def _summaries() -> list[dict]:
    out = []
    for i, name in enumerate(NAMES):
        for seed in range(3):
            out.append({"name": name, "seed": seed, "eval_ppl": 30.0 + i + seed, "eval_loss": 3.4 + 0.1 * seed,
                        "tokens_per_s": 1000.0 * (i + 1) + 50 * seed})  # fmt: skip
    return out


def _bars(ax) -> BarContainer:
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    return bars


def test_every_metric_is_a_panel_with_a_bar_and_an_error_bar_per_row():
    rows = aggregate(_summaries(), METRICS)
    fig = table_figure(rows, METRICS, "t")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == METRICS
    for ax, metric in zip(axes, METRICS, strict=True):
        bars = _bars(ax)
        widths = [patch.get_width() for patch in bars.patches]
        expected = [statistics.fmean(s[metric] for s in _summaries() if s["name"] == n) for n in NAMES]
        assert widths == pytest.approx(expected)
        (segments,) = [c.get_segments() for c in bars.errorbar.lines[2]]
        spread = [statistics.stdev(s[metric] for s in _summaries() if s["name"] == n) for n in NAMES]
        assert [seg[1][0] - seg[0][0] for seg in segments] == pytest.approx([2 * s for s in spread])
        assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
        assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())


def test_the_title_and_labels_stay_inside_the_figure():
    title = "Language modelling: GPT with every causal variant (FLuRKA Table: Wikitext-103), a long title " * 2
    fig = table_figure(aggregate(_summaries(), METRICS[:1]), METRICS[:1], title)
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    inside = [fig._suptitle, *fig.axes[0].get_yticklabels()]
    for artist in inside:
        extent = artist.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, artist.get_text()


def test_the_written_png_reads_at_a_readme_width(tmp_path):
    import matplotlib.image

    rows = aggregate(_summaries(), METRICS)
    write_table(tmp_path, rows, METRICS, title="t")
    height, width = matplotlib.image.imread(tmp_path / "table.png").shape[:2]
    assert 600 <= width <= 2400 and height <= width  # three panels side by side, not one squeezed strip
    assert DPI >= 100


def test_one_seed_draws_no_error_bars_and_a_missing_value_is_no_bar():
    rows = [{"name": "a", "n_seeds": 1, "acc": 0.5, "acc_std": 0.0}, {"name": "b", "n_seeds": 1}]
    ax = table_figure(rows, ["acc"], "t").axes[0]
    assert _bars(ax).errorbar is None
    assert "no value" in [t.get_text().strip() for t in ax.texts]


def test_a_chance_level_is_a_line_on_its_own_panel_only():
    rows = [
        {"name": "full", "n_seeds": 1, "ListOps": 36.0, "avg": 36.0},
        {"name": "linear", "n_seeds": 1, "ListOps": 30.0, "avg": 30.0},
    ]
    fig = table_figure(rows, ["ListOps", "avg"], "LRA", chance={"ListOps": 16.1})
    listops, avg = fig.axes[:2]
    assert [line.get_xdata()[0] for line in listops.get_lines()] == [16.1]
    assert avg.get_lines() == []
