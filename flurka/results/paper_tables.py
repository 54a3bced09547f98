"""What each paper table is: its rows (conf/experiment/<table>/*.yaml), metrics, per-scale settings, the
papers' numbers where PAPERS.md gives them, and the claim our numbers are checked against.

What a table is made of is in `table_spec.py`; the paragraph under each table comes from `claims.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flurka.results.claims import (
    LRA_PAPER,
    flurka_vs_constituents,
    glue_claims,
    lra_claims,
    scfa_speed_and_quality,
    time_budget_claim,
    uptrain_vs_scratch,
)
from flurka.results.table_spec import Column, TableSpec, split_row

GLUE_MINI = ("cola", "sst2", "mrpc", "rte", "stsb")  # the tasks with data here; full adds qqp, qnli, mnli, wnli
GLUE_COLUMNS = [
    Column("cola", "eval_matthews", "CoLA (MCC)"),
    Column("sst2", "eval_accuracy", "SST-2 (acc)"),
    Column("mrpc", "eval_f1", "MRPC (F1)"),
    Column("rte", "eval_accuracy", "RTE (acc)"),
    Column("stsb", "eval_spearman", "STS-B (Spearman)"),
    Column("qqp", "eval_f1", "QQP (F1)"),
    Column("qnli", "eval_accuracy", "QNLI (acc)"),
    Column("mnli", "eval_accuracy", "MNLI-m (acc)"),
    Column("mnli", "eval_accuracy_mm", "MNLI-mm (acc)"),
    Column("wnli", "eval_accuracy", "WNLI (acc)"),
    Column("pretrain", "eval_ppl", "MLM ppl (pre-training)", percent=False, in_avg=False),
]
LRA_COLUMNS = [
    Column("listops", "test_accuracy", "ListOps"),  # test accuracy of the final model, as LRA reports
    Column("lra_text", "test_accuracy", "Text"),
    Column("lra_retrieval", "test_accuracy", "Retrieval"),
    Column("lra_image", "test_accuracy", "Image"),
    Column("pathfinder", "test_accuracy", "Pathfinder"),
    Column("mnist_seq", "test_accuracy", "sMNIST (for Image)"),
]
WMT_COLUMNS = [
    Column("multi30k_en_de", "test_bleu", "Multi30k en-de (BLEU)", percent=False),  # test_2016_flickr
    Column("multi30k_en_fr", "test_bleu", "Multi30k en-fr (BLEU)", percent=False),
    Column("wmt14_en_de", "test_bleu", "WMT14 en-de (BLEU)", percent=False),  # newstest2014
    Column("wmt14_en_fr", "test_bleu", "WMT14 en-fr (BLEU)", percent=False),
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


# mini: the base sees 9.8M tokens (as table-wikitext103's rows do); its 20 up/scratch rows add 4.5 base runs
BASE_STEPS = {"smoke": 20, "mini": 600, "full": 50000}


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
        dataset={"smoke": "WikiText-2", "mini": "WikiText-2", "full": "WikiText-103"},
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            # 600 steps × 32 × 512 = 9.8M tokens (~5 epochs of WikiText-2): 8 rows × 2 seeds fit one 10-minute
            # device call on an H200 (results I); table.md states the steps, tokens and seeds actually run
            "mini": ["scale=mini", "task.seq_len=512", "trainer.max_steps=600", "trainer.batch_size=32"],
            "full": ["scale=full", "task.corpus=wikitext-103"],
        },
        claims=flurka_vs_constituents("eval_ppl"),
    ),
    "table-scfa": TableSpec(
        title="SCFA: GPT at long context, hash-sparse and QK-drop vs exact attention",
        metrics=["eval_ppl", "tokens_per_s"],
        dataset={
            "smoke": "WikiText-2",
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
        dataset={"smoke": "MNIST 8×8", "mini": "MNIST, 784 pixels", "full": "MNIST, 784 pixels"},
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
            "smoke": "tiny-shakespeare",
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
        dataset={"smoke": "WikiText-2", "mini": "WikiText-2", "full": "WikiText-103"},
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
        dataset={"smoke": "WikiText-2", "mini": "WikiText-2", "full": "WikiText-103"},
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300", "trainer.max_steps=100000", "trainer.time_budget_s=2"],
            "mini": [
                "scale=mini",
                "task.seq_len=4096",
                "trainer.batch_size=8",
                "trainer.max_steps=100000",
                "trainer.time_budget_s=60",  # 5 rows × (60 s + evaluation) fit one device call with a seed
            ],
            "full": ["scale=full", "task.corpus=wikitext-103", "task.seq_len=8192", "trainer.time_budget_s=36000"],
        },
        claims=time_budget_claim,
    ),
    "table-glue": TableSpec(
        title="GLUE: BERT pre-trained (masked LM) with each variant, then fine-tuned (FLuRKA Table: GLUE)",
        metrics=sorted({c.metric for c in GLUE_COLUMNS}),  # the summary keys the columns read
        dataset={
            "smoke": "WikiText-2 + GLUE",
            "mini": "pre-training: WikiText-2; fine-tuning: CoLA, SST-2, MRPC, RTE, STS-B (GLUE dev sets)",
            "full": "pre-training: WikiText-103; fine-tuning: the nine GLUE tasks (dev sets)",
        },
        overrides={
            "smoke": [*SMOKE, "task.vocab_size=300"],
            "mini": ["scale=mini", "task.seq_len=128", "trainer.eval_every=0"],
            "full": ["scale=full", "task.seq_len=128", "model=bert_base"],
        },
        claims=glue_claims,
        row_overrides=task_row_overrides,
        columns=GLUE_COLUMNS,
        row_filter=rows_at_scale("table-glue"),
    ),
    "table-lra": TableSpec(
        title="Long Range Arena: encoder classifiers with each variant (FlashAttention Table 3 / FLuRKA: LRA)",
        metrics=["test_accuracy", "eval_accuracy"],
        dataset={
            "smoke": "ListOps (generated, tiny) + sequential MNIST 14×14",
            "mini": "ListOps regenerated with LRA's procedure (20k train) + sequential MNIST (784 pixels) in place "
            "of CIFAR-10 Image",
            "full": "the five LRA tasks",
        },
        overrides={
            "smoke": [*SMOKE, "trainer.test_at_end=true"],
            "mini": [
                "scale=mini",
                "model.n_layers=4",
                "trainer.eval_every=0",
                "trainer.test_at_end=true",
            ],
            "full": ["scale=full", "trainer.test_at_end=true"],
        },
        paper={k: {m: v[m] for m in ("ListOps", "Image", "Avg")} for k, v in LRA_PAPER.items()},
        claims=lra_claims,
        row_overrides=task_row_overrides,
        columns=LRA_COLUMNS,
        row_filter=rows_at_scale("table-lra"),
    ),
    "table-wmt": TableSpec(
        title="Translation: encoder-decoder with each variant in the encoder (FLuRKA Table: WMT)",
        metrics=["test_bleu", "eval_bleu"],
        dataset={
            "smoke": "Multi30k en-de / en-fr",
            "mini": "Multi30k en-de and en-fr; BLEU of beam search on test_2016_flickr",
            "full": "WMT14 en-de, en-fr (newstest2014)",
        },
        overrides={
            "smoke": [*SMOKE, "trainer.test_at_end=true"],
            "mini": [
                "scale=mini",
                "model.n_layers=3",
                "model.d_model=256",
                "model.n_heads=4",
                "trainer.eval_every=0",
                "trainer.test_at_end=true",
            ],
            "full": ["scale=full", "model=seq2seq_base", "trainer.test_at_end=true"],
        },
        claims=flurka_vs_constituents("avg", lower_is_better=False),
        row_overrides=task_row_overrides,
        columns=WMT_COLUMNS,
        row_filter=rows_at_scale("table-wmt"),
    ),
    "table-imagenet": TableSpec(
        title="Image classification: ViT with each variant (FLuRKA Table: ImageNet)",
        metrics=["eval_accuracy", "tokens_per_s"],
        dataset={"smoke": "MNIST", "mini": "MNIST", "full": "ImageNet-1k"},
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


def find_table(group: str) -> tuple[str, str] | None:
    """`table-glue-mini` -> ("table-glue", "mini"), `table-glue` -> ("table-glue", "mini"); None for other groups."""
    for name in sorted(TABLES, key=len, reverse=True):  # table-scfa-mnist before table-scfa
        if group == name:
            return name, "mini"
        for scale in ("smoke", "mini", "full"):
            if group == f"{name}-{scale}":
                return name, scale
    return None


EXPERIMENTS = Path(__file__).resolve().parents[2] / "conf" / "experiment"


def starts_others(row: str) -> bool:
    """Rows that others start from (up-training's base, GLUE's pre-training runs): they run first."""
    return row == "base" or row.startswith("pretrain-")


def dependencies_first(rows: list[str]) -> list[str]:
    """A row's checkpoint exists before the rows that load it (stable: the order is kept within each group)."""
    return sorted(rows, key=lambda r: not starts_others(r))


def rows_of(table: str, scale: str | None = None) -> list[str]:
    """The table's rows (at `scale`, where the table runs different tasks per scale), dependencies first."""
    rows = sorted(p.stem for p in (EXPERIMENTS / table).glob("*.yaml"))
    return dependencies_first([r for r in rows if scale is None or TABLES[table].runs_at(r, scale)])


def table_out(table: str, scale: str, runs_root: str | Path) -> Path:
    """Where a table is written: results/<table> holds the committed mini results; smoke and full tables never
    write there (runs/<table>-<scale>-table)."""
    return Path("results") / table if scale == "mini" else Path(runs_root) / f"{table}-{scale}-table"
