"""When a gap between two table rows is a finding and when it is noise.

A gap counts only when it exceeds the rows' seed spread (the sum of their standard deviations over seeds).
With one seed there is no spread to compare with; then a noise floor stated here stands in for it at the mini
and full scales. The floors are stated assumptions, not measurements, and the paragraph under a table says
which one it used; rerunning with several seeds (`run_table.py --seeds 0 1 2`) replaces them with the
measured spread. Smoke runs take a few CPU steps, so their gaps are noise by construction: no floor there,
and single-seed smoke claims are always inconclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NoiseFloor:
    """The smallest gap called a difference with one seed: `absolute` in the metric's units, or `relative` to
    the reference row's value, whichever is larger."""

    absolute: float = 0.0
    relative: float = 0.0

    def of(self, reference: float) -> float:
        return max(self.absolute, self.relative * abs(reference))

    def __str__(self) -> str:
        parts = [f"{self.absolute:g}"] if self.absolute else []
        return " or ".join([*parts, *([f"{self.relative:.0%} of the reference"] if self.relative else [])])


# Per summary key / table column. Assumed spreads between seeds of one mini run on one GPU.
STATED_FLOORS: dict[str, NoiseFloor] = {
    "eval_ppl": NoiseFloor(relative=0.03),
    "eval_bpc": NoiseFloor(relative=0.02),
    "eval_bpd": NoiseFloor(relative=0.02),
    "eval_accuracy": NoiseFloor(absolute=0.01),  # a fraction: one percentage point
    "avg": NoiseFloor(absolute=1.0),  # an average of percentage (GLUE, LRA) or BLEU columns: one point
    "tokens_per_s": NoiseFloor(relative=0.05),
}


def floors_at(scale: str) -> Mapping[str, NoiseFloor]:
    """The stated floors a table at `scale` may use (none at smoke)."""
    return {} if scale == "smoke" else STATED_FLOORS


@dataclass(frozen=True)
class Gap:
    """How row `ours` compares with row `ref` on one metric: 'better', 'worse' or 'within noise', and why."""

    direction: str
    reason: str

    def verdict(self) -> str:
        """For a claim that `ours` is at least as good as `ref`."""
        return {"better": "supported", "worse": "contradicted"}.get(self.direction, "inconclusive")


def compare(
    ours: dict[str, Any],
    ref: dict[str, Any],
    metric: str,
    *,
    higher_is_better: bool,
    floors: Mapping[str, NoiseFloor],
) -> Gap:
    """Compare one metric of two aggregated rows (`<metric>`, `<metric>_std` or `<metric>_spread`, `n_seeds`)."""
    a, b = float(ours[metric]), float(ref[metric])
    gap = a - b
    seeds = min(int(ours.get("n_seeds", 1)), int(ref.get("n_seeds", 1)))
    if seeds > 1:
        spread = _spread(ours, metric) + _spread(ref, metric)
        threshold, what = spread, f"the seed spread {spread:.3g} ({seeds} seeds)"
    elif metric in floors:
        threshold = floors[metric].of(b)
        what = f"the stated noise floor {threshold:.3g} ({floors[metric]}; one seed)"
    else:
        return Gap("within noise", "one seed and no stated noise floor; rerun with --seeds 0 1 2")
    if abs(gap) <= threshold:
        return Gap("within noise", f"the gap {gap:+.3g} is within {what}")
    better = (gap > 0) == higher_is_better
    return Gap("better" if better else "worse", f"the gap {gap:+.3g} exceeds {what}")


def _spread(row: dict[str, Any], metric: str) -> float:
    # `_spread` is what a pivoted table's average carries: estimated, not shown in the table (table_spec.pivot)
    return float(row.get(f"{metric}_std", row.get(f"{metric}_spread", 0.0)))
