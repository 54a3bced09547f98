"""Training-step speed per attention variant at the GPT-2 small shape (issue 15).

GPT-2 small as `conf/model/gpt2_small.yaml` builds it (12 layers, 12 heads, d_model 768, dropout 0.1, tanh
GELU, learned positions, tied embeddings) with GPT-2's BPE vocabulary (50257), every causal variant with the
options of its `conf/attention/<name>.yaml` (Linformer is left out: it cannot be causal). Sequence length
N = 1k, 4k, 8k, 16k at a constant 16k tokens per step (batch = 16384 / N), bf16 autocast, AdamW. One step is
what the trainer's is (`flurka.train.loop`): forward, backward, gradient clipping at 1.0, AdamW step; a few
warm-up steps (compiles, autotuning) are excluded and each timed step is CUDA-synchronised
(`flurka.bench.timing.step_times_ms`), the median reported. `full` also runs under `torch.compile` as an extra
row (impl `sdpa+compile`; off under `--quick`, whose compiles would take most of its time); `--compile VARIANT ...`
names the variants to time compiled as well (the kernel-attention layers trace whole: tests/attention/test_compile.py).

Each row: tokens/s, achieved model TFLOP/s, MFU and peak memory. FLOPs follow the trainer: 3 × the model's
forward FLOPs (`GPT.flops_per_sequence`: each attention variant's own `flops()`, the MLPs and the LM head;
matmul FLOPs only, causal attention counted at half), over the GPU's dense bf16 peak (`flurka.train.throughput`).
A variant that runs out of memory or fails is recorded with its error and the sweep goes on.

    python scripts/bench.py train [--quick] [--dry-run] [--compile VARIANT ...] [--profile VARIANT[@N] ...]
        [--out results/speed/train.json]

`--profile` adds, for those points, where the step's time goes (`flurka.bench.timing.profile_step`): the
device's busy time against the wall time (a step the host's launches pace shows up as a low busy share) and
the top kernels, in the json and as a section of the table. `--logits-loss` builds GPT with `fused_loss=False`
(its loss over all the [B, N, V] logits) to time it against the chunked head.

Writes train.json (rewritten after every point, `"complete": false` until the sweep ends), then train.png
(tokens/s and peak memory vs N, log axes) and train.md (the tables printed at the end) beside it.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from flurka.bench.report import Claim, ResultsLog, claims_markdown, plt_agg, ratio
from flurka.bench.timing import (
    bench_device,
    peak_memory_mib,
    profile_filter,
    profile_step,
    profiles_markdown,
    step_times_ms,
)
from flurka.results.provenance import read_results

# conf/model/gpt2_small.yaml (a test keeps the two equal); GPT-2's own vocabulary, as the openwebtext2 task's
GPT2_SMALL = {"n_layers": 12, "n_heads": 12, "d_model": 768, "dropout": 0.1, "activation": "gelu_tanh"}
VOCAB = 50257
TOKENS_PER_STEP = 16384
LENGTHS = [1024, 4096, 8192, 16384]
QUICK_LENGTHS = [1024, 8192, 16384]  # 1k and 8k: where issue 15's targets are set
# each causal variant's options as conf/attention/<name>.yaml gives them (a test keeps the two equal)
_FLURKA = {"downsample_len": 64, "downsample": "before_projection", "share_heads": True, "share_kv": False,
           "chunk_size": 64, "rows_per_chunk": 8}  # fmt: skip
_FEATURES = {"n_features": 64, "redraw_interval": 0, "feature_seed": 0}
_OPTIONS: dict[str, dict[str, Any]] = {
    "full": {"impl": "sdpa"},
    "flash": {},
    "linear": {"feature_map": "elu", "normalize": True},
    "performer": {**_FEATURES, "chunk_size": 64},
    "lightning": {"decay": "alibi", "feature_map": "identity", "normalize": False, "output_norm": True},
    "flurka_rnn": _FLURKA,
    "flurka_performer": {**_FLURKA, **_FEATURES},
    "flurka_eva": {**_FLURKA, "eva_chunk_size": 16},
    "eva": {"chunk_size": 16},
    "scfa_hash": {"n_buckets": 16},
    "scfa_qk": {"drop": 0.5},
}
VARIANTS = {name: {**options, "backend": "auto"} for name, options in _OPTIONS.items()}
COMPILED = "full"  # the variant that also runs under torch.compile unless --compile names others
FLOP_CONVENTION = (
    "model FLOPs = 3 x forward FLOPs (GPT.flops_per_sequence: each attention variant's own flops(), MLPs, LM head; "
    "matmul FLOPs only, causal attention at half; embeddings and element-wise work not counted), as the trainer's "
    "MFU (flurka.train.throughput.mfu) over the GPU's dense bf16 peak"
)


@dataclass(frozen=True)
class Setup:
    """What every point of the sweep shares: the model shape, the batch arithmetic and the step counts."""

    device: str
    model: dict[str, Any] = field(default_factory=lambda: dict(GPT2_SMALL))
    vocab_size: int = VOCAB
    tokens_per_step: int = TOKENS_PER_STEP
    lengths: list[int] = field(default_factory=lambda: list(LENGTHS))
    warmup: int = 3
    steps: int = 10
    max_seconds: float = 20.0  # of timed steps per point: a slow torch-path variant must not eat the device call
    bf16: bool = True
    optimizer: str = "AdamW(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1; fused on CUDA, as the trainer), grad clip 1.0"
    flops: str = FLOP_CONVENTION

    def batch(self, n: int) -> int:
        return max(1, self.tokens_per_step // n)


def make_setup(*, dry_run: bool, quick: bool) -> Setup:
    if dry_run:  # checks the script on CPU: a tiny GPT, two lengths, a step or two (never a result)
        tiny = {"n_layers": 2, "n_heads": 2, "d_model": 32, "dropout": 0.0, "activation": "gelu_tanh"}
        return Setup("cpu", tiny, 128, 256, [64, 128], warmup=1, steps=2, max_seconds=5.0, bf16=False)
    if quick:
        return Setup("cuda", lengths=list(QUICK_LENGTHS), warmup=2, steps=5, max_seconds=5.0)
    return Setup("cuda")


def build_model(name: str, n: int, setup: Setup) -> torch.nn.Module:
    """The project's GPT with this variant, built the way a training run builds it (`attention_factory`)."""
    from flurka.models.gpt import GPT

    with torch.device(setup.device):  # initialise on the GPU: GPT-2 small's init on the CPU takes seconds
        return GPT(vocab_size=setup.vocab_size, max_len=n, attention={"name": name, **VARIANTS[name]}, **setup.model)


def make_step(model: torch.nn.Module, ids: torch.Tensor, setup: Setup) -> Callable[[], None]:
    """One training step as the trainer takes it: forward under bf16 autocast, backward, clip, AdamW."""
    from flurka.train.loop import adamw_implementation

    params = [p for p in model.parameters() if p.requires_grad]
    # the trainer's AdamW implementation (fused on CUDA), so the bench times the step a training run takes
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  **adamw_implementation(params))  # fmt: skip
    device_type = torch.device(setup.device).type

    def step() -> None:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=setup.bf16):
            loss = model(ids, labels=ids)["loss"]  # labels only set the loss's cost; their values do not matter
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def base_row(name: str, impl: str, n: int, setup: Setup) -> dict[str, Any]:
    d, h = setup.model["d_model"], setup.model["n_heads"]
    return {"variant": name, "impl": impl, "mode": "train_step", "B": setup.batch(n), "N": n, "H": h, "D": d // h,
            "dtype": "bf16" if setup.bf16 else "fp32", "causal": True, "ms": None, "tflops": None,
            "tokens_per_s": None, "mfu": None, "peak_mem_mib": None, "d_model": d,
            "n_layers": setup.model["n_layers"], "vocab_size": setup.vocab_size, "compiled": impl.endswith("compile"),
            "status": "ok"}  # fmt: skip


def _impl(name: str, setup: Setup, compiled: bool = False) -> str:
    # what ran: SDPA for full, our kernel for flash, and for the rest the module's best path on this device
    impl = "torch" if setup.device == "cpu" else {"full": "sdpa", "flash": "triton"}.get(name, "auto")
    return impl + ("+compile" if compiled else "")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


def timed_point(
    model: torch.nn.Module, n: int, setup: Setup, flops_per_token: float, *, profile: bool = False
) -> dict[str, Any]:
    """Time the training step of `model` at length n: ms, tokens/s, TFLOP/s, MFU, peak memory.
    `flops_per_token`: forward FLOPs (training = 3x, as in the trainer's `mfu()`). `profile`: then profile two
    more steps (`profile_step`: busy vs wall time, the top kernels), after the timed ones so it times nothing."""
    from flurka.train.throughput import mfu

    device = torch.device(setup.device)
    b = setup.batch(n)
    ids = torch.randint(setup.vocab_size, (b, n), device=device)
    step = make_step(model, ids, setup)
    times: list[float] = []

    def run() -> None:
        times.extend(step_times_ms(step, device, warmup=setup.warmup, steps=setup.steps, max_seconds=setup.max_seconds))

    mem = None
    if device.type == "cuda":
        mem = peak_memory_mib(run)  # over warm-up and timed steps: weights, AdamW state, activations
    else:
        run()
    ms = statistics.median(times)
    tokens_per_s = b * n / (ms * 1e-3)
    util = mfu(flops_per_token, tokens_per_s, device)
    extra = {"profile": profile_step(step, device)} if profile else {}
    return extra | {"ms": round(ms, 3), "tokens_per_s": round(tokens_per_s, 1),
            "tflops": round(3 * flops_per_token * tokens_per_s / 1e12, 2),
            "mfu": None if util is None else round(util, 4), "peak_mem_mib": None if mem is None else round(mem, 1),
            "steps_timed": len(times)}  # fmt: skip


def measure(name: str, n: int, setup: Setup, *, compiled: bool = False, profile: bool = False) -> dict[str, Any]:
    """One row: the point measured, or its status ("oom" / "error") with the error, never an exception."""
    row = base_row(name, _impl(name, setup, compiled), n, setup)
    start = time.perf_counter()
    model = None
    try:
        model = build_model(name, n, setup)
        row["params"] = sum(p.numel() for p in model.parameters())  # unique tensors: the tied head counts once
        flops_per_token = model.flops_per_sequence(n) / n
        if compiled:
            torch._dynamo.reset()  # a fresh compile per length: no recompile limit silently falling back to eager
            model = torch.compile(model)
        row.update(timed_point(model, n, setup, flops_per_token, profile=profile))
    except torch.OutOfMemoryError as err:
        row.update(status="oom", error=_first_line(err))
    except Exception as err:  # a variant that fails is a result too; the sweep goes on
        row.update(status="error", error=_first_line(err))
    finally:
        del model
        if compiled:
            torch._dynamo.reset()  # its caches hold the compiled model's weights: free them for the next point
        gc.collect()
        if setup.device == "cuda":
            torch.cuda.empty_cache()
    row["point_s"] = round(time.perf_counter() - start, 1)  # build + warm-up + timed steps: what a point costs
    return row


def planned(setup: Setup, variants: list[str], compiled: list[str]) -> list[tuple[str, int, bool]]:
    """(variant, N, compiled) in sweep order: every variant at a length before the next length, so a run cut
    short (or over budget) has compared all variants at the lengths it reached; the `compiled` variants (those
    of `variants`) again under torch.compile after the eager ones of that length."""
    jobs = []
    for n in setup.lengths:
        jobs += [(name, n, False) for name in variants]
        jobs += [(name, n, True) for name in compiled if name in variants]
    return jobs


def sweep(
    setup: Setup,
    jobs: list[tuple[str, int, bool]],
    rows: list[dict],
    budget_s: float | None,
    profile: Callable[[str, int], bool] = lambda name, n: False,
) -> None:
    start = time.perf_counter()
    for name, n, compiled in jobs:
        if budget_s is not None and time.perf_counter() - start > budget_s:
            row = base_row(name, _impl(name, setup, compiled), n, setup)
            row.update(status="skipped", error=f"not run: over --budget-s {budget_s:g}")
        else:
            row = measure(name, n, setup, compiled=compiled, profile=not compiled and profile(name, n))
        rows.append(row)
        print(f"N={n:6d} B={row['B']:3d} {name:17s} {row['impl']:13s} " + _summary(row), flush=True)


def _summary(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('error', '')}"
    mfu = "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
    mem = "-" if row["peak_mem_mib"] is None else f"{row['peak_mem_mib'] / 1024:.1f} GiB"
    return f"{row['ms']:9.2f} ms {row['tokens_per_s']:12,.0f} tok/s MFU {mfu:>6} peak {mem}"


def _label(row: dict[str, Any]) -> str:
    return row["variant"] + (" (compiled)" if row["compiled"] else "")


def _cell(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return ""
    if row["status"] != "ok":
        return row["status"]
    v = row[key]
    if v is None:
        return "—"
    return {"tokens_per_s": f"{v:,.0f}", "mfu": f"{100 * v:.1f}%", "peak_mem_mib": f"{v / 1024:.1f}"}[key]


def markdown(rows: list[dict], setup: Setup, provenance: dict[str, str]) -> str:
    """One table per metric: a row per variant, a column per N; failed points say how they failed."""
    lengths = sorted({r["N"] for r in rows})
    labels = list(dict.fromkeys(_label(r) for r in rows))
    at = {(_label(r), r["N"]): r for r in rows}
    m = setup.model
    out = ["# Training-step speed per attention variant", ""]
    if setup.device == "cpu":
        out += ["**Dry run** (a tiny GPT on CPU): checks the script; these numbers are not measurements.", ""]
    out += [f"- GPT: {m['n_layers']} layers, {m['n_heads']} heads, d_model {m['d_model']}, dropout {m['dropout']}, "
            f"vocab {setup.vocab_size}, loss {_loss_kind(setup)};",
            f"  {setup.tokens_per_step} tokens per step (B = {setup.tokens_per_step} / N); "
            f"{'bf16 autocast' if setup.bf16 else 'fp32'}; {setup.optimizer}",
            f"- {setup.warmup} warm-up steps excluded, then the median of up to {setup.steps} timed steps "
            f"(at most {setup.max_seconds:g} s of them per point)",
            f"- FLOPs: {setup.flops}",
            f"- commit `{provenance['commit']}`, {provenance['gpu']}, torch {provenance['torch']}, triton "
            f"{provenance['triton']}; command: `{provenance['command']}`", ""]  # fmt: skip
    for key, title in (("tokens_per_s", "tokens/s"), ("mfu", "MFU"), ("peak_mem_mib", "peak memory (GiB)")):
        out += [f"### {title}", "", "| variant | " + " | ".join(f"N={n}" for n in lengths) + " |",
                "|---|" + "---:|" * len(lengths)]  # fmt: skip
        out += [f"| {lab} | " + " | ".join(_cell(at.get((lab, n)), key) for n in lengths) + " |" for lab in labels]
        out.append("")
    out += ["### claims", "", claims_markdown(claims(rows)), ""]
    out += profiles_markdown(rows, _label)
    errors = [f"- {_label(r)} at N={r['N']}: {r['status']}: {r['error']}" for r in rows if r["status"] != "ok"]
    return "\n".join(out + (["### not measured", "", *errors, ""] if errors else []))


def _best(rows: list[dict], variant: str, n: int) -> dict | None:
    """The variant's faster point at N, eager or compiled (what a user of the suite would run)."""
    ok = [r for r in rows if r["variant"] == variant and r["N"] == n and r["status"] == "ok" and r["tokens_per_s"]]
    return max(ok, key=lambda r: r["tokens_per_s"], default=None)


def claims(rows: list[dict]) -> list[Claim]:
    """Issue 15's targets and FLuRKA's headline (its step faster than its kernel constituent's), each a claim
    with a verdict: causal FLuRKA ≥ 0.9× Lightning's tokens/s at 1k and 8k and ≥ 1.5× flash at 8k, full attention
    ≥ 40% MFU at 1k. Each point is the variant's faster run, eager or compiled."""
    out = []

    def versus(variant: str, baseline: str, n: int, target: float, text: str) -> None:
        a, b = _best(rows, variant, n), _best(rows, baseline, n)
        got = ratio(a["tokens_per_s"], b["tokens_per_s"]) if a and b else None
        where = f"N={n}, tokens/s of {_label(a)} over {_label(b)}" if a and b else f"N={n}: not both measured"
        out.append(Claim(text, target, got, where))

    for name in ("flurka_rnn", "flurka_performer"):
        for n in (1024, 8192):
            versus(name, "lightning", n, 0.9, f"causal {name} ≥ 0.9× Lightning's training tokens/s at N={n} (issue 15)")
        versus(name, "flash", 8192, 1.5, f"causal {name} ≥ 1.5× flash's training tokens/s at N=8192 (issue 15)")
    for name, kernel in (("flurka_rnn", "linear"), ("flurka_performer", "performer")):
        both = [n for n in sorted({r["N"] for r in rows}) if _best(rows, name, n) and _best(rows, kernel, n)]
        n = both[-1] if both else max((r["N"] for r in rows), default=8192)  # the longest length both ran
        versus(name, kernel, n, 1.0, f"FLuRKA's step faster than its kernel constituent's ({name} vs {kernel})")
    full = _best(rows, "full", 1024)
    mfu = None if full is None or full["mfu"] is None else round(100 * full["mfu"], 1)
    out.append(Claim("full attention at N=1024 ≥ 40% MFU (issue 15; the FLOP convention above)", 40.0, mfu,
                     f"{_label(full)}, N=1024" if full else "not measured", unit="%"))  # fmt: skip
    return out


def _loss_kind(setup: Setup) -> str:
    if setup.model.get("fused_loss", True):
        return "chunked over the head (flurka.ops.loss, no [B, N, V] logits)"
    return "over all the [B, N, V] logits (--logits-loss)"


def plot(rows: list[dict], path: Path) -> None:
    plt = plt_agg()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(_label(r) for r in rows):
        ok = sorted((r["N"], r["tokens_per_s"], r["peak_mem_mib"]) for r in rows
                    if _label(r) == label and r["status"] == "ok")  # fmt: skip
        if not ok:
            continue
        style = "--" if label.endswith("(compiled)") else "-"
        axes[0].plot([p[0] for p in ok], [p[1] for p in ok], style, marker="o", ms=3, label=label)
        mem = [(p[0], p[2]) for p in ok if p[2] is not None]
        if mem:
            axes[1].plot(*zip(*mem), style, marker="o", ms=3, label=label)
    for ax, ylabel in zip(axes, ("tokens/s (training)", "peak memory (MiB)")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length N (tokens per step constant)", ylabel=ylabel)
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3, which="both")
    if axes[0].lines:  # a sweep where nothing ran (all skipped or failed) still gets its (empty) figure
        axes[0].legend(fontsize=7, ncol=2)
    r0 = rows[0] if rows else {}
    fig.suptitle(f"training step, GPT-2 small shape ({r0.get('n_layers')} layers, d_model {r0.get('d_model')}), "
                 f"{r0.get('dtype')}, AdamW")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py train", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="N in {1k, 8k, 16k}, 2 warm-up + 5 timed steps, no compile")
    p.add_argument("--dry-run", action="store_true", help="a tiny GPT on CPU: checks the script runs")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    compile_choice = p.add_mutually_exclusive_group()  # both at once used to mean "no compile", silently
    compile_choice.add_argument(
        "--compile",
        nargs="*",
        metavar="VARIANT",
        choices=list(VARIANTS),
        default=None,
        help=f"also time these variants under torch.compile (no names: {COMPILED}; default: {COMPILED}, but none "
        "with --quick or --dry-run, whose compile times would take most of the run)",
    )
    compile_choice.add_argument("--no-compile", action="store_true", help="time no variant under torch.compile")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting points after this many seconds; the rest are recorded as skipped "
                   "(default: 200 with --quick, so it fits one 10-minute device call with room to spare)")  # fmt: skip
    p.add_argument("--profile", nargs="*", metavar="VARIANT[@N]",
                   help="profile these points too (top kernels, busy vs wall time), in the json and table")  # fmt: skip
    p.add_argument("--logits-loss", action="store_true",
                   help="GPT's loss over all the [B, N, V] logits (fused_loss=False), not the chunked one")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("results/speed/train.json"))
    args = p.parse_args(argv)
    profile = profile_filter(args.profile, args.variants)
    bench_device(args.dry_run)  # exits with a clear message without a GPU (unless --dry-run)
    setup = make_setup(dry_run=args.dry_run, quick=args.quick)
    if args.logits_loss:
        setup = replace(setup, model={**setup.model, "fused_loss": False})
    if args.no_compile:
        compiled = []
    elif args.compile is not None:
        compiled = args.compile or [COMPILED]
    else:
        compiled = [] if args.quick or args.dry_run else [COMPILED]
    budget = args.budget_s if args.budget_s is not None else (200.0 if args.quick else None)
    jobs = planned(setup, args.variants, compiled)
    print(f"[train] {len(jobs)} points on {setup.device}; {setup.flops}", flush=True)
    rows = ResultsLog(args.out, setup=asdict(setup))  # rewritten after every point: a run cut short keeps them
    sweep(setup, jobs, rows, budget, profile)
    out = rows.finish()
    plot(rows, out.with_suffix(".png"))
    table = markdown(rows, setup, read_results(out)["provenance"])
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {out}, {out.with_suffix('.png')}, {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
