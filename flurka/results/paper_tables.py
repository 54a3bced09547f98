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
class Column:
    """One task column of a task × variant table. Rows of such a table are named `<task>-<variant>`; the
    table shows one line per variant and one column per task: `metric` of the `<task>-*` rows."""

    task: str  # the row-name prefix (conf/experiment/<table>/<task>-<variant>.yaml)
    metric: str  # the summary key, e.g. eval_matthews
    label: str  # the column header, e.g. "CoLA (MCC)"
    percent: bool = True  # ×100, as the papers print accuracies and correlations
    in_avg: bool = True  # counts toward the "avg" column


@dataclass(frozen=True)
class TableSpec:
    title: str
    metrics: list[str]
    dataset: dict[str, str]  # scale -> what data the run actually used
    overrides: dict[str, list[str]] = field(default_factory=dict)  # scale -> Hydra overrides for every row
    paper: dict[str, dict[str, float]] | None = None
    claims: Callable[[Rows], str] | None = None
    row_overrides: Callable[[str, str], list[str]] | None = None  # (row, scale) -> overrides for that row
    columns: list[Column] | None = None  # a task × variant table (metrics then lists the summary keys read)
    row_filter: Callable[[str, str], bool] | None = None  # (row, scale) -> does the row run at this scale

    def shown_metrics(self, rows: Rows) -> list[str]:
        """The table's columns: the metrics, or the task columns that have numbers and their average."""
        if not self.columns:
            return self.metrics
        return [c.label for c in self.columns if any(c.label in r for r in rows)] + ["avg"]

    def rows(self, aggregated: Rows) -> Rows:
        """Aggregated run rows -> the table's rows (pivoted to one line per variant for task × variant tables)."""
        return pivot(aggregated, self.columns) if self.columns else aggregated


def table_rows(spec: TableSpec, summaries: Rows) -> tuple[Rows, list[str]]:
    """Run summaries -> (the table's rows, the columns to show): aggregated over seeds, pivoted if the table is
    task × variant. Both scripts that build tables (run_table.py, make_table.py) go through here."""
    from flurka.results.tables import aggregate

    rows = spec.rows(aggregate(summaries, spec.metrics))
    return rows, spec.shown_metrics(rows)


def table_notes(spec: TableSpec, summaries: Rows, rows: Rows, scale: str) -> str:
    """The paragraphs under a table: scale, data actually used, seeds, run sizes, and the claim check."""
    seeds = sorted({s.get("seed", 0) for s in summaries})
    notes = [f"Scale: {scale}; data: {spec.dataset.get(scale, '?')}; seeds: {seeds}."]
    notes.append(run_sizes(summaries, by_task=spec.columns is not None))
    if spec.claims:
        notes.append(spec.claims(rows))
    return "\n\n".join(notes)


def find_table(group: str) -> tuple[str, str] | None:
    """`table-glue-mini` -> ("table-glue", "mini"), `table-glue` -> ("table-glue", "mini"); None for other groups."""
    for name in sorted(TABLES, key=len, reverse=True):  # table-scfa-mnist before table-scfa
        if group == name:
            return name, "mini"
        for scale in ("smoke", "mini", "full"):
            if group == f"{name}-{scale}":
                return name, scale
    return None


def run_sizes(summaries: Rows, by_task: bool = False) -> str:
    """What the runs did: steps, training tokens and sequence length — once if every run did the same, else per
    row (per task prefix in a task × variant table)."""
    sizes: dict[str, tuple] = {}
    for s in summaries:
        key = split_row(s["name"])[0] if by_task else s["name"]
        sizes.setdefault(key, (s.get("steps"), s.get("tokens_seen") or 0, s.get("seq_len")))

    def fmt(size: tuple) -> str:
        return f"{size[0]} steps, {size[1]:,} training tokens, sequence length {size[2]}"

    if len(set(sizes.values())) == 1:
        return f"Per run: {fmt(next(iter(sizes.values())))}."
    return "Per run: " + "; ".join(f"{key}: {fmt(size)}" for key, size in sizes.items()) + "."


def split_row(name: str) -> tuple[str, str]:
    """`mrpc-flurka_rnn` -> ("mrpc", "flurka_rnn"). Task and variant names never contain '-'."""
    task, sep, variant = name.partition("-")
    if not sep:
        raise ValueError(f"row {name!r} of a task × variant table must be named <task>-<variant>")
    return task, variant


def pivot(rows: Rows, columns: list[Column]) -> Rows:
    """One row per variant: each task's metric (mean, and std over seeds) under its column label, and `avg`
    over the `in_avg` columns when the variant has all of them. Rows of tasks with no column are dropped."""
    by_task = {c.task: c for c in columns}
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        task, variant = split_row(row["name"])
        col = by_task.get(task)
        if col is None:
            continue
        line = out.setdefault(variant, {"name": variant, "attention": variant, "n_seeds": row["n_seeds"]})
        line["n_seeds"] = min(line["n_seeds"], row["n_seeds"])
        if col.metric in row:
            factor = 100.0 if col.percent else 1.0
            line[col.label] = row[col.metric] * factor
            line[f"{col.label}_std"] = row.get(f"{col.metric}_std", 0.0) * factor
    ran = {label for line in out.values() for label in line}  # tasks not run at this scale are not averaged
    averaged = [c.label for c in columns if c.in_avg and c.label in ran]
    for line in out.values():
        if averaged and all(label in line for label in averaged):
            line["avg"] = sum(line[label] for label in averaged) / len(averaged)
    return list(out.values())


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
                verdict = "equal" if a == b else "better" if (a < b) == lower_is_better else "worse"
                lines.append(f"- {flurka} {a:.3f} vs {kernel} {b:.3f}: {rel:+.1f}% ({verdict})")
        if "full" in r and metric in r["full"]:
            lines.append(f"- full attention: {r['full'][metric]:.3f}")
        return "\n".join(lines)

    return check


def scfa_speed_and_quality(metric: str = "eval_ppl", label: str = "perplexity") -> Callable[[Rows], str]:
    """SCFA's claim: faster training than exact (flash) attention at no loss in quality (`metric`, lower = better)."""

    def check(rows: Rows) -> str:
        r = _by_name(rows)
        base = r.get("flash")
        if not base or not base.get("tokens_per_s"):
            return "No flash baseline row: speedups cannot be computed."
        lines = [f"SCFA claims 2.0x (8k) / 3.3x (16k) faster LM training with no {label} loss. Measured vs flash:"]
        for name, row in r.items():
            if name == "flash" or not row.get("tokens_per_s"):
                continue
            speed = row["tokens_per_s"] / base["tokens_per_s"]
            value, ref = row.get(metric, float("nan")), base.get(metric, float("nan"))
            lines.append(f"- {name}: {speed:.2f}x tokens/s, {label} {value:.3f} ({value - ref:+.3f})")
        return "\n".join(lines)

    return check


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


def lra_claims(rows: Rows) -> str:
    """FLuRKA ≈ its constituents on the LRA average; exact attention (full, flash) agree; ours beside the paper's."""
    lines = [flurka_vs_constituents("avg", lower_is_better=False)(rows)]
    r = _by_name(rows)
    if "full" in r and "flash" in r and "avg" in r["full"] and "avg" in r["flash"]:
        lines.append(
            f"- full {r['full']['avg']:.1f} vs flash {r['flash']['avg']:.1f}: the same function (exact attention); "
            "a gap is optimisation noise, not the kernel."
        )
    for name, paper in LRA_PAPER.items():
        ours = r.get(name, {}).get("ListOps")
        if ours is not None:
            lines.append(f"- ListOps, {name}: ours {ours:.1f} vs FlashAttention paper {paper['ListOps']:.1f}")
    return "\n".join(lines)


# FlashAttention paper, Table 3 (PAPERS.md §3); our mini table uses sequential MNIST in place of Image (CIFAR-10)
LRA_PAPER = {
    "full": {"ListOps": 36.0, "Text": 63.6, "Retrieval": 81.6, "Image": 42.3, "Pathfinder": 72.7, "Avg": 59.3},
    "flash": {"ListOps": 37.6, "Text": 63.9, "Retrieval": 81.4, "Image": 43.5, "Pathfinder": 72.7, "Avg": 59.8},
    "linformer": {"ListOps": 35.6, "Text": 55.9, "Retrieval": 77.7, "Image": 37.8, "Pathfinder": 67.6, "Avg": 54.9},
    "linear": {"ListOps": 38.8, "Text": 63.2, "Retrieval": 80.7, "Image": 42.6, "Pathfinder": 72.5, "Avg": 59.6},
    "performer": {"ListOps": 36.8, "Text": 63.6, "Retrieval": 82.2, "Image": 42.1, "Pathfinder": 69.9, "Avg": 58.9},
}

ENCODER_VARIANTS = ("full", "linformer", "performer", "linear", "eva", "flurka_performer", "flurka_rnn", "flurka_eva")
GLUE_MINI = ("cola", "sst2", "mrpc", "rte", "stsb")  # the tasks with data here; full adds qqp, qnli, mnli, wnli
GLUE_COLUMNS = [
    Column("cola", "eval_matthews", "CoLA (MCC)"),
    Column("sst2", "eval_accuracy", "SST-2 (acc)"),
    Column("mrpc", "eval_f1", "MRPC (F1)"),
    Column("rte", "eval_accuracy", "RTE (acc)"),
    Column("stsb", "eval_spearman", "STS-B (Spearman)"),
    Column("qqp", "eval_f1", "QQP (F1)"),
    Column("qnli", "eval_accuracy", "QNLI (acc)"),
    Column("mnli", "eval_accuracy", "MNLI (acc)"),
    Column("wnli", "eval_accuracy", "WNLI (acc)"),
    Column("pretrain", "eval_ppl", "MLM ppl (pre-training)", percent=False, in_avg=False),
]
LRA_COLUMNS = [
    Column("listops", "eval_accuracy", "ListOps"),
    Column("lra_text", "eval_accuracy", "Text"),
    Column("lra_retrieval", "eval_accuracy", "Retrieval"),
    Column("lra_image", "eval_accuracy", "Image"),
    Column("pathfinder", "eval_accuracy", "Pathfinder"),
    Column("mnist_seq", "eval_accuracy", "sMNIST (for Image)"),
]
WMT_COLUMNS = [
    Column("multi30k_en_de", "eval_bleu", "Multi30k en-de (BLEU)", percent=False),
    Column("multi30k_en_fr", "eval_bleu", "Multi30k en-fr (BLEU)", percent=False),
    Column("wmt14_en_de", "eval_bleu", "WMT14 en-de (BLEU)", percent=False),
    Column("wmt14_en_fr", "eval_bleu", "WMT14 en-fr (BLEU)", percent=False),
]
FULL_ONLY = {
    "table-glue": ("qqp", "qnli", "mnli", "wnli"),
    "table-lra": ("lra_text", "lra_retrieval", "lra_image", "pathfinder"),
    "table-wmt": ("wmt14_en_de", "wmt14_en_fr"),
}
MINI_ONLY = {"table-lra": ("mnist_seq",), "table-wmt": ("multi30k_en_de", "multi30k_en_fr")}


def rows_at_scale(table: str) -> Callable[[str, str], bool]:
    """Smoke and mini run the tasks with data here; full runs the papers' tasks (and drops the stand-ins)."""

    def keep(row: str, scale: str) -> bool:
        task = split_row(row)[0]
        if scale == "full":
            return task not in MINI_ONLY.get(table, ())
        return task not in FULL_ONLY.get(table, ())

    return keep


# Per task and scale: what a row of a task × variant table adds (steps, lengths, sizes). Numbers for mini are
# sized for about 15 minutes per table on one H100.
TASK_SCALE_OVERRIDES: dict[str, dict[str, list[str]]] = {
    "pretrain": {
        "smoke": ["trainer.max_steps=20"],
        "mini": ["trainer.max_steps=1500", "trainer.batch_size=64", "trainer.lr=5e-4"],
        "full": ["task.corpus=wikitext-103", "trainer.max_steps=100000"],
    },
    **{
        glue: {
            "smoke": ["trainer.max_steps=10", "trainer.lr=1e-3"],
            "mini": ["trainer.max_steps=300", "trainer.batch_size=32", "trainer.lr=1e-4", "trainer.warmup_steps=30"],
            "full": ["task.tokenizer_corpus=wikitext-103", "trainer.max_steps=5000", "trainer.lr=2e-5"],
        }
        for glue in (*GLUE_MINI, *FULL_ONLY["table-glue"])
    },
    "listops": {
        "smoke": [
            "task.seq_len=64",
            "task.num_train=64",
            "task.num_valid=16",
            "task.num_test=16",
            "task.min_length=10",
            "task.max_length=60",
        ],
        "mini": [
            "task.seq_len=2000",
            "task.num_train=20000",
            "trainer.max_steps=1000",
            "trainer.batch_size=32",
            "trainer.lr=5e-4",
        ],
        "full": ["task.seq_len=2000", "trainer.max_steps=5000", "trainer.batch_size=32"],
    },
    "mnist_seq": {
        "smoke": ["task.seq_len=196"],  # 14×14 pixels keeps the CPU run short; mini runs all 784
        "mini": ["task.seq_len=784", "trainer.max_steps=1000", "trainer.batch_size=64", "trainer.lr=5e-4"],
    },
    # LRA's lengths: text 4k bytes, retrieval 2 × 4k bytes, image 32×32 pixels, pathfinder 32×32
    **{
        lra: {"full": [f"task.seq_len={n}", "trainer.max_steps=5000", "trainer.batch_size=32"]}
        for lra, n in (("lra_text", 4000), ("lra_retrieval", 8000), ("lra_image", 1024), ("pathfinder", 1024))
    },
    **{
        pair: {
            "smoke": ["task.vocab_size=200", "task.bleu_examples=4", "task.beam_size=2"],
            "mini": [
                "task.seq_len=64",
                "task.vocab_size=8000",
                "trainer.max_steps=2000",
                "trainer.batch_size=64",
                "trainer.lr=1e-3",
                "task.bleu_examples=500",
            ],
        }
        for pair in MINI_ONLY["table-wmt"]
    },
    **{
        pair: {"full": ["task.seq_len=256", "task.vocab_size=32000", "trainer.max_steps=100000"]}
        for pair in FULL_ONLY["table-wmt"]
    },
}


def task_row_overrides(row: str, scale: str) -> list[str]:
    return TASK_SCALE_OVERRIDES.get(split_row(row)[0], {}).get(scale, [])


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
            "full": "OpenWebText2 at 8k (16k: task.seq_len=16384)",
        },
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            "mini": ["scale=mini", "task.seq_len=8192", "trainer.batch_size=4", "trainer.max_steps=600"],
            # SCFA's LM setting (PAPERS.md §2); OpenWebText2 needs GPT-2's tokenizer files: append
            # task.tokenizer_path=<folder>; for the 16k rows append task.seq_len=16384
            "full": [
                "scale=full",
                "task=openwebtext2",
                "task.seq_len=8192",
                "trainer.max_steps=15000",
                "trainer.lr=1e-3",
            ],
        },
        claims=scfa_speed_and_quality(),
    ),
    "table-scfa-mnist": TableSpec(
        title="SCFA: autoregressive MNIST (784 pixels), hash-sparse and QK-drop vs exact attention, bits/dim",
        metrics=["eval_bpd", "tokens_per_s"],
        dataset={"smoke": "MNIST 8×8 (test fixture cut)", "mini": "MNIST, 784 pixels", "full": "MNIST, 784 pixels"},
        overrides={
            "smoke": [*SMOKE, "task.seq_len=64"],
            "mini": ["scale=mini", "task.seq_len=784", "trainer.batch_size=32", "trainer.max_steps=1500"],
            "full": ["scale=full", "task.seq_len=784", "trainer.max_steps=20000"],
        },
        claims=scfa_speed_and_quality("eval_bpd", "bits/dim"),
    ),
    "table-scfa-shakespeare": TableSpec(
        title="SCFA: character-level LM at 8k bytes (mini: tiny-shakespeare; full: enwik8), bits/char",
        metrics=["eval_bpc", "tokens_per_s"],
        dataset={
            "smoke": "tiny-shakespeare (test fixture cut)",
            "mini": "tiny-shakespeare, 8k bytes per sequence",
            "full": "enwik8 (bytes), 8k per sequence",
        },
        overrides={
            "smoke": [*SMOKE],
            "mini": ["scale=mini", "task.seq_len=8192", "trainer.batch_size=4", "trainer.max_steps=600"],
            "full": ["scale=full", "task=enwik8", "task.seq_len=8192"],
        },
        claims=scfa_speed_and_quality("eval_bpc", "bits/char"),
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
    "table-glue": TableSpec(
        title="GLUE: BERT pre-trained (masked LM) with each variant, then fine-tuned (FLuRKA Table: GLUE)",
        metrics=sorted({c.metric for c in GLUE_COLUMNS}),
        dataset={
            "smoke": "WikiText-2 + GLUE (test fixture cuts)",
            "mini": "pre-training: WikiText-2; fine-tuning: CoLA, SST-2, MRPC, RTE, STS-B (GLUE dev sets)",
            "full": "pre-training: WikiText-103; fine-tuning: the nine GLUE tasks (dev sets)",
        },
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            "mini": ["scale=mini", "task.seq_len=128", "trainer.eval_every=0"],
            "full": ["scale=full", "task.seq_len=128", "model=bert_base"],
        },
        claims=flurka_vs_constituents("avg", lower_is_better=False),
        row_overrides=task_row_overrides,
        columns=GLUE_COLUMNS,
        row_filter=rows_at_scale("table-glue"),
    ),
    "table-lra": TableSpec(
        title="Long Range Arena: encoder classifiers with each variant (FlashAttention Table 3 / FLuRKA: LRA)",
        metrics=["eval_accuracy"],
        dataset={
            "smoke": "ListOps (generated, tiny) + sequential MNIST 14×14 (test fixture)",
            "mini": "ListOps regenerated with LRA's procedure (20k train) + sequential MNIST (784 pixels) in place "
            "of CIFAR-10 Image",
            "full": "the five LRA tasks",
        },
        overrides={
            "smoke": [*SMOKE],
            "mini": ["scale=mini", "model.n_layers=4", "trainer.eval_every=0", "trainer.eval_batches=64"],
            "full": ["scale=full"],
        },
        paper={k: {m: v[m] for m in ("ListOps", "Image", "Avg")} for k, v in LRA_PAPER.items()},
        claims=lra_claims,
        row_overrides=task_row_overrides,
        columns=LRA_COLUMNS,
        row_filter=rows_at_scale("table-lra"),
    ),
    "table-wmt": TableSpec(
        title="Translation: encoder-decoder with each variant in the encoder (FLuRKA Table: WMT)",
        metrics=["eval_bleu"],
        dataset={
            "smoke": "Multi30k en-de / en-fr (test fixture cut)",
            "mini": "Multi30k en-de and en-fr; BLEU of beam search on the validation split",
            "full": "WMT14 en-de, en-fr (newstest2014)",
        },
        overrides={
            "smoke": [*SMOKE],
            "mini": ["scale=mini", "model.n_layers=3", "model.d_model=256", "model.n_heads=4", "trainer.eval_every=0"],
            "full": ["scale=full", "model=seq2seq_base"],
        },
        claims=flurka_vs_constituents("avg", lower_is_better=False),
        row_overrides=task_row_overrides,
        columns=WMT_COLUMNS,
        row_filter=rows_at_scale("table-wmt"),
    ),
    "table-imagenet": TableSpec(
        title="Image classification: ViT with each variant (FLuRKA Table: ImageNet)",
        metrics=["eval_accuracy", "tokens_per_s"],
        dataset={"smoke": "MNIST (test fixture cut)", "mini": "MNIST", "full": "ImageNet-1k"},
        overrides={
            "smoke": [*SMOKE, "model.patch_size=7"],
            "mini": [
                "scale=mini",
                "model.patch_size=4",
                "trainer.max_steps=2000",
                "trainer.batch_size=128",
                "trainer.lr=5e-4",
                "trainer.eval_batches=80",
            ],
            "full": ["scale=full", "task=imagenet", "model=vit_base", "model.patch_size=16"],
        },
        claims=flurka_vs_constituents("eval_accuracy", lower_is_better=False),
    ),
}
