"""Speed benchmarks (scripts, never tests): `python scripts/bench.py <suite> [options]`.

Suites: flash, scfa, lightning write results/speed/<suite>.json (rows in the DESIGN.md schema, with
provenance: commit, GPU, torch, triton, CUDA, command) and a PNG beside it. The FLuRKA figures write
results/flurka_speed/<figure>/ (results.json, results.csv, results.png, table.md): flurka (Fig. 3, fig3_seqlen),
flurka_ablation (Fig. 4, fig4_ablation), flurka_vs_flash (Fig. 5, fig5_vs_flash), flurka_rank (Fig. 1,
fig1_rank). distributed (issue 9) trains on 1 and 2 GPUs through torchrun (DDP, FSDP, a crash and resume) and
writes results/distributed/ (results.json, table.md). train (issue 15): training-step tokens/s, MFU and peak
memory per attention variant at the GPT-2 small shape, N = 1k … 16k, to results/speed/train.json (+ .png, .md).
Every suite rewrites its JSON after each measured point, marked `"complete": false` until the sweep ends, so a
run cut short keeps what it measured (issue 21). `--help` after the suite name lists its options (e.g.
`--quick`, `--dry-run`).
"""

from __future__ import annotations

import importlib
import sys

SUITES = (
    "flash",
    "scfa",
    "lightning",
    "flurka",
    "flurka_ablation",
    "flurka_vs_flash",
    "flurka_rank",
    "distributed",
    "train",
)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SUITES:
        raise SystemExit(f"usage: python scripts/bench.py {{{','.join(SUITES)}}} [options]")
    importlib.import_module(f"flurka.bench.{argv[0]}").main(argv[1:])
    if not any(a.startswith("--out") or a == "--dry-run" for a in argv):
        from flurka.results.index import write_index

        write_index()


if __name__ == "__main__":
    main(sys.argv[1:])
