"""Developer tool (GPU): time every block-size config of each kernel at a few shapes and print a ranking.

`python -m flurka.ops.flash.tune [--budget-s 200] [--tma]`. Each config is forced by giving the autotuner a
one-element config list, so the timed code is exactly the production launch path; `--tma` times each tile's TMA
twin (tensor-descriptor loads) beside it. Not a test and not a benchmark result.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import triton

from flurka.bench.timing import bench_ms
from flurka.ops.flash import _kernels as K
from flurka.ops.flash import core

GRID = [
    (bm, bn, w, s)
    for bm, bn, w, s in itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3, 4))
    if not (w == 8 and bm < 128 and bm * bn < 128 * 128)
]


def _force(kernel, cfg) -> None:
    bm, bn, w, s, *tma = cfg
    config = triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    kernel.configs = K._with_tma([config]) if tma and tma[0] else [config]
    kernel.cache = {}


KERNELS = ("fwd", "dkdv", "dq")


def sweep(
    B: int, N: int, H: int, D: int, causal: bool, configs: list, budget_s: float, kernels: tuple = KERNELS
) -> dict[str, list]:
    q, k, v, do = (torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    scale = D**-0.5
    bd = core._block_d(D)
    # the objects core.py launches at this head dim for these (contiguous, TMA-eligible) inputs
    launched = {name: K.kernel(name, bd, tma=core._descriptors(q, ranges=None) is not None) for name in KERNELS}
    defaults = {name: list(kernel.configs) for name, kernel in launched.items()}
    o, lse = core._forward(q, k, v, causal, scale, None, None)
    out: dict[str, list] = {}
    fixed = {"fwd": (128, 64, 8, 3), "dkdv": (64, 128, 8, 3), "dq": (128, 64, 8, 3)}
    for name in kernels:
        deadline = time.time() + budget_s / len(kernels)
        for other, cfg in fixed.items():
            _force(launched[other], cfg)
        rows = []
        for cfg in configs:
            if time.time() > deadline:
                break
            _force(launched[name], cfg)
            try:
                if name == "fwd":
                    ms = bench_ms(lambda: core._forward(q, k, v, causal, scale, None, None))
                else:
                    ms = bench_ms(lambda: core._backward(do, q, k, v, o, lse, causal, scale, None, None))
            except Exception as e:  # out of shared memory etc.: report and go on
                print(f"  {name} {cfg}: failed {type(e).__name__}")
                continue
            rows.append((ms, cfg))
        rows.sort()
        out[name] = rows
        print(f"B={B} N={N} H={H} D={D} causal={causal} {name} ({len(rows)} timed): "
              + ", ".join(f"{c}={m:.3f}" for m, c in rows[:6]))  # fmt: skip
    for name, cfgs in defaults.items():
        launched[name].configs = cfgs
        launched[name].cache = {}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget-s", type=float, default=200.0)
    ap.add_argument("--N", type=int, default=4096)
    ap.add_argument("--kernels", default=",".join(KERNELS))
    ap.add_argument("--causal-only", action="store_true")
    ap.add_argument("--tma", action="store_true", help="time each tile's TMA twin too (tile, tma) -> ms")
    args = ap.parse_args(argv)
    t0 = time.time()
    B = 16384 // args.N
    plan = [(128, True, 0.3), (64, True, 0.3), (128, False, 0.2), (64, False, 0.2)]
    if args.causal_only:
        plan = [(128, True, 0.5), (64, True, 0.5)]
    for D, causal, share in plan:
        configs = GRID if causal else GRID[::2]
        if args.tma:
            configs = [(*c, tma) for c in configs for tma in (False, True)]
        sweep(B, args.N, 16, D, causal, configs, args.budget_s * share, tuple(args.kernels.split(",")))
    print(f"tuning took {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
