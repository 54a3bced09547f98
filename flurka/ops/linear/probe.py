"""GPU probe for the linear-attention and feature kernels (a script, not a test): host overhead per call,
fused Triton feature maps vs their PyTorch references, and the autotuner's chosen configs.

    python -m flurka.ops.linear.probe [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from flurka.bench.timing import bench_ms, fwd_bwd_fn


def host_overhead_us(n_calls: int = 200) -> dict[str, float]:
    """Wall µs per call at a tiny shape, where the GPU work is negligible: what limits tokens/s at small N."""
    from flurka.ops.linear import linear_attention
    from flurka.ops.linear.triton_linear import linear_attention_triton

    q = torch.randn(1, 64, 1, 128, device="cuda", dtype=torch.bfloat16)
    lam = torch.full((1,), 0.99, device="cuda")
    out = {}
    for name, fn in {
        "linear_attention(decay)": lambda: linear_attention(q, q, q, causal=True, decay=lam, normalize=False),
        "linear_attention_triton(decay)": lambda: linear_attention_triton(
            q, q, q, causal=True, decay=lam, normalize=False
        ),
        "linear_attention_triton(no decay)": lambda: linear_attention_triton(q, q, q, causal=True, normalize=False),
    }.items():
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n_calls):
            fn()
        torch.cuda.synchronize()
        out[name] = (time.perf_counter() - t) / n_calls * 1e6
    return out


def features() -> list[dict]:
    from flurka.ops.features import reference as ref
    from flurka.ops.features.triton_features import elu_plus_one_triton, favor_plus_features_triton
    from flurka.ops.testing import rms_ratio

    rows = []
    x = torch.randn(4, 8192, 32, 128, device="cuda", dtype=torch.bfloat16).requires_grad_()
    for impl, fn in (("torch", ref.elu_plus_one), ("triton", elu_plus_one_triton)):
        err = rms_ratio(fn(x), ref.elu_plus_one(x.float()))
        rows.append(dict(op="elu+1", impl=impl, shape=list(x.shape), fwd_ms=bench_ms(lambda fn=fn: fn(x)),
                         fwd_bwd_ms=bench_ms(fwd_bwd_fn(lambda fn=fn: fn(x))), rms_vs_fp32=err))  # fmt: skip
    x = (torch.randn(4, 8192, 8, 64, device="cuda") * 64**-0.25).bfloat16().requires_grad_()
    w = ref.orthogonal_gaussian_projection(256, 64, device="cuda")
    for is_query in (True, False):
        truth = ref.favor_plus_features(x.float(), w, is_query=is_query)
        for impl, fn in (("torch", ref.favor_plus_features), ("triton", favor_plus_features_triton)):

            def f(fn=fn, is_query=is_query):
                return fn(x, w, is_query=is_query)

            rows.append(dict(op=f"favor+ {'query' if is_query else 'key'}", impl=impl, shape=list(x.shape), m=256,
                             fwd_ms=bench_ms(f), fwd_bwd_ms=bench_ms(fwd_bwd_fn(f)),
                             rms_vs_fp32=rms_ratio(f(), truth)))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    res: dict = {"host_overhead_us": host_overhead_us(), "features": features()}
    from flurka.ops.linear import triton_linear

    res["autotune"] = {
        f"{k[0]} {dict(k[1])}": {str(kk): str(cfg) for kk, cfg in getattr(t, "cache", {}).items()}
        for k, t in triton_linear._tuned.items()
    }
    for k, v in res["host_overhead_us"].items():
        print(f"overhead {k:40s} {v:8.1f} µs/call")
    for r in res["features"]:
        print(f"{r['op']:13s} {r['impl']:6s} fwd {r['fwd_ms']:7.3f} ms  fwd+bwd {r['fwd_bwd_ms']:7.3f} ms  "
              f"rms {r['rms_vs_fp32']:.1e}")  # fmt: skip
    for k, v in res["autotune"].items():
        print("autotune", k, v)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
