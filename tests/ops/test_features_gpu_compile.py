"""The fused feature-map kernels fit a Hopper GPU's shared memory at every feature count they accept (m ≤ 512),
checked without a GPU by compiling each launch for sm_90 (flurka.ops.gpu_compile). With three pipeline stages
and 32-row tiles, m = 512 asked 392-408 KB (limit 227 KB), which the check reproduces. In a subprocess: this
test session defines the kernels for the Triton interpreter."""

from __future__ import annotations

import pytest

from tests.helpers import run_script

SCRIPT = """
import torch
from flurka.ops.features import triton_features as TF
from flurka.ops.features.triton_features import (
    elu_plus_one_triton, favor_plus_causal_features_triton, favor_plus_features_triton)
from flurka.ops.gpu_compile import compile_for_hopper, compiling_jit_launches
with compiling_jit_launches() as launches:
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 70, 3, 64, dtype=dtype, requires_grad=True)
        elu_plus_one_triton(x, dtype=dtype).float().sum().backward()
        for m in (64, 256, 512):
            for is_query in (True, False):
                x = torch.randn(2, 70, 3, 64, dtype=dtype, requires_grad=True)
                favor_plus_features_triton(x, torch.randn(m, 64), is_query=is_query, dtype=dtype).sum().backward()
                phi, _ = favor_plus_causal_features_triton(x, torch.randn(m, 64), is_query=is_query, dtype=dtype)
                phi.float().sum().backward()
for x in launches:
    print("LAUNCH", x.kernel, x.constexprs.get("BM"), x.num_stages, x.shared)
favor = next(x for x in launches if x.kernel == "_favor_kernel" and x.constexprs["BM"] == 512)
# the old choice for m = 512: 32-row tiles, three stages
out = torch.empty(2, 70, 3, 512)
args = dict(x=torch.randn(2, 70, 3, 64), w=torch.randn(512, 64), shift=torch.empty(512), out=out, z32=out,
            cmax=torch.empty(6), amax=torch.empty(2, 70, 3), N=70, H=3, D=64, M=512, eps=0.0,
            **{**favor.constexprs, "BR": 32})
print("OLD", compile_for_hopper(TF._favor_kernel, args, 4, 3).shared)
"""


@pytest.mark.slow
def test_feature_kernels_fit_hopper_shared_memory():
    proc = run_script(["-c", SCRIPT], env={"TRITON_INTERPRET": "0"}, timeout=900)  # raises with its output
    launches = [line.split() for line in proc.stdout.splitlines() if line.startswith("LAUNCH")]
    assert {kernel for _, kernel, *_ in launches} >= {"_elu1_fwd_kernel", "_elu1_bwd_kernel", "_favor_kernel"}
    assert {bm for _, kernel, bm, *_ in launches if kernel == "_favor_kernel"} == {"64", "256", "512"}
    assert all(int(shared) <= 227 * 1024 for *_, shared in launches), proc.stdout
    old = next(line for line in proc.stdout.splitlines() if line.startswith("OLD"))
    assert int(old.split()[1]) > 227 * 1024  # the check does catch the configuration that would not fit
