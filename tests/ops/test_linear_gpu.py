"""GPU tier: bf16 Triton linear attention vs an fp32 reference on the same (bf16-rounded) inputs.

Metric: fla's RMS ratio ≤ 5e-3 for outputs, final states and gradients, plus finiteness.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("GPU tier: needs a CUDA GPU (run through the device tool)", allow_module_level=True)

os.environ.setdefault("FLURKA_AUTOTUNE", "0")  # many shapes, correctness only: no tuning time

from flurka.ops.linear import linear_attention, linear_attention_chunked, linear_attention_parallel
from flurka.ops.testing import rms_ratio

pytestmark = pytest.mark.gpu
TOL = 5e-3


def _check(N, D, *, causal, decay, normalize, s0, Nk=None, noncausal_impl="auto", B=1, H=2):
    from flurka.ops.linear.triton_linear import linear_attention_triton

    Nk = N if Nk is None else Nk
    dev = "cuda"
    # Non-negative features when normalising (as after elu+1); signed otherwise (as in Lightning).
    mk = torch.rand if normalize else torch.randn
    q = mk(B, N, H, D, device=dev).bfloat16()
    k = mk(B, Nk, H, D, device=dev).bfloat16()
    v = torch.randn(B, Nk, H, D, device=dev).bfloat16()
    lam = (1 - torch.exp2(-torch.linspace(2, 8, H, device=dev))) if decay else None
    state = torch.rand(B, H, D, D + int(normalize), device=dev) if s0 else None
    w = torch.randn(B, N, H, D, device=dev)
    ws = torch.randn(B, H, D, D + int(normalize), device=dev)
    out = []
    for impl in ("ref", "triton"):
        dtype = torch.float32 if impl == "ref" else torch.bfloat16
        ins = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        st = state.clone().requires_grad_() if s0 else None
        kw = dict(causal=causal, decay=lam, normalize=normalize, scale=D**-0.5, initial_state=st,
                  output_final_state=True)  # fmt: skip
        if impl == "ref":
            f = linear_attention_parallel if N * Nk <= 2**22 else linear_attention_chunked
            o, s = f(*ins, **kw)
        else:
            o, s = linear_attention_triton(*ins, noncausal_impl=noncausal_impl, **kw)
            assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
        grads = torch.autograd.grad((o.float() * w).sum() + (s * ws).sum(), ins + ([st] if s0 else []))
        out.append((o, s, *grads))
    for name, got, ref in zip(["o", "state", "dq", "dk", "dv", "ds0"], out[1], out[0]):
        assert torch.isfinite(got).all(), f"{name}: non-finite"
        err = rms_ratio(got.float(), ref.float())
        assert err <= TOL, f"{name}: RMS ratio {err:.2e} > {TOL:.0e}"


@pytest.mark.parametrize("N", [63, 500, 1000, 4096])
@pytest.mark.parametrize("D", [64, 128, 60])
@pytest.mark.parametrize(
    "decay,normalize,s0",
    [(True, False, False), (True, True, True), (False, True, False), (False, False, True)],
)
def test_causal_bf16(N, D, decay, normalize, s0):
    _check(N, D, causal=True, decay=decay, normalize=normalize, s0=s0)


@pytest.mark.parametrize("N", [63, 500, 1000, 4096])
@pytest.mark.parametrize("D", [64, 128, 60])
@pytest.mark.parametrize("impl", ["triton", "cublas"])
def test_noncausal_bf16(N, D, impl):
    _check(N, D, causal=False, decay=False, normalize=True, s0=False, Nk=max(1, N // 3), noncausal_impl=impl)


def test_flurka_shape_head_dim_325():
    """FLuRKA Fig. 3's d_h = 325 with d_k = 1500 keys (not a power of two: padding + masking)."""
    _check(7000, 325, causal=False, decay=False, normalize=True, s0=False, Nk=1500, B=1, H=2)
    _check(1000, 325, causal=True, decay=False, normalize=True, s0=True, B=1, H=1)


def test_auto_backend_runs_triton_on_cuda():
    q = torch.rand(1, 100, 2, 64, device="cuda", dtype=torch.bfloat16)
    o, _ = linear_attention(q, q, q, causal=True)
    o_ref, _ = linear_attention_parallel(q.float(), q.float(), q.float(), causal=True)
    assert rms_ratio(o.float(), o_ref) <= TOL
