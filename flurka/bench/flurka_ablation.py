"""FLuRKA Fig. 4 (PAPERS.md §1): speedups over full attention on a grid of downsampling length d_k × hidden size d_m.

At one fixed large N, forward time of one attention layer (batch 1, bf16, non-causal, projections included) for
full attention (SDPA), the low-rank method (Linformer), the kernel methods (Performer, linear "RNN", EVA) and
FLuRKA-{Performer, RNN, EVA}. H = 8 heads as in Fig. 3, so d_h = d_m / 8 (d_m = 2600 is Fig. 3's own 8 × 325).
Each row carries its speedup over full attention and each FLuRKA row its speedup over its low-rank and its
kernel constituent, measured and predicted by the FLOP model (`flurka.bench.flops` at the same shapes), side
by side. Full and the kernel methods do not depend on d_k: they are timed once per d_m (their `d_k` is null).

The paper gives no N for Fig. 4; we use N = 31050, a point of its Fig. 3 grid where full attention at d_h = 325
still fits in 80 GB (SDPA has no flash kernel above d_h = 256 and materialises the N×N scores there).

    python scripts/bench.py flurka_ablation [--quick] [--n 31050] [--out results/flurka_speed/fig4_ablation]
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

from flurka.bench.flops import FLOPS, KERNEL_OF, LayerShape, claim1_condition
from flurka.bench.flurka import HEADS, VARIANTS, measure
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

N_FIXED = 31050
D_MODELS = [1024, 2048, 2600, 4096]  # d_h = 128, 256, 325, 512 at H = 8
D_KS = [256, 512, 1024, 1500, 2048]
NAMES = ["full", "linformer", "performer", "linear", "eva", *FLURKA]
USES_D_K = {"linformer", *FLURKA}
COMPARE = {"low_rank": "speedup_vs_low_rank", "kernel": "speedup_vs_kernel"}


def layer_shape(name: str, n: int, d_model: int, heads: int, d_k: int | None) -> LayerShape:
    """The FLOP model's shape for `name` with the options `measure()` builds it with (flurka.bench.flurka)."""
    opts = VARIANTS[name]
    return LayerShape(
        n=n,
        d_model=d_model,
        d_k=d_k or 0,
        head_dim=d_model // heads,
        n_heads=heads,
        n_features=opts.get("n_features"),
        eva_chunk=opts.get("eva_chunk_size", opts.get("chunk_size", 16)),
    )


def grid(n: int, d_models: list[int], d_ks: list[int], heads: int) -> list[tuple[str, int, int | None]]:
    """(variant, d_m, d_k) to time: d_k-free variants once per d_m."""
    jobs: list[tuple[str, int, int | None]] = []
    for d_model in d_models:
        jobs += [(name, d_model, None) for name in NAMES if name not in USES_D_K]
        jobs += [(name, d_model, d_k) for d_k, name in itertools.product(d_ks, NAMES) if name in USES_D_K]
    return jobs


def annotate(rows: list[dict]) -> None:
    """Speedups over full attention for every row and over both constituents for FLuRKA rows: measured (ms)
    and predicted (`flops_model`), side by side."""
    for r in rows:
        r["speedup_vs_full"] = speedup_over(rows, r, "full")
        r["pred_speedup_vs_full"] = speedup_over(rows, r, "full", field="flops_model")
        if r["variant"] in FLURKA:
            for base, key in (("linformer", "low_rank"), (KERNEL_OF[r["variant"]], "kernel")):
                r[f"speedup_vs_{key}"] = speedup_over(rows, r, base)
                r[f"pred_speedup_vs_{key}"] = speedup_over(rows, r, base, field="flops_model")


def plot(rows: list[dict], path: Path) -> None:
    """Heatmaps over d_k × d_m, one column per FLuRKA variant: speedup over full attention, over the low-rank
    and over the kernel constituent; each cell reads 'measured (FLOP model)'."""
    plt = plt_agg()
    from matplotlib.colors import TwoSlopeNorm

    d_models = sorted({r["d_model"] for r in rows})
    d_ks = sorted({r["d_k"] for r in rows if r.get("d_k")})
    panels = [("speedup_vs_full", "over full attention"), ("speedup_vs_low_rank", "over low-rank (Linformer)"),
              ("speedup_vs_kernel", "over its kernel method")]  # fmt: skip
    fig, axes = plt.subplots(3, 3, figsize=(13, 11), squeeze=False)
    for col, name in enumerate(FLURKA):
        for row_i, (key, label) in enumerate(panels):
            ax = axes[row_i][col]
            grid_ = [[None] * len(d_ks) for _ in d_models]
            for r in rows:
                if r["variant"] == name and r.get("d_k") in d_ks:
                    grid_[d_models.index(r["d_model"])][d_ks.index(r["d_k"])] = r
            # log2 of the speedup on a red-to-green scale centred on 1× (no speedup)
            vals = [[math.log2((c or {}).get(key) or float("nan")) for c in line] for line in grid_]
            finite = [v for line in vals for v in line if math.isfinite(v)] or [0.0]
            norm = TwoSlopeNorm(vcenter=0.0, vmin=min(min(finite), -0.1), vmax=max(max(finite), 0.1))
            im = ax.imshow(vals, cmap="RdYlGn", norm=norm, aspect="auto", origin="lower")
            for i, j in itertools.product(range(len(d_models)), range(len(d_ks))):
                c = grid_[i][j] or {}
                meas, pred = c.get(key), c.get(f"pred_{key}")
                text = ("oom" if c.get("status") == "oom" else "—") if meas is None else f"{meas:.2f}"
                ax.text(j, i, f"{text}\n({pred:.2f})" if pred else text, ha="center", va="center", fontsize=7)
            ax.set(xticks=range(len(d_ks)), xticklabels=d_ks, yticks=range(len(d_models)), yticklabels=d_models,
                   xlabel="d_k", ylabel="d_m", title=f"{name} {label}")  # fmt: skip
            fig.colorbar(im, ax=ax, fraction=0.046, label="log2 speedup (measured)")
    n = rows[0]["N"] if rows else "?"
    fig.suptitle(f"FLuRKA Fig. 4: forward speedups at N={n}, H={rows[0]['H'] if rows else '?'}; "
                 "cell = measured (FLOP model)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claims(rows: list[dict]) -> list[Claim]:
    out = [claim_for(k, rows, flop_field="flops_model") for k in ("low_rank", "kernel", "full")]
    # and per FLuRKA variant, as the paper's Fig. 4 shows each against its own constituents
    out += [claim_for(k, rows, flop_field="flops_model", variants=[name], label=name)
            for k, name in itertools.product(COMPARE, FLURKA)]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py flurka_ablation", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 hidden sizes × 2 downsampling lengths")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: checks the script runs")
    p.add_argument("--n", type=int, default=N_FIXED, help="the fixed sequence length")
    p.add_argument("--out", type=Path, default=Path("results/flurka_speed/fig4_ablation"),
                   help="folder (or results JSON path) for results.json, .csv, .png and table.md")  # fmt: skip
    args = p.parse_args(argv)
    device = bench_device(args.dry_run)
    if args.dry_run:
        n, heads, d_models, d_ks = 64, 4, [32, 64], [8, 16]
    else:
        n, heads = args.n, HEADS
        d_models, d_ks = ([1024, 2600], [512, 1500]) if args.quick else (D_MODELS, D_KS)
    jobs = grid(n, d_models, d_ks, heads)
    est = estimate_seconds(FLOPS[name](layer_shape(name, n, d, heads, k)) for name, d, k in jobs)
    print(f"{len(jobs)} layers to time at N={n}; estimated ~{est / 60:.1f} min on an H100", flush=True)
    rows = ResultsLog(results_path(args.out))  # rewritten after every point: a run cut short keeps them
    for name, d_model, d_k in jobs:
        row = measure(name, n, "fwd", device, (d_model, heads, d_k))
        shape = layer_shape(name, n, d_model, heads, d_k)
        row["flops_model"] = FLOPS[name](shape)
        if name in FLURKA:
            row["claim1_holds"] = claim1_condition(shape)
        rows.append(row)
        print(
            f"d_m={d_model:5d} d_k={d_k!s:>5} {name:17s} {row.get('ms')!s:>10} ms {row.get('status', '')}", flush=True
        )
    annotate(rows)
    paths = write_figure(
        args.out,
        rows,
        title="FLuRKA Fig. 4: speedups over d_k × d_m (forward, one layer)",
        setup=[
            f"N={n}, batch 1, {rows[0]['dtype']}, non-causal, H={heads} heads of d_h = d_m/{heads}; "
            f"d_m ∈ {d_models}, d_k ∈ {d_ks}",
            "options as Fig. 3: Performer and FLuRKA-Performer 256 random features, EVA chunk 256, FLuRKA-EVA "
            "chunk 64; `full` is PyTorch SDPA",
            "FLOP model = `flurka.bench.flops` at the same shapes (matmul FLOPs only); 'predicted' speedup = "
            "ratio of FLOPs. `claim1_holds`: the row satisfies Claim 1's N > d_k(H+2) > d_m > d_k > d_h",
        ],
        claims=claims(rows),
        plot=plot,
        dry_run=args.dry_run,
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
