"""Claims call a variant better or worse only when the gap beats the noise; otherwise inconclusive, and why."""

from __future__ import annotations

import math
import statistics

import pytest

from flurka.results.claims import flurka_vs_constituents, scfa_speed_and_quality, time_budget_claim
from flurka.results.noise import STATED_FLOORS, compare, floors_at
from flurka.results.paper_tables import GLUE_COLUMNS, TABLES
from flurka.results.table_spec import pivot, table_notes, table_rows
from flurka.results.tables import aggregate


def _row(name: str, values: list[float], metric: str = "acc") -> dict:
    """An aggregated row of one value per seed (the same numbers aggregate() would produce)."""
    return aggregate([{"name": name, "seed": i, metric: v} for i, v in enumerate(values)], [metric])[0]


def test_a_gap_beyond_the_seed_spread_supports_or_contradicts():
    ours, ref = _row("a", [0.60, 0.61, 0.62]), _row("b", [0.50, 0.51, 0.52])
    spread = statistics.stdev([0.60, 0.61, 0.62]) + statistics.stdev([0.50, 0.51, 0.52])
    gap = compare(ours, ref, "acc", higher_is_better=True, floors={})
    assert gap.verdict() == "supported" and f"{spread:.3g}" in gap.reason and "3 seeds" in gap.reason
    assert compare(ref, ours, "acc", higher_is_better=True, floors={}).verdict() == "contradicted"
    assert compare(ours, ref, "acc", higher_is_better=False, floors={}).verdict() == "contradicted"


def test_a_gap_within_the_seed_spread_is_inconclusive():
    ours, ref = _row("a", [0.50, 0.60, 0.70]), _row("b", [0.45, 0.55, 0.65])  # gap 0.05 < 0.1 + 0.1
    gap = compare(ours, ref, "acc", higher_is_better=True, floors={})
    assert gap.verdict() == "inconclusive" and "within the seed spread" in gap.reason


def test_one_seed_needs_a_stated_noise_floor():
    ours, ref = _row("a", [102.0], "eval_ppl"), _row("b", [100.0], "eval_ppl")
    gap = compare(ours, ref, "eval_ppl", higher_is_better=False, floors={})
    assert gap.verdict() == "inconclusive" and "one seed and no stated noise floor" in gap.reason
    floor = STATED_FLOORS["eval_ppl"].of(100.0)
    assert 2.0 <= floor  # 2% is within the stated floor for perplexity ...
    assert compare(ours, ref, "eval_ppl", higher_is_better=False, floors=floors_at("mini")).verdict() == "inconclusive"
    far = _row("a", [100.0 + 2 * floor], "eval_ppl")  # ... twice the floor is not
    gap = compare(far, ref, "eval_ppl", higher_is_better=False, floors=floors_at("mini"))
    assert gap.verdict() == "contradicted" and "stated noise floor" in gap.reason
    assert floors_at("smoke") == {}


def test_smoke_glue_rows_that_only_differ_by_noise_claim_nothing():
    """The newcomer's smoke GLUE table: CoLA 0 and SST-2 50 for every variant, only STS-B moves."""
    spec, summaries = TABLES["table-glue"], []
    for i, variant in enumerate(("performer", "flurka_performer", "linear", "flurka_rnn", "eva", "flurka_eva")):
        for task, metric, value in (("cola", "eval_matthews", 0.0), ("sst2", "eval_accuracy", 0.5),
                                    ("mrpc", "eval_f1", 0.6), ("rte", "eval_accuracy", 0.5),
                                    ("stsb", "eval_spearman", 0.05 * i - 0.1)):  # fmt: skip
            summaries.append({"name": f"{task}-{variant}", "seed": 0, metric: value, "steps": 10})
    rows, _ = table_rows(spec, summaries)
    text = table_notes(spec, summaries, rows, "smoke")
    verdicts = [line for line in text.splitlines() if line.startswith("- flurka_")]
    assert len(verdicts) == 3 and all("inconclusive" in v and "one seed" in v for v in verdicts), verdicts
    assert "better" not in text and "worse" not in text


def test_claims_report_each_comparison_with_its_verdict_and_reason():
    rows = [_row("performer", [0.50, 0.51]), _row("flurka_performer", [0.60, 0.61]),
            _row("linear", [0.40, 0.41]), _row("flurka_rnn", [0.40, 0.42])]  # fmt: skip
    text = flurka_vs_constituents("acc", lower_is_better=False)(rows, {})
    assert "flurka_performer 0.605 vs performer 0.505 (+19.8%): supported; the gap +0.1 exceeds" in text
    assert "flurka_rnn 0.410 vs linear 0.405 (+1.2%): inconclusive; the gap +0.005 is within" in text


def test_speed_and_time_budget_claims_use_the_same_rule():
    flash = {**_row("flash", [1000.0, 1010.0], "tokens_per_s"), "eval_ppl": 50.0, "eval_ppl_std": 1.0}
    hash_ = {**_row("scfa_hash", [2000.0, 2020.0], "tokens_per_s"), "eval_ppl": 50.5, "eval_ppl_std": 1.0}
    text = scfa_speed_and_quality()([flash, hash_], {})
    assert "2.00x tokens/s, faster: supported" in text and "no loss: inconclusive" in text
    full = {"name": "full", "n_seeds": 1, "eval_ppl": 40.0}
    flurka = {"name": "flurka_rnn", "n_seeds": 1, "eval_ppl": 30.0}
    assert "flurka_rnn: 30.00 in 0 tokens: supported" in time_budget_claim([full, flurka], floors_at("mini"))
    assert "inconclusive" in time_budget_claim([full, flurka], floors_at("smoke"))


def test_a_pivoted_average_carries_a_spread_estimated_from_its_columns():
    rows = [{"name": f"{t}-full", "n_seeds": 3, m: 0.5, f"{m}_std": s}
            for t, m, s in (("cola", "eval_matthews", 0.03), ("stsb", "eval_spearman", 0.04))]  # fmt: skip
    (line,) = pivot(rows, GLUE_COLUMNS)
    assert line["avg_spread"] == pytest.approx(math.hypot(3.0, 4.0) / 2)  # percent points, two columns


def test_glue_claims_compare_both_constituents_on_fine_tuning_and_on_pre_training():
    """Each FLuRKA variant against its kernel method and Linformer, on the GLUE average and on the masked-LM
    perplexity of the encoder it was fine-tuned from (lower is better there); chance levels in the notes."""
    spec, summaries = TABLES["table-glue"], []
    ppl = {"linear": 300.0, "linformer": 340.0, "flurka_rnn": 100.0}
    for variant, score in (("linear", 0.6), ("linformer", 0.7), ("flurka_rnn", 0.65)):
        for seed, jitter in ((0, 0.0), (1, 0.002)):
            summaries.append({"name": f"pretrain-{variant}", "seed": seed, "eval_ppl": ppl[variant] + jitter})
            summaries.append({"name": f"rte-{variant}", "seed": seed, "eval_accuracy": score + jitter,
                              "eval_majority_accuracy": 0.527})  # fmt: skip
    rows, _ = table_rows(spec, summaries)
    text = table_notes(spec, summaries, rows, "mini")
    fine, _, pre = text.partition("Measured masked-LM perplexity of the pre-trained encoders (lower is better):")
    assert "flurka_rnn 65.100 vs linear 60.100" in fine and "supported" in fine.split("vs linear")[1].split("\n")[0]
    assert "flurka_rnn 65.100 vs linformer 70.100" in fine and "contradicted" in fine.split("vs linformer")[1]
    assert "flurka_rnn 100.001 vs linear 300.001 (-66.7%): supported" in pre
    assert "flurka_rnn 100.001 vs linformer 340.001 (-70.6%): supported" in pre
    assert "Chance level (always predicting the commonest training label, scored like the runs): RTE (acc) 52.7" in text


def test_a_table_without_task_columns_gives_its_metrics_chance_level_too():
    from flurka.results.table_spec import chance_levels

    spec = TABLES["table-imagenet"]
    summaries = [{"name": v, "seed": 0, "eval_accuracy": a, "eval_majority_accuracy": 0.1135, "tokens_per_s": 1e5}
                 for v, a in (("full", 0.97), ("linear", 0.95))]  # fmt: skip
    assert chance_levels(spec, summaries) == {"eval_accuracy": 0.1135}  # speed has no chance level
    rows, _ = table_rows(spec, summaries)
    assert (
        "Chance level (always predicting the commonest training label, scored like the runs): eval_accuracy 0.114"
        in (table_notes(spec, summaries, rows, "mini"))
    )
