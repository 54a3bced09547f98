"""FLuRKA Fig. 5 (PAPERS.md §1): FLuRKA's speedup over FlashAttention across sequence lengths.

FlashAttention needs a head dim it supports, so this figure runs at d_h ∈ {64, 128} (not Fig. 3's 325): H = 8
heads, d_m = 512 and 1024, d_k = 256, which keeps every shape inside Claim 1 (N > d_k(H+2) = 2560 > d_m > d_k >
d_h). Two FlashAttention baselines: our Triton kernel (`flash`, backend auto) and PyTorch SDPA (`full`, which
picks its flash backend at these head dims in bf16). One attention layer, batch 1, bf16, non-causal, forward
and forward+backward, timed with `bench_ms`; rows that run out of memory are kept with status "oom".

    python scripts/bench.py flurka_vs_flash [--quick] [--out results/flurka_speed/fig5_vs_flash]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from flurka.bench.flops import FLOPS
from flurka.bench.flurka import HEADS, measure
from flurka.bench.flurka_ablation import layer_shape
from flurka.bench.report import (
    FLURKA,
    Claim,
    ResultsLog,
    claim_for,
    estimate_seconds,
    plt_agg,
    results_path,
    speedup_over,
    write_figure,
)
from flurka.bench.timing import bench_device

HEAD_DIMS = [64, 128]
D_K = 256
NS = [4096, 8192, 16384, 32768, 65536]
BASES = {"flash": "triton flash (ours)", "full": "SDPA"}
MODES = ("fwd", "fwd_bwd")


def annotate(rows: list[dict]) -> None:
    """Each FLuRKA row: speedup over our flash kernel and over SDPA at its (mode, N, H, d_m), and the FLOP ratio."""
    for r in rows:
        if r["variant"] in FLURKA:
            for base in BASES:
                r[f"speedup_vs_{base}"] = speedup_over(rows, r, base)
                r[f"flop_ratio_vs_{base}"] = speedup_over(rows, r, base, field="flops")


def plot(rows: list[dict], path: Path) -> None:
    plt = plt_agg()
    head_dims = sorted({r["D"] for r in rows})
    fig, axes = plt.subplots(len(head_dims), 2, figsize=(12, 4.2 * len(head_dims)), squeeze=False)
    for (i, dh), (j, mode) in itertools.product(enumerate(head_dims), enumerate(MODES)):
        ax = axes[i][j]
        for name, (base, style) in itertools.product(FLURKA, zip(BASES, ("-", "--"))):
            mine = [r for r in rows if r["variant"] == name and r["D"] == dh and r["mode"] == mode]
            pts = [(r["N"], r[f"speedup_vs_{base}"]) for r in mine if r.get(f"speedup_vs_{base}")]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", ms=3, label=f"{name} / {BASES[base]}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        what = "forward" if mode == "fwd" else "forward + backward"
        ax.set(yscale="log", xlabel="sequence length N", ylabel="speedup over FlashAttention",
               title=f"d_h={dh} (d_m={dh * rows[0]['H']}), {what}")  # fmt: skip
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"FLuRKA Fig. 5: speedup over FlashAttention (H={rows[0]['H'] if rows else '?'}, batch 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claims(rows: list[dict]) -> list[Claim]:
    return [
        claim_for("flash", rows, mode=mode, flop_field="flops", baseline=base, label=f"vs {BASES[base]}, {mode}")
        for mode, base in itertools.product(MODES, BASES)
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py flurka_vs_flash", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 sequence lengths")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: checks the script runs")
    p.add_argument("--d-k", type=int, default=D_K, help="FLuRKA's downsampling length")
    p.add_argument("--out", type=Path, default=Path("results/flurka_speed/fig5_vs_flash"),
                   help="folder (or results JSON path) for results.json, .csv, .png and table.md")  # fmt: skip
    args = p.parse_args(argv)
    device = bench_device(args.dry_run)
    if args.dry_run:
        heads, head_dims, d_k, ns = 2, [8, 16], 8, [32, 64]
    else:
        heads, head_dims, d_k = HEADS, HEAD_DIMS, args.d_k
        ns = [4096, 16384, 65536] if args.quick else NS
    names = ["flash", "full", *FLURKA]
    jobs = list(itertools.product(head_dims, ns, MODES, names))
    est = estimate_seconds(FLOPS[name](layer_shape(name, n, dh * heads, heads, d_k)) * (3 if mode == "fwd_bwd" else 1)
                           for dh, n, mode, name in jobs)  # fmt: skip
    print(f"{len(jobs)} layers to time; estimated ~{est / 60:.1f} min on an H100", flush=True)
    rows = ResultsLog(results_path(args.out))  # rewritten after every point: a run cut short keeps them
    for dh, n, mode, name in jobs:
        row = measure(name, n, mode, device, (dh * heads, heads, d_k))
        if name in ("flash", "full"):
            row["d_k"] = None  # exact attention does not downsample
        rows.append(row)
        print(f"d_h={dh:4d} N={n:6d} {mode:7s} {name:17s} {row.get('ms')!s:>10} ms {row.get('status', '')}", flush=True)
    annotate(rows)
    paths = write_figure(
        args.out,
        rows,
        title="FLuRKA Fig. 5: speedup over FlashAttention",
        setup=[
            f"one attention layer, batch 1, {rows[0]['dtype']}, non-causal, H={heads}, d_h ∈ {head_dims} "
            f"(d_m = H·d_h), FLuRKA d_k={d_k}; N ∈ {ns}; forward and forward+backward",
            "FlashAttention = our Triton kernel (`flash`) and PyTorch SDPA (`full`, its flash backend at these head "
            "dims); the paper's Fig. 3 head dim (325) is not supported by FlashAttention, hence d_h = 64 / 128",
            "FLOP model = ratio of each module's own `flops()` (fwd+bwd counted as 3× forward for every variant)",
        ],
        claims=claims(rows),
        plot=plot,
        dry_run=args.dry_run,
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
