"""SCFA: references against explicit per-row fp64 math, the LSH helpers, the sort plan, and the Triton kernels
(interpreter on CPU, tiny shapes, fp32) against the references, outputs and gradients of q, k, v within 1e-4."""

from __future__ import annotations

import pytest
import torch

from flurka.ops.flash import attention_reference, flash_attention
from flurka.ops.scfa import (
    hash_buckets,
    random_rotations,
    scfa_hash,
    scfa_hash_reference,
    scfa_qk,
    scfa_qk_reference,
)
from flurka.ops.scfa.ops import KEY_PAD, make_plan
from flurka.ops.testing import assert_rel_close

TOL = 1e-4
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def explicit(q, k, v, visible, scale):
    """Row-by-row fp64 softmax over the keys `visible(b, h, i, j)` allows; rows with none stay 0."""
    B, N, H, _ = q.shape
    out = torch.zeros(B, N, H, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                js = [j for j in range(N) if visible(b, h, i, j)]
                if not js:
                    continue
                s = torch.tensor([float(q[b, i, h].double() @ k[b, j, h].double()) * scale for j in js],
                                 dtype=torch.float64)  # fmt: skip
                p = torch.softmax(s, 0)
                out[b, i, h] = sum(p[t] * v[b, j, h].double() for t, j in enumerate(js))
    return out


def _qkv(B, N, H, D, grad=False, device="cpu", dtype=torch.float32):
    return [torch.randn(B, N, H, D, device=device, dtype=dtype, requires_grad=grad) for _ in range(3)]


def test_qk_reference_matches_explicit():
    q, k, v = _qkv(2, 9, 2, 8, dtype=torch.float64)
    qk, kk = torch.rand(2, 9, 2) > 0.4, torch.rand(2, 9, 2) > 0.4
    got = scfa_qk_reference(q, k, v, qk, kk, scale=0.4)
    want = explicit(q, k, v, lambda b, h, i, j: j <= i and bool(kk[b, j, h]) and bool(qk[b, i, h]), 0.4)
    assert_rel_close(got, want, 1e-12, "qk reference")
    assert (got[~qk] == 0).all()


def test_hash_reference_matches_explicit():
    q, k, v = _qkv(2, 10, 2, 8, dtype=torch.float64)
    qb, kb = torch.randint(0, 3, (2, 10, 2)), torch.randint(0, 3, (2, 10, 2))
    got = scfa_hash_reference(q, k, v, qb, kb)
    want = explicit(q, k, v, lambda b, h, i, j: j <= i and int(qb[b, i, h]) == int(kb[b, j, h]), 8**-0.5)
    assert_rel_close(got, want, 1e-12, "hash reference")


def test_references_empty_rows_are_zero_with_zero_grads():
    q, k, v = _qkv(1, 6, 1, 4, grad=True)
    qb = torch.tensor([0, 0, 1, 1, 2, 2]).view(1, 6, 1)
    kb = torch.tensor([1, 0, 0, 0, 0, 0]).view(1, 6, 1)  # query 0 (bucket 0) sees no key yet; bucket 2 never does
    o = scfa_hash_reference(q, k, v, qb, kb)
    assert torch.isfinite(o).all()
    assert (o[0, [0, 4, 5]] == 0).all() and (o[0, [1, 2, 3]] != 0).any()
    o.sum().backward()
    assert torch.isfinite(q.grad).all() and (q.grad[0, [0, 4, 5]] == 0).all()


def test_random_rotations_and_hash_buckets():
    g = torch.Generator().manual_seed(3)
    R = random_rotations(3, 16, 8, generator=g)
    assert R.shape == (3, 16, 4) and R.dtype == torch.float32
    torch.testing.assert_close(R.norm(dim=1), torch.ones(3, 4))
    x = torch.randn(2, 7, 3, 16)
    b = hash_buckets(x, R)
    assert b.shape == (2, 7, 3) and b.dtype == torch.int64 and b.min() >= 0 and b.max() < 8
    for bi, n, h in [(0, 0, 0), (1, 6, 2), (0, 3, 1)]:
        proj = [float(x[bi, n, h] @ R[h, :, c]) for c in range(4)]
        scores = proj + [-p for p in proj]
        assert int(b[bi, n, h]) == max(range(8), key=scores.__getitem__)
    assert random_rotations(3, 16, 1).shape == (3, 16, 0)
    assert (hash_buckets(x, random_rotations(3, 16, 1)) == 0).all()
    for bad in (0, 3, -2):
        with pytest.raises(ValueError, match="n_buckets"):
            random_rotations(3, 16, bad)
    with pytest.raises(ValueError, match="rotations"):
        hash_buckets(x, torch.randn(3, 8, 2))


def test_plan_is_a_stable_sort_with_padded_indices():
    qb = torch.tensor([2, 0, 2, 1, 0, 2]).view(1, 6, 1)
    plan = make_plan(qb, qb, None, None)
    assert plan.pos_q.tolist() == [[1, 4, 3, 0, 2, 5]]  # by bucket, original order kept inside a bucket
    keep_q = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool).view(1, 6, 1)
    keep_k = torch.tensor([0, 1, 1, 0, 1, 1], dtype=torch.bool).view(1, 6, 1)
    zeros = torch.zeros(1, 6, 1, dtype=torch.int64)
    plan = make_plan(zeros, zeros, keep_q, keep_k)
    assert plan.pos_q.tolist() == [[0, 2, 3]]  # compacted to the kept count
    assert plan.pos_k.tolist() == [[1, 2, 4, 5]]
    r = plan.ranges
    # query at position 0 sees no kept key; 2 sees keys 1, 2; 3 sees keys 1, 2
    assert r.ks.tolist() == [[0, 0, 0]] and r.ke.tolist() == [[0, 2, 2]]
    keep_k2 = keep_k.clone()
    keep_k2[0, 5, 0] = False
    keep_q2 = torch.ones(1, 6, 1, dtype=torch.bool)
    keep_q2[0, 1] = False
    plan = make_plan(zeros, zeros, keep_q2, keep_k2)  # different kept counts per side: pads appear on the key side
    assert plan.pos_k.tolist() == [[1, 2, 4]]
    two = make_plan(zeros.expand(1, 6, 2), zeros.expand(1, 6, 2), torch.cat([keep_q, keep_q2], 2),
                    torch.cat([keep_k, keep_k2], 2))  # fmt: skip
    assert two.pos_q.tolist()[0][3:] == [-1, -1] and two.pos_k.tolist()[1][-1] == KEY_PAD


def test_bad_inputs_raise():
    q, k, v = _qkv(1, 5, 2, 8)
    with pytest.raises(ValueError, match="q_keep"):
        scfa_qk(q, k, v, torch.ones(1, 5, 1, dtype=torch.bool), torch.ones(1, 5, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="integer"):
        scfa_hash(q, k, v, torch.zeros(1, 5, 2), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="self-attention"):
        scfa_qk(q, k[:, :4], v[:, :4], torch.ones(1, 5, 2, dtype=torch.bool), torch.ones(1, 5, 2, dtype=torch.bool))


# --------------------------------------------------------------------------------------------------------------
# Triton kernels (interpreter on CPU; real kernels in fp32 on a GPU when there is one)
# --------------------------------------------------------------------------------------------------------------
def _check_against(fn_triton, fn_ref, ins, do):
    o = fn_triton(*ins)
    grads = torch.autograd.grad(o, ins, do)
    o_ref = fn_ref(*ins)
    grads_ref = torch.autograd.grad(o_ref, ins, do)
    assert o.dtype == ins[0].dtype
    assert_rel_close(o, o_ref, TOL, "out")
    for name, g, gr in zip("qkv", grads, grads_ref):
        assert_rel_close(g, gr, TOL, f"d{name}")
    return o


@pytest.mark.interpret
@pytest.mark.parametrize(("B", "H", "N", "D", "drop"), [(1, 1, 1, 16, 0.0), (1, 2, 17, 16, 0.3), (2, 1, 33, 32, 0.5),
                                                         (1, 1, 70, 60, 0.5), (1, 1, 70, 16, 0.8)])  # fmt: skip
def test_triton_qk_matches_reference(B, H, N, D, drop):
    ins = _qkv(B, N, H, D, grad=True, device=DEV)
    qk = torch.rand(B, N, H, device=DEV) >= drop
    kk = torch.rand(B, N, H, device=DEV) >= drop
    do = torch.randn(B, N, H, D, device=DEV)
    o = _check_against(
        lambda q, k, v: scfa_qk(q, k, v, qk, kk, backend="triton"),
        lambda q, k, v: scfa_qk_reference(q, k, v, qk, kk),
        ins,
        do,
    )
    assert (o[~qk] == 0).all(), "dropped queries must output exactly 0"


@pytest.mark.interpret
@pytest.mark.parametrize(("B", "H", "N", "D", "nb"), [(1, 1, 17, 16, 2), (1, 2, 33, 32, 4), (2, 1, 70, 60, 8),
                                                       (1, 1, 70, 16, 16)])  # fmt: skip
def test_triton_hash_matches_reference(B, H, N, D, nb):
    ins = _qkv(B, N, H, D, grad=True, device=DEV)
    R = random_rotations(H, D, nb, device=DEV)
    qb, kb = hash_buckets(ins[0].detach(), R), hash_buckets(ins[1].detach(), R)
    do = torch.randn(B, N, H, D, device=DEV)
    _check_against(
        lambda q, k, v: scfa_hash(q, k, v, qb, kb, backend="triton"),
        lambda q, k, v: scfa_hash_reference(q, k, v, qb, kb),
        ins,
        do,
    )


@pytest.mark.interpret
def test_triton_no_sparsity_equals_causal_flash():
    q, k, v = _qkv(1, 33, 2, 32, device=DEV)
    ref = attention_reference(q, k, v, causal=True)
    flash = flash_attention(q, k, v, causal=True, backend="triton")
    keep = torch.ones(1, 33, 2, dtype=torch.bool, device=DEV)
    one = hash_buckets(q, random_rotations(2, 32, 1, device=DEV))
    assert_rel_close(scfa_qk(q, k, v, keep, keep, backend="triton"), ref, TOL, "s=0")
    assert_rel_close(scfa_hash(q, k, v, one, one, backend="triton"), ref, TOL, "nb=1")
    assert_rel_close(flash, ref, TOL, "flash")


@pytest.mark.interpret
def test_triton_rows_without_keys_are_zero_without_nan():
    q, k, v = _qkv(1, 20, 1, 16, grad=True, device=DEV)
    qb = torch.zeros(1, 20, 1, dtype=torch.int64, device=DEV)
    qb[0, 10:] = 1
    kb = torch.full_like(qb, 5)
    kb[0, 12:] = 0  # bucket-0 queries (positions < 10) see no key; bucket-1 queries see none either
    o = scfa_hash(q, k, v, qb, kb, backend="triton")
    assert torch.isfinite(o).all() and (o == 0).all()
    o.sum().backward()
    assert all(torch.isfinite(t.grad).all() and (t.grad == 0).all() for t in (q, k, v))
    # every query dropped, or every key dropped
    q2, k2, v2 = _qkv(1, 9, 1, 16, grad=True, device=DEV)
    none = torch.zeros(1, 9, 1, dtype=torch.bool, device=DEV)
    some = torch.rand(1, 9, 1, device=DEV) > 0.5
    for a, b in ((none, some), (some, none)):
        o = scfa_qk(q2, k2, v2, a, b, backend="triton")
        assert (o == 0).all()
        (g,) = torch.autograd.grad(o.sum(), (q2,))
        assert (g == 0).all()
