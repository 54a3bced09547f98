"""GPU tier for SCFA: bf16 Triton vs the fp32 reference on the same bf16-rounded inputs, error at most 2x that
of PyTorch's own bf16 attention with the same mask (plus a small floor), gradients too; s=0 / one bucket equals
our causal flash attention; the forward is deterministic."""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("GPU tier: needs a CUDA GPU (run through the device tool)", allow_module_level=True)

from flurka.ops.flash import flash_attention
from flurka.ops.flash.reference import masked_softmax_attention
from flurka.ops.scfa import (
    hash_buckets,
    random_rotations,
    scfa_hash,
    scfa_hash_reference,
    scfa_qk,
    scfa_qk_reference,
)
from flurka.ops.testing import rel_err

pytestmark = pytest.mark.gpu
FLOOR = 1e-4


def _mask(kind, a, b, N):
    i = torch.arange(N, device="cuda")
    causal = (i[None, :] <= i[:, None])[None, None]
    if kind == "qk":
        return causal & a.permute(0, 2, 1)[..., :, None] & b.permute(0, 2, 1)[..., None, :]
    return causal & (a.permute(0, 2, 1)[..., :, None] == b.permute(0, 2, 1)[..., None, :])


def _torch_bf16(q, k, v, mask):
    """PyTorch attention computed in bf16 (scores, softmax and product in bf16), empty rows 0."""
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    return masked_softmax_attention(qh, kh, vh, mask, q.shape[-1] ** -0.5).transpose(1, 2)


def _case(kind, N, D, param, B=1, H=2):
    q, k, v, do = (torch.randn(B, N, H, D, device="cuda").bfloat16() for _ in range(4))
    if kind == "qk":
        a = torch.rand(B, N, H, device="cuda") >= param
        b = torch.rand(B, N, H, device="cuda") >= param
        ours_fn, ref_fn = scfa_qk, scfa_qk_reference
    else:
        R = random_rotations(H, D, param, device="cuda")
        a, b = hash_buckets(q, R), hash_buckets(k, R)
        ours_fn, ref_fn = scfa_hash, scfa_hash_reference
    mask = _mask(kind, a, b, N)
    res = {}
    for impl in ("ref", "ours", "torch"):
        dtype = torch.float32 if impl == "ref" else torch.bfloat16
        ins = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        if impl == "ref":
            o = ref_fn(*ins, a, b)
        elif impl == "ours":
            o = ours_fn(*ins, a, b, backend="triton")
        else:
            o = _torch_bf16(*ins, mask)
        res[impl] = (o, *torch.autograd.grad(o, ins, do.to(dtype)))
    return res, (q, k, v, a, b)


@pytest.mark.parametrize("N", [63, 500, 1000, 4096])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize(("kind", "param"), [("qk", 0.3), ("qk", 0.7), ("hash", 4), ("hash", 16)])
def test_bf16_error_within_2x_pytorch(kind, param, N, D):
    res, _ = _case(kind, N, D, param)
    for name, ours, ref, pt in zip(["o", "dq", "dk", "dv"], res["ours"], res["ref"], res["torch"]):
        assert torch.isfinite(ours).all(), f"{name}: non-finite"
        e_ours, e_pt = rel_err(ours.float(), ref), rel_err(pt.float(), ref)
        print(f"{kind}({param}) N={N} D={D} {name}: ours {e_ours:.2e} torch-bf16 {e_pt:.2e}")
        assert e_ours <= 2 * e_pt + FLOOR, f"{name}: error {e_ours:.2e} > 2 x PyTorch bf16 error {e_pt:.2e}"


@pytest.mark.parametrize("N", [500, 4096])
def test_no_sparsity_equals_causal_flash(N):
    q, k, v = (torch.randn(2, N, 4, 64, device="cuda").bfloat16() for _ in range(3))
    flash = flash_attention(q, k, v, causal=True, backend="triton").float()
    keep = torch.ones(2, N, 4, dtype=torch.bool, device="cuda")
    one = hash_buckets(q, random_rotations(4, 64, 1, device="cuda"))
    for o in (scfa_qk(q, k, v, keep, keep, backend="triton"), scfa_hash(q, k, v, one, one, backend="triton")):
        assert rel_err(o.float(), flash) < 2e-3


def test_dropped_queries_are_zero_and_forward_deterministic():
    q, k, v = (torch.randn(2, 3000, 4, 64, device="cuda").bfloat16() for _ in range(3))
    qk = torch.rand(2, 3000, 4, device="cuda") > 0.5
    kk = torch.rand(2, 3000, 4, device="cuda") > 0.5
    o = scfa_qk(q, k, v, qk, kk, backend="triton")
    assert (o[~qk] == 0).all()
    for _ in range(20):
        assert torch.equal(scfa_qk(q, k, v, qk, kk, backend="triton"), o)
    R = random_rotations(4, 64, 8, device="cuda")
    qb, kb = hash_buckets(q, R), hash_buckets(k, R)
    oh = scfa_hash(q, k, v, qb, kb, backend="triton")
    for _ in range(20):
        assert torch.equal(scfa_hash(q, k, v, qb, kb, backend="triton"), oh)
