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
    """Each feature map as the layers call it (`flurka.ops.features.ops`, written in the attention op's bf16)
    on the Triton and the torch backend; the torch rows are the fp32 reference then the cast, the layers'
    path before the fused kernels were wired in."""
    from flurka.ops.features import ops
    from flurka.ops.features import reference as ref
    from flurka.ops.testing import rms_ratio

    bf16 = torch.bfloat16
    rows = []

    def add(op, shape, truth, make, **extra):
        for impl in ("torch", "triton"):
            fn = make(impl)
            times = dict(fwd_ms=bench_ms(fn), fwd_bwd_ms=bench_ms(fwd_bwd_fn(fn)))
            rows.append(dict(op=op, impl=impl, shape=list(shape), **times, rms_vs_fp32=rms_ratio(fn(), truth), **extra))

    x = torch.randn(4, 8192, 32, 128, device="cuda", dtype=bf16).requires_grad_()
    add("elu+1", x.shape, ref.elu_plus_one(x.float()),
        lambda impl: lambda: ops.elu_plus_one(x, dtype=bf16, backend=impl))  # fmt: skip
    x = (torch.randn(4, 8192, 8, 64, device="cuda") * 64**-0.25).bfloat16().requires_grad_()
    w = ref.orthogonal_gaussian_projection(256, 64, device="cuda")
    for is_query in (True, False):
        who = "query" if is_query else "key"
        add(f"favor+ {who}", x.shape, ref.favor_plus_features(x.float(), w, is_query=is_query),
            lambda impl, q=is_query: lambda: ops.favor_plus_features(x, w, is_query=q, dtype=bf16, backend=impl),
            m=256)  # fmt: skip
        add(f"causal favor+ {who}", x.shape, ref.favor_plus_causal_features(x.float(), w, is_query=is_query)[0],
            lambda impl, q=is_query: lambda: ops.favor_plus_causal_features(
                x, w, is_query=q, dtype=bf16, backend=impl)[0], m=256)  # fmt: skip
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
        print(f"{r['op']:20s} {r['impl']:6s} fwd {r['fwd_ms']:7.3f} ms  fwd+bwd {r['fwd_bwd_ms']:7.3f} ms  "
              f"rms {r['rms_vs_fp32']:.1e}")  # fmt: skip
    for k, v in res["autotune"].items():
        print("autotune", k, v)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
