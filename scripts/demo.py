"""`make demo`: train two small GPT language models side by side on the bundled Shakespeare — full attention
and FLuRKA-Performer — and print validation loss, bits per character, tokens/s and parameter count.

Any Hydra override applies to both runs: `python scripts/demo.py trainer.max_steps=100 scale=smoke`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from flurka.train.loop import train

CONF = str(Path(__file__).resolve().parents[1] / "conf")
VARIANTS = ("full", "flurka_performer")


def main(overrides: list[str]) -> list[dict]:
    console = Console()
    device = "GPU" if __import__("torch").cuda.is_available() else "CPU"
    console.print(f"[bold]flurka demo[/]: two byte-level GPTs on the bundled Shakespeare, on the {device}")
    summaries = []
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for variant in VARIANTS:
            # a fixed name per variant: the demo's folders are easy to find, and it always starts fresh
            name = f"name=shakespeare-gpt-{variant}"
            cfg = compose(
                "train", overrides=["scale=demo", "logger=none", "group=demo", f"attention={variant}", name, *overrides]
            )
            run_dir = Path(cfg.runs_root) / "demo" / cfg.name / f"seed{cfg.seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            summaries.append(train(cfg))
    table = Table(title=f"validation after {summaries[0]['steps']} steps ({summaries[0]['tokens_seen']:,} tokens)")
    for col in ("attention", "params", "val loss", "val bits/char", "tokens/s", "wall s"):
        table.add_column(col, justify="left" if col == "attention" else "right")
    for s in summaries:
        table.add_row(
            s["attention"],
            f"{s['params']:,}",
            f"{s['eval_loss']:.3f}",
            f"{s['eval_bpc']:.3f}",
            f"{s['tokens_per_s']:,.0f}",
            f"{s['wall_seconds']:.0f}",
        )
    console.print(table)
    console.print(f"run folders (config, metrics.jsonl, summary.json, checkpoints): {Path(cfg.runs_root) / 'demo'}/")
    return summaries


if __name__ == "__main__":
    main(sys.argv[1:])
