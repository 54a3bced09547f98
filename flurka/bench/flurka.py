"""FLuRKA Fig. 3 (PAPERS.md §1): time vs sequence length for every variant at the paper's configuration.

d_m = 2600, d_k = 1500, d_h = 325, H = 8, N = 7.05k … 55.5k (steps of 3k in the paper), batch 1, bf16, one
attention layer (projections included), forward (the paper's inference timing) and forward+backward. Every
variant runs on its best path (`backend="auto"`: our Triton kernels on a GPU where they exist, cuBLAS
matmuls otherwise). Each row carries the variant's own FLOP count (`flops()`), its achieved TFLOP/s and the
roofline time at the GPU's *measured* bf16 matmul rate (a large GEMM timed first), so every time can be read
against what the FLOPs allow.

`full` runs PyTorch SDPA; head dim 325 is above the flash backend's limit (256), so SDPA picks another
backend, and `flash` (our kernel) pads 325 to 512 internally. Rows that run out of memory are recorded as
such, not dropped.

Beside each module (`--impls module`), the plain PyTorch formulation of the same function (`--impls plain`,
`flurka.bench.plain`: a few einsums in bf16, what a researcher would write) is timed in the same run, for
Linformer, Performer, linear and FLuRKA-{RNN, Performer}: our layers must beat it, or the speed comes from
the math and not from us. `--profile VARIANT[@N]` adds where the time goes at those points (top kernels).

    python scripts/bench.py flurka [--quick] [--impls module plain] [--profile flurka_rnn@55050]
        [--out results/flurka_speed/fig3_seqlen/results.json]

Writes results.json, results.csv, results.png and table.md (the paper's speed claims beside our best
inference speedups, computed over the modules' rows; ours beside plain) into the folder of `--out`
(`flurka.bench.report`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from flurka.attention import build_attention
from flurka.bench.plain import PLAIN, plain_forward
from flurka.bench.report import ResultsLog, claim_for, results_path, write_figure
from flurka.bench.timing import bench_device, bench_ms, profile_filter, profile_step, profiles_markdown
from flurka.ops.testing import rel_err

D_MODEL, D_K, HEAD_DIM, HEADS = 2600, 1500, 325, 8
PAPER_NS = [7050 + 3000 * i for i in range(17)]  # 7.05k … 55.05k (the paper's grid; it quotes up to 55.5k)
VARIANTS = {
    "full": {},
    "flash": {},
    "linformer": {"downsample_len": D_K},
    "performer": {"n_features": 256},
    "linear": {},
    "eva": {"chunk_size": 256},
    "flurka_performer": {"downsample_len": D_K, "n_features": 256},
    "flurka_rnn": {"downsample_len": D_K},
    "flurka_eva": {"downsample_len": D_K, "eva_chunk_size": 64},
}


def matmul_tflops(device: torch.device, n: int = 8192) -> float:
    """The GPU's measured dense bf16 GEMM rate: the roofline every row is read against."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = bench_ms(lambda: a @ b)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def _time(fn, device: torch.device) -> float:
    if device.type == "cuda":
        return bench_ms(fn)
    start = time.perf_counter()  # --dry-run on CPU: checks the script, not a measurement to report
    fn()
    return (time.perf_counter() - start) * 1e3


def measure(
    name: str,
    n: int,
    mode: str,
    device: torch.device,
    dims: tuple[int, int, int],
    *,
    plain: bool = False,
    profile: bool = False,
) -> dict:
    """One point: the module (or with `plain`, its plain PyTorch formulation) at N tokens, `mode` fwd or
    fwd_bwd; `profile` adds a `profile_step` of two more calls."""
    d_model, heads, d_k = dims
    opts = dict(VARIANTS[name])
    if "downsample_len" in opts:
        opts["downsample_len"] = d_k
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    row = {"variant": name, "mode": mode, "B": 1, "N": n, "H": heads, "D": d_model // heads, "d_model": d_model,
           "d_k": d_k, "dtype": str(dtype).removeprefix("torch."), "causal": False, **{
               k: v for k, v in opts.items() if k != "downsample_len"}}  # fmt: skip
    try:
        attn = build_attention(name, d_model, heads, causal=False, max_len=n, backend="auto", **opts)
        attn = attn.to(device=device, dtype=dtype)
        # what ran: SDPA for full, our kernel for flash, and for the rest the module's best path on this device
        row["impl"] = {"full": "sdpa", "flash": "triton"}.get(name, "auto" if device.type == "cuda" else "torch")
        forward = attn
        if plain:
            row["impl"] = "plain"

            def forward(t: torch.Tensor) -> torch.Tensor:
                return plain_forward(attn, t)

        row["flops"] = attn.flops(n) * (3 if mode == "fwd_bwd" else 1)
        x = torch.randn(1, n, d_model, device=device, dtype=dtype, requires_grad=mode == "fwd_bwd")
        if mode == "fwd":
            if plain:  # the same function in bf16 either way: how far apart the two roundings land
                with torch.no_grad():
                    row["rel_diff_vs_module"] = round(rel_err(forward(x), attn(x)), 5)

            def fn() -> None:
                with torch.no_grad():
                    forward(x)
        else:
            g = torch.randn(1, n, d_model, device=device, dtype=dtype)

            def fn() -> None:
                forward(x).backward(g)
                x.grad = None
                for p in attn.parameters():
                    p.grad = None

        row["ms"] = round(_time(fn, device), 4)
        row["tflops"] = round(row["flops"] / (row["ms"] * 1e-3) / 1e12, 2)
        if profile:
            row["profile"] = profile_step(fn, device)
    except torch.OutOfMemoryError:
        row.update(ms=None, tflops=None, status="oom")
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = dict(zip(VARIANTS, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2))
    for ax, mode in zip(axes, ("fwd", "fwd_bwd")):
        for name in VARIANTS:
            for plain in (False, True):  # the plain formulation dashed, in its variant's colour
                pts = [(r["N"], r["ms"]) for r in rows if r["variant"] == name and r["mode"] == mode
                       and r.get("ms") and (r.get("impl") == "plain") == plain]  # fmt: skip
                if pts:
                    label, style = (f"{name} (plain PyTorch)", "--") if plain else (name, "-")
                    ax.plot(*zip(*pts), style, marker="o", ms=3, color=colors[name], label=label)
        ax.set(xlabel="sequence length N", ylabel="ms (one layer, batch 1)", yscale="log",
               title=f"{'inference (forward)' if mode == 'fwd' else 'forward + backward'}")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"FLuRKA Fig. 3 setting: d_m={D_MODEL}, d_k={D_K}, d_h={HEAD_DIM}, H={HEADS}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plain_markdown(rows: list[dict]) -> list[str]:
    """Ours beside the plain PyTorch formulation of the same function, per variant, N and mode."""
    plain = {(r["variant"], r["N"], r["mode"]): r for r in rows if r.get("impl") == "plain" and r.get("ms")}
    if not plain:
        return []
    ours = {(r["variant"], r["N"], r["mode"]): r for r in rows if r.get("impl") != "plain" and r.get("ms")}
    out = ["### ours vs the plain PyTorch formulation (flurka.bench.plain: the same function, unfused einsums)", "",
           "| variant | N | mode | ours ms | plain ms | plain / ours | ours × roofline | plain × roofline |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for key, p in plain.items():
        o = ours.get(key)
        if o is None:
            continue
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {o['ms']:.3f} | {p['ms']:.3f} | {p['ms'] / o['ms']:.2f}× | "
                   f"{o.get('x_roofline', '—')} | {p.get('x_roofline', '—')} |")  # fmt: skip
    return [*out, ""]


def _label(row: dict) -> str:
    return row["variant"] + (" (plain PyTorch)" if row.get("impl") == "plain" else "")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py flurka", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 sequence lengths instead of 17")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: checks the script runs")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT")
    p.add_argument(
        "--impls",
        nargs="+",
        default=["module", "plain"],
        choices=["module", "plain"],
        help="our modules, and the plain PyTorch formulation of each (where flurka.bench.plain has one)",
    )
    p.add_argument("--profile", nargs="*", metavar="VARIANT[@N]",
                   help="profile these points too (top kernels, busy vs wall time), in the json and table")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("results/flurka_speed/fig3_seqlen/results.json"),
                   help="the results JSON, or its folder; csv, png and table.md go beside it")  # fmt: skip
    args = p.parse_args(argv)
    profile = profile_filter(args.profile, args.variants)
    device = bench_device(args.dry_run)
    dims = (64, 4, 24) if args.dry_run else (D_MODEL, HEADS, D_K)
    ns = [40, 70] if args.dry_run else ([7050, 31050, 55050] if args.quick else PAPER_NS)
    rows = ResultsLog(results_path(args.out))  # rewritten after every point: a run cut short keeps them
    if device.type == "cuda":
        rate = matmul_tflops(device)
        print(f"measured bf16 GEMM rate: {rate:.0f} TFLOP/s (the roofline)", flush=True)
        rows.append({"variant": "gemm", "impl": "cublas", "mode": "fwd", "B": 1, "N": 8192, "H": 1, "D": 8192,
                     "dtype": "bfloat16", "causal": False, "ms": None, "tflops": round(rate, 1)})  # fmt: skip
    for n in ns:
        for mode in ("fwd", "fwd_bwd"):
            for name, plain in [(v, i == "plain") for v in args.variants for i in args.impls]:
                if plain and name not in PLAIN:
                    continue
                row = measure(name, n, mode, device, dims, plain=plain, profile=profile(name, n))
                if device.type == "cuda" and row.get("flops") and row.get("ms"):
                    row["roofline_ms"] = round(row["flops"] / (rate * 1e12) * 1e3, 4)
                    row["x_roofline"] = round(row["ms"] / row["roofline_ms"], 2)
                rows.append(row)
                print(f"N={n:6d} {mode:7s} {_label(row):34s} {row.get('ms')!s:>10} ms  {row.get('tflops')!s:>7} "
                      f"TFLOP/s x_roofline={row.get('x_roofline', '-')}", flush=True)  # fmt: skip
    ours = [r for r in rows if r.get("impl") != "plain"]  # the paper's claims are about our layers
    paths = write_figure(
        results_path(args.out),
        rows,
        title="FLuRKA Fig. 3: inference time vs sequence length",
        setup=[
            f"one attention layer, batch 1, {rows[-1]['dtype']}, non-causal; d_m={dims[0]}, H={dims[1]}, "
            f"d_h={dims[0] // dims[1]}, d_k={dims[2]}; N = {', '.join(map(str, ns))}",
            "speedups are from the forward pass (the paper's inference timing); `full` is PyTorch SDPA, `flash` our "
            "Triton kernel (d_h padded to a supported size); FLOP model = each module's own `flops()`",
        ],
        claims=[claim_for(k, ours, flop_field="flops") for k in ("low_rank", "kernel", "flash", "full")],
        plot=plot,
        dry_run=args.dry_run,
        notes=plain_markdown(rows) + profiles_markdown(rows, lambda r: f"{_label(r)}, {r['mode']}"),
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
