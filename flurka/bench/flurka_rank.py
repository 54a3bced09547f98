"""FLuRKA Fig. 1 (PAPERS.md §1): the kernelized attention matrix of a trained Performer is low-rank, and FLuRKA's
error against full attention shrinks as d_k and the number of random features m grow (Theorem 1, measured).

(a) Singular values of φ(X W^Q) φ(X W^K)ᵀ for every layer and head of a Performer GPT trained on language
    modelling with the project's own loop (`flurka.train.loop.train`, Hydra-composed): by default 6 layers × 8
    heads, d_m = 512, m = 256 random features, N = 256 tokens of WikiText-2, trained for a 3-minute budget on
    one GPU (the paper: 12 × 12 on WikiText-103). Or pass `--checkpoint` (any Performer GPT checkpoint of this
    project). φ is FAVOR+ exactly as the model computes it, in fp64, without the stabilising constants
    (which rescale rows and would change the spectrum); the matrix is taken before the causal mask, on
    validation windows.
(b) Relative Frobenius error ‖y − y_full‖/‖y_full‖ of one layer's output (o_proj included), non-causal as in
    Theorem 1, on that layer's real inputs and with its trained q/k/v/o weights in every variant: FLuRKA-
    Performer over a grid of d_k × m, beside its two limits — Linformer with the same E, F (m → ∞) and the
    Performer (d_k = N). E = F = block averaging of N/d_k consecutive tokens, which is the identity at d_k = N,
    so the grid's far corner (d_k = N, m → ∞) is exact attention. Theorem 1's own E = δR, F = e^{-δ}R (a
    Gaussian R and a vanishing δ) is an existence argument and is not what is measured here.

`--dry-run` trains a few steps on CPU on the bundled Shakespeare (task=shakespeare, scale=smoke) instead.

    python scripts/bench.py flurka_rank [--checkpoint PATH] [--out results/flurka_speed/fig1_rank]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from flurka.attention import build_attention
from flurka.attention.kernel import PerformerAttention
from flurka.bench.report import Claim, ResultsLog, plt_agg, results_path, write_figure
from flurka.ops.features.reference import favor_exponent

CONF = Path(__file__).resolve().parents[2] / "conf"
RUN_DIR = Path("runs/fig1_rank/performer-gpt-wikitext2")
TRAIN_OVERRIDES = [  # ~3 minutes of training on one GPU (a time budget, so any GPU trains the same wall time)
    "attention=performer", "attention.n_features=256", "model=gpt", "task=wikitext2", "scale=mini",
    "model.n_layers=6", "model.n_heads=8", "model.d_model=512", "task.seq_len=256", "trainer.batch_size=32",
    "trainer.max_steps=20000", "trainer.warmup_steps=200", "trainer.time_budget_s=180", "trainer.eval_every=2000",
    "trainer.eval_batches=20",
]  # fmt: skip
DRY_OVERRIDES = ["attention=performer", "model=gpt", "task=shakespeare", "scale=smoke", "trainer.max_steps=3",
                 "trainer.eval_every=0", "trainer.eval_batches=1"]  # fmt: skip
COMMON = ["logger=none", "trainer.progress=false", "group=fig1_rank"]
LOW_RANK_SHARE = 0.25  # our criterion for "low-rank": 99% of the energy in ≤ 1/4 of the possible rank


# ------------------------------------------------------------------------------------------ (a) spectra
def _linear64(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    bias = None if layer.bias is None else layer.bias.double()
    return F.linear(x.double(), layer.weight.double(), bias)


def kernel_matrix(attn: PerformerAttention, x: torch.Tensor) -> torch.Tensor:
    """φ(X W^Q) φ(X W^K)ᵀ per head, [B, H, N, N] in fp64: FAVOR+ features exp(Wx − ‖x‖²/2)/√m of the
    D^-¼-scaled queries and keys, without the row/sequence stabilisers."""
    B, N, _ = x.shape
    H, D = attn.n_heads, attn.head_dim
    q = _linear64(x, attn.q_proj).view(B, N, H, D) * D**-0.25
    k = _linear64(x, attn.k_proj).view(B, N, H, D) * D**-0.25
    w = attn.projection.double()
    phi_q = torch.exp(favor_exponent(q, w)) / w.shape[0] ** 0.5
    phi_k = torch.exp(favor_exponent(k, w)) / w.shape[0] ** 0.5
    return torch.einsum("bihm,bjhm->bhij", phi_q, phi_k)


def energy_rank(s: torch.Tensor, share: float) -> int:
    """The fewest leading singular values holding `share` of Σσ² (s sorted descending)."""
    cum = torch.cumsum(s.double() ** 2, 0)
    return int(torch.searchsorted(cum, share * cum[-1]).item()) + 1


@torch.no_grad()
def spectrum_rows(attn: PerformerAttention, x: torch.Tensor, layer: int) -> list[dict]:
    """One row per head: singular values of the kernel matrix (σ/σ₁, averaged over the batch's sequences),
    σ₁, the stable rank Σσ²/σ₁² and the 90% / 99% energy ranks (medians over sequences)."""
    s = torch.linalg.svdvals(kernel_matrix(attn, x))  # [B, H, N], descending
    rows = []
    for h in range(s.shape[1]):
        sh = s[:, h]
        norm = sh / sh[:, :1]
        rows.append({
            "part": "spectrum", "layer": layer, "head": h, "N": x.shape[1], "n_features": attn.n_features,
            "sequences": s.shape[0], "sigma_max": float(sh[:, 0].median()),
            "stable_rank": round(float(((sh**2).sum(-1) / sh[:, 0] ** 2).median()), 3),
            "rank_90": int(statistics.median(energy_rank(v, 0.90) for v in sh)),
            "rank_99": int(statistics.median(energy_rank(v, 0.99) for v in sh)),
            "singular_values": [float(f"{v:.4g}") for v in norm.mean(0).tolist()],
        })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------ (b) errors
def block_average(d_k: int, n: int) -> torch.Tensor:
    """[d_k, n]: row i averages the i-th of d_k near-equal blocks of consecutive tokens (the identity at d_k=n)."""
    E = torch.zeros(d_k, n, dtype=torch.float64)
    for i, idx in enumerate(torch.tensor_split(torch.arange(n), d_k)):
        E[i, idx] = 1.0 / len(idx)
    return E


def same_weights(name: str, src: torch.nn.Module, n: int, **opts) -> torch.nn.Module:
    """A non-causal `name` layer with `src`'s q/k/v/o projections, fp64, on src's device."""
    attn = build_attention(name, src.d_model, src.n_heads, causal=False, max_len=n, backend="torch", **opts)
    shared = {k: v for k, v in src.state_dict().items() if k.split(".")[0] in ("q_proj", "k_proj", "v_proj", "o_proj")}
    attn.load_state_dict(shared, strict=False)
    attn = attn.to(device=src.q_proj.weight.device, dtype=torch.float64).eval()
    if hasattr(attn, "downsample"):
        E = block_average(opts["downsample_len"], n).to(attn.downsample.E.device)
        attn.downsample.E.data.copy_(E)
        attn.downsample.F.data.copy_(E)
    return attn


def rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).norm() / ref.norm())


@torch.no_grad()
def approximation_errors(
    src: torch.nn.Module, x: torch.Tensor, *, d_ks: list[int], features: list[int], seeds: list[int], layer: int = 0
) -> list[dict]:
    """Relative error vs full attention (same weights, same inputs, non-causal) of FLuRKA-Performer on d_ks ×
    features, of Linformer with the same E, F (its m → ∞ limit) and of the Performer (its d_k = N limit);
    random-feature variants averaged over `seeds` (feature draws). FLuRKA rows also give the distance to their
    Linformer limit."""
    n = x.shape[1]
    x = x.double()
    y_full = same_weights("full", src, n, impl="math")(x)
    base = {"part": "error", "layer": layer, "N": n}
    rows, linformer = [], {}
    for d_k in d_ks:
        linformer[d_k] = same_weights("linformer", src, n, downsample_len=d_k)(x)
        rows.append({**base, "variant": "linformer", "d_k": d_k, "n_features": None,
                     "rel_err": rel_error(linformer[d_k], y_full), "rel_err_std": 0.0})  # fmt: skip
    for m in features:
        errs = [rel_error(same_weights("performer", src, n, n_features=m, feature_seed=s)(x), y_full) for s in seeds]
        rows.append({**base, "variant": "performer", "d_k": None, "n_features": m, "seeds": len(seeds),
                     "rel_err": statistics.mean(errs), "rel_err_std": statistics.pstdev(errs)})  # fmt: skip
        for d_k in d_ks:
            ys = [same_weights("flurka_performer", src, n, downsample_len=d_k, n_features=m, feature_seed=s)(x)
                  for s in seeds]  # fmt: skip
            errs = [rel_error(y, y_full) for y in ys]
            to_limit = statistics.mean(rel_error(y, linformer[d_k]) for y in ys)
            rows.append({**base, "variant": "flurka_performer", "d_k": d_k, "n_features": m, "seeds": len(seeds),
                         "rel_err": statistics.mean(errs), "rel_err_std": statistics.pstdev(errs),
                         "rel_err_to_linformer": to_limit})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------ the model
def train_performer(overrides: list[str], run_dir: Path) -> Path:
    """Train with the project's loop (Hydra compose of conf/); returns the final checkpoint."""
    from hydra import compose, initialize_config_dir

    from flurka.train.checkpoint import latest_checkpoint
    from flurka.train.loop import train

    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run every time, like `make demo`
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *COMMON, f"run_dir={run_dir}"])
    train(cfg)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise RuntimeError(f"training wrote no checkpoint under {run_dir}/checkpoints")
    return ckpt


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None  # no eval yet: JSON has no infinity


def load_model(path: Path, device: torch.device):
    """The GPT and task of a project checkpoint (its resolved config travels in the checkpoint's meta)."""
    from hydra.utils import instantiate

    from flurka.models.transfer import strip_wrappers
    from flurka.train.checkpoint import load_checkpoint

    state = load_checkpoint(path, device)
    cfg = state["meta"]["config"]
    task = instantiate(cfg["task"])
    model = instantiate(cfg["model"], **task.model_kwargs(), attention=instantiate(cfg["attention"]))
    model.load_state_dict(strip_wrappers(state["model"]))
    model.to(device).eval()
    attns = [b.attn for b in model.blocks]
    # the Performer itself: FLuRKA's keys are downsampled, so its φ(Q)φ(K)ᵀ is not the N×N matrix of Fig. 1
    if not all(isinstance(a, PerformerAttention) and a.name == "performer" for a in attns):
        names = sorted({a.name for a in attns})
        raise ValueError(f"{path}: Fig. 1 needs a Performer model (attention=performer); its attention is {names}")
    info = {"part": "model", "checkpoint": str(path), "steps": int(state["step"]), "task": task.name,
            "attention": state["meta"].get("attention"), "n_layers": len(attns), "n_heads": attns[0].n_heads,
            "d_model": attns[0].d_model, "n_features": attns[0].n_features, "seq_len": task.seq_len,
            "tokens_seen": int(state["step"]) * int(cfg["trainer"]["batch_size"]) * task.seq_len,
            "best_eval_loss": _finite_or_none(state["meta"].get("best_eval_loss"))}  # fmt: skip
    return model, task, info


@torch.no_grad()
def layer_inputs(model, batch: torch.Tensor) -> list[torch.Tensor]:
    """The input of every block's attention (after its LayerNorm) on `batch`."""
    captured: list[torch.Tensor] = []
    hooks = [b.attn.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach())) for b in model.blocks]
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
    return captured


# ------------------------------------------------------------------------------------------ report
def plot(rows: list[dict], path: Path) -> None:
    plt = plt_agg()
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(13, 5))
    spec = [r for r in rows if r["part"] == "spectrum"]
    cmap = plt.get_cmap("viridis")
    n_layers = max((r["layer"] for r in spec), default=0) + 1
    for r in spec:
        sv = [max(v, 1e-17) for v in r["singular_values"]]
        ax_s.plot(range(1, len(sv) + 1), sv, color=cmap(r["layer"] / max(n_layers - 1, 1)), lw=0.7, alpha=0.7,
                  label=f"layer {r['layer']}" if r["head"] == 0 else None)  # fmt: skip
    if spec:
        ax_s.axvline(spec[0]["n_features"], color="k", ls=":", lw=0.8, label="m (features)")
    ax_s.set(yscale="log", xscale="log", xlabel="index i", ylabel="σ_i / σ_1 (mean over sequences)",
             title="(a) φ(QW^Q)φ(KW^K)ᵀ of the trained Performer, every head")  # fmt: skip
    ax_s.legend(fontsize=7)
    err = [r for r in rows if r["part"] == "error"]
    d_ks = sorted({r["d_k"] for r in err if r["variant"] == "flurka_performer"})
    colors = plt.get_cmap("plasma")
    for i, d_k in enumerate(d_ks):
        c = colors(i / max(len(d_ks) - 1, 1))
        pts = sorted(
            (r["n_features"], r["rel_err"]) for r in err if r["variant"] == "flurka_performer" and r["d_k"] == d_k
        )
        ax_e.plot(*zip(*pts), marker="o", ms=3, color=c, label=f"FLuRKA d_k={d_k}")
        lin = [r["rel_err"] for r in err if r["variant"] == "linformer" and r["d_k"] == d_k]
        if lin and lin[0] > 0:
            ax_e.axhline(lin[0], color=c, ls=":", lw=0.8)
    perf = sorted((r["n_features"], r["rel_err"]) for r in err if r["variant"] == "performer")
    if perf:
        ax_e.plot(*zip(*perf), "k--", marker="s", ms=3, label="Performer (d_k = N)")
    ax_e.set(xscale="log", yscale="log", xlabel="random features m", ylabel="‖y − y_full‖_F / ‖y_full‖_F",
             title="(b) layer output error vs full attention (dotted: Linformer, m → ∞)")  # fmt: skip
    ax_e.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claims(rows: list[dict]) -> list[Claim]:
    spec = [r for r in rows if r["part"] == "spectrum"]
    err = [r for r in rows if r["part"] == "error" and r["variant"] == "flurka_performer"]
    out = []
    if spec:
        bound = min(spec[0]["N"], spec[0]["n_features"])
        r99 = statistics.median(r["rank_99"] for r in spec)
        out.append(Claim(
            "the kernelized attention matrix φ(QW^Q)φ(KW^K)ᵀ of a trained Performer has few distinct singular "
            "values (it is low-rank)", None, r99,
            f"median over {len(spec)} layer×head matrices of the rank holding 99% of Σσ², out of a possible "
            f"min(N, m) = {bound}; criterion: ≤ {LOW_RANK_SHARE:.0%} of it",
            ours_text=f"r₉₉ = {r99:g} of {bound}", holds=r99 <= LOW_RANK_SHARE * bound))  # fmt: skip
    if err:
        # what the math guarantees: more features bring FLuRKA to its m → ∞ limit (Linformer with the same E, F;
        # the feature estimator's error falls like 1/√m), and that limit is exact attention at d_k = N (E = F = I).
        # The error at fixed m need not fall with d_k: fewer, averaged keys also average the feature noise.
        d_ks, ms = sorted({r["d_k"] for r in err}), sorted({r["n_features"] for r in err})
        to_lin = {(r["d_k"], r["n_features"]): r["rel_err_to_linformer"] for r in err}
        lin = {r["d_k"]: r["rel_err"] for r in rows if r["part"] == "error" and r["variant"] == "linformer"}
        down_m = all(to_lin[d, ms[-1]] < to_lin[d, ms[0]] for d in d_ks)
        down_dk = lin[d_ks[-1]] < lin[d_ks[0]]
        worst = max(d_ks, key=lambda d: to_lin[d, ms[-1]] / max(to_lin[d, ms[0]], 1e-300))
        out.append(Claim(
            "Theorem 1: FLuRKA's output approaches full attention as d_k and the random features m grow", None,
            None,
            f"distance to the m → ∞ limit (Linformer, same E, F) falls from m={ms[0]} to m={ms[-1]} at every d_k: "
            f"{down_m} (least at d_k={worst}: {to_lin[worst, ms[0]]:.3g} → {to_lin[worst, ms[-1]]:.3g}); that "
            f"limit's error vs full falls from d_k={d_ks[0]} to d_k={d_ks[-1]}: {down_dk} ({lin[d_ks[0]]:.3g} → "
            f"{lin[d_ks[-1]]:.3g})",
            ours_text=f"FLuRKA → Linformer as m grows: {down_m}; Linformer → full as d_k → N: {down_dk}",
            holds=down_m and down_dk))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.py flurka_rank", description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="a few training steps on CPU on the bundled Shakespeare")
    p.add_argument("--checkpoint", type=Path, help="analyse this Performer GPT checkpoint instead of training one")
    p.add_argument("--run-dir", type=Path, help=f"where the Performer is trained, fresh each time (default {RUN_DIR}; "
                   "with --dry-run a temporary folder)")  # fmt: skip
    p.add_argument("--sequences", type=int, default=4, help="validation windows the spectra are averaged over")
    p.add_argument("--error-layer", type=int, help="the layer whose weights and inputs (b) uses (default: middle)")
    p.add_argument("--out", type=Path, default=Path("results/flurka_speed/fig1_rank"),
                   help="folder (or results JSON path) for results.json, .csv, .png and table.md")  # fmt: skip
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if device.type == "cpu" and not (args.dry_run or args.checkpoint):
        raise SystemExit("training the Performer needs a GPU (use --dry-run, or pass --checkpoint)")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint
        if ckpt is None:
            overrides = DRY_OVERRIDES if args.dry_run else TRAIN_OVERRIDES
            run_dir = args.run_dir or (Path(tmp) / "run" if args.dry_run else RUN_DIR)
            print(
                f"training a Performer GPT ({' '.join(overrides)}): ~{0.1 if args.dry_run else 3.5:g} min", flush=True
            )
            ckpt = train_performer(overrides, run_dir)
            print(f"trained; checkpoint {ckpt} (reuse it with --checkpoint)", flush=True)
        model, task, info = load_model(ckpt, device)
    batch = next(iter(task.eval_batches("valid", args.sequences, max_batches=1)))["input_ids"].to(device)
    inputs = layer_inputs(model, batch)
    rows = ResultsLog(results_path(args.out))  # rewritten after every layer: a run cut short keeps them
    rows.append({**info, "sequences": batch.shape[0]})
    for i, (block, x) in enumerate(zip(model.blocks, inputs)):
        rows += spectrum_rows(block.attn, x, i)
    n = batch.shape[1]
    layer = args.error_layer if args.error_layer is not None else len(inputs) // 2
    d_ks = [d for d in (n // 16, n // 8, n // 4, n // 2, n) if d > 0]
    features = [8, 32, 128] if args.dry_run else [16, 64, 256, 1024]
    rows += approximation_errors(model.blocks[layer].attn, inputs[layer], d_ks=d_ks, features=features,
                                 seeds=[0, 1, 2] if args.dry_run else [0, 1, 2, 3], layer=layer)  # fmt: skip
    paths = write_figure(
        args.out,
        rows,
        title="FLuRKA Fig. 1: the kernelized attention matrix is low-rank; FLuRKA's error vs d_k and m",
        setup=[
            f"model: {info['attention']} GPT, {info['n_layers']} layers × {info['n_heads']} heads, d_m="
            f"{info['d_model']}, m={info['n_features']} random features, trained {info['steps']} steps "
            f"({info['tokens_seen']:,} tokens) on {info['task']} (seq_len {info['seq_len']}), best validation "
            f"loss {info['best_eval_loss'] or float('nan'):.3f}; checkpoint `{info['checkpoint']}`",
            f"(a) {batch.shape[0]} validation windows of N={n}; φ = FAVOR+ in fp64 without stabilisers",
            f"(b) layer {layer}'s weights and inputs, non-causal; E = F = block averaging; d_k ∈ {d_ks}, m ∈ "
            f"{features}, feature seeds averaged",
        ],
        claims=claims(rows),
        plot=plot,
        dry_run=args.dry_run,
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
