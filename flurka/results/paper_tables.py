"""What each paper table is: its rows (conf/experiment/<table>/*.yaml), metrics, per-scale settings, the
papers' numbers where PAPERS.md gives them, and the claim our numbers are checked against.

The paragraph under each table is computed from the measured rows (never written by hand): it states, with
numbers, whether the run supports or contradicts the paper's claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class TableSpec:
    title: str
    metrics: list[str]
    dataset: dict[str, str]  # scale -> what data the run actually used
    overrides: dict[str, list[str]] = field(default_factory=dict)  # scale -> Hydra overrides for every row
    paper: dict[str, dict[str, float]] | None = None
    claims: Callable[[Rows], str] | None = None
    row_overrides: Callable[[str, str], list[str]] | None = None  # (row, scale) -> overrides for that row


def _by_name(rows: Rows) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in rows}


def flurka_vs_constituents(metric: str, lower_is_better: bool = True) -> Callable[[Rows], str]:
    """FLuRKA's claim: quality comparable to its low-rank and kernel constituents (and to full attention)."""

    def check(rows: Rows) -> str:
        r = _by_name(rows)
        lines = [f"FLuRKA claims quality comparable to its constituents. Measured {metric} (relative difference):"]
        for flurka, kernel in (("flurka_performer", "performer"), ("flurka_rnn", "linear"), ("flurka_eva", "eva")):
            if flurka in r and kernel in r and metric in r[flurka] and metric in r[kernel]:
                a, b = r[flurka][metric], r[kernel][metric]
                rel = (a - b) / abs(b) * 100
                better = (a < b) == lower_is_better
                lines.append(f"- {flurka} {a:.3f} vs {kernel} {b:.3f}: {rel:+.1f}% ({'better' if better else 'worse'})")
        if "full" in r and metric in r["full"]:
            lines.append(f"- full attention: {r['full'][metric]:.3f}")
        return "\n".join(lines)

    return check


def scfa_speed_and_quality(rows: Rows) -> str:
    r = _by_name(rows)
    base = r.get("flash")
    if not base or not base.get("tokens_per_s"):
        return "No flash baseline row: speedups cannot be computed."
    lines = ["SCFA claims 2.0x (8k) / 3.3x (16k) faster LM training with no perplexity loss. Measured vs flash:"]
    for name, row in r.items():
        if name == "flash" or not row.get("tokens_per_s"):
            continue
        speed = row["tokens_per_s"] / base["tokens_per_s"]
        dppl = row.get("eval_ppl", float("nan")) - base.get("eval_ppl", float("nan"))
        lines.append(
            f"- {name}: {speed:.2f}x tokens/s, perplexity {row.get('eval_ppl', float('nan')):.2f} ({dppl:+.2f})"
        )
    return "\n".join(lines)


def uptrain_vs_scratch(rows: Rows) -> str:
    r = _by_name(rows)
    lines = ["FLuRKA claims up-training a trained model recovers quality in a fraction of the steps. Perplexity:"]
    if "base" in r and "eval_ppl" in r["base"]:
        lines.append(f"- base (full attention, 100% of the steps): {r['base']['eval_ppl']:.2f}")
    for name in sorted(n for n in r if "-up" in n):
        scratch = r.get(name.replace("-up", "-scratch"))
        if scratch and "eval_ppl" in r[name] and "eval_ppl" in scratch:
            a, b = r[name]["eval_ppl"], scratch["eval_ppl"]
            lines.append(f"- {name}: {a:.2f} vs from scratch {b:.2f} ({(a - b) / b * 100:+.1f}%)")
    return "\n".join(lines)


def time_budget_claim(rows: Rows) -> str:
    r = _by_name(rows)
    ref = r.get("full") or r.get("flash")
    if not ref or "eval_ppl" not in ref:
        return "No full-attention row: the claim cannot be checked."
    lines = [
        "FLuRKA v1 claims better perplexity than full attention when pre-training on a fixed time budget. "
        f"Full attention reached {ref['eval_ppl']:.2f} in {ref.get('tokens_seen', 0):,.0f} tokens:"
    ]
    for name in sorted(n for n in r if n.startswith("flurka")):
        row = r[name]
        if "eval_ppl" in row:
            verdict = "supports" if row["eval_ppl"] < ref["eval_ppl"] else "contradicts"
            lines.append(
                f"- {name}: {row['eval_ppl']:.2f} in {row.get('tokens_seen', 0):,.0f} tokens ({verdict} the claim)"
            )
    return "\n".join(lines)


BASE_STEPS = {"smoke": 20, "mini": 1200, "full": 50000}


def uptrain_steps(row: str, scale: str) -> list[str]:
    """The base trains for the scale's steps; '-up10'/'-scratch10' rows for 10% of them, '25' rows for 25%."""
    steps = BASE_STEPS[scale]
    for frac in (10, 25):
        if row.endswith(f"up{frac}") or row.endswith(f"scratch{frac}"):
            steps = max(1, steps * frac // 100)
    return [f"trainer.max_steps={steps}", f"trainer.warmup_steps={max(1, steps // 20)}"]


SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false"]

TABLES: dict[str, TableSpec] = {
    "table-wikitext103": TableSpec(
        title="Language modelling: GPT with every causal variant (FLuRKA Table: Wikitext-103)",
        metrics=["eval_ppl", "eval_loss", "tokens_per_s"],
        dataset={"smoke": "WikiText-2 (test fixture cut)", "mini": "WikiText-2", "full": "WikiText-103"},
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            "mini": ["scale=mini", "task.seq_len=512", "trainer.max_steps=1200", "trainer.batch_size=32"],
            "full": ["scale=full", "task.corpus=wikitext-103"],
        },
        claims=flurka_vs_constituents("eval_ppl"),
    ),
    "table-scfa": TableSpec(
        title="SCFA: GPT at long context, hash-sparse and QK-drop vs exact attention",
        metrics=["eval_ppl", "tokens_per_s"],
        dataset={
            "smoke": "WikiText-2 (test fixture cut)",
            "mini": "WikiText-2 at 8k tokens",
            "full": "OpenWebText2 at 8k/16k",
        },
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            "mini": ["scale=mini", "task.seq_len=8192", "trainer.batch_size=4", "trainer.max_steps=600"],
            "full": ["scale=full", "task.seq_len=8192"],
        },
        claims=scfa_speed_and_quality,
    ),
    "table-uptrain": TableSpec(
        title="Up-training: a trained full-attention GPT swapped to FLuRKA / its kernel method vs from scratch",
        metrics=["eval_ppl", "tokens_per_s"],
        dataset={"smoke": "WikiText-2 (test fixture cut)", "mini": "WikiText-2", "full": "WikiText-103"},
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            "mini": ["scale=mini", "task.seq_len=512", "trainer.batch_size=32"],
            "full": ["scale=full", "task.corpus=wikitext-103"],
        },
        claims=uptrain_vs_scratch,
        row_overrides=uptrain_steps,
    ),
    "table-time-budget": TableSpec(
        title="Equal wall-clock budget at a long sequence length: perplexity reached (FLuRKA v1)",
        metrics=["eval_ppl", "tokens_seen", "tokens_per_s"],
        dataset={"smoke": "WikiText-2 (test fixture cut)", "mini": "WikiText-2", "full": "WikiText-103"},
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300", "trainer.max_steps=100000", "trainer.time_budget_s=2"],
            "mini": [
                "scale=mini",
                "task.seq_len=4096",
                "trainer.batch_size=8",
                "trainer.max_steps=100000",
                "trainer.time_budget_s=120",
            ],
            "full": ["scale=full", "task.corpus=wikitext-103", "task.seq_len=8192", "trainer.time_budget_s=36000"],
        },
        claims=time_budget_claim,
    ),
}
