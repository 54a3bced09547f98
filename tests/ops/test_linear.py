"""Linear attention: the O(N²) parallel form, the recurrence, the chunked torch path and the Triton kernels agree.

Every assertion compares against an independent form of the math (or finite differences), never against itself.
Triton cases run in the interpreter on CPU (tiny shapes, `interpret` marker) or on the GPU when there is one.
"""

from __future__ import annotations

import pytest
import torch

from flurka.ops._backend import triton_can_run
from flurka.ops.linear import (
    linear_attention,
    linear_attention_chunked,
    linear_attention_parallel,
    linear_attention_recurrent,
)
from flurka.ops.testing import assert_rel_close

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(B, N, H, Dk, Dv, *, Nk=None, dtype=torch.float64, device="cpu", normalize=True, s0=False):
    Nk = N if Nk is None else Nk
    q = torch.rand(B, N, H, Dk, dtype=dtype, device=device)
    k = torch.rand(B, Nk, H, Dk, dtype=dtype, device=device)
    v = torch.randn(B, Nk, H, Dv, dtype=dtype, device=device)
    state = torch.rand(B, H, Dk, Dv + int(normalize), dtype=dtype, device=device) if s0 else None
    return q, k, v, state


def _decay(H, on, dtype=torch.float64, device="cpu"):
    return (0.6 + 0.4 * torch.rand(H, dtype=dtype, device=device)) if on else None


def _chunked(chunk):
    return lambda *a, **kw: linear_attention_chunked(*a, chunk_size=chunk, **kw)


CASES = [
    # causal, decay, normalize, initial_state
    (True, False, True, False),
    (True, True, True, True),
    (True, True, False, False),
    (True, False, False, True),
    (False, False, True, False),
    (False, False, False, False),
]


@pytest.mark.parametrize("causal,decay,normalize,s0", CASES)
@pytest.mark.parametrize("N", [1, 13, 40])
def test_forms_agree_fp64(causal, decay, normalize, s0, N):
    q, k, v, state = _inputs(2, N, 3, 5, 4, normalize=normalize, s0=s0 and causal)
    kw = dict(causal=causal, decay=_decay(3, decay), normalize=normalize, scale=0.7, initial_state=state)
    o_ref, s_ref = linear_attention_parallel(q, k, v, output_final_state=True, **kw)
    for f in (linear_attention_recurrent, _chunked(8), _chunked(64), _chunked(1)):
        o, s = f(q, k, v, output_final_state=True, **kw)
        assert_rel_close(o, o_ref, 1e-10, "output")
        assert_rel_close(s, s_ref, 1e-10, "final state")


def test_parallel_matches_explicit_loop():
    """The parallel form against a direct transcription of the recurrence with a per-head decay."""
    B, N, H, D = 1, 6, 2, 3
    q, k, v, _ = _inputs(B, N, H, D, D)
    lam = torch.tensor([0.5, 0.9], dtype=torch.float64)
    o, _ = linear_attention_parallel(q, k, v, causal=True, decay=lam, normalize=True, eps=0.0)
    for h in range(H):
        S = torch.zeros(D, D, dtype=torch.float64)
        z = torch.zeros(D, dtype=torch.float64)
        for t in range(N):
            S = lam[h] * S + torch.outer(k[0, t, h], v[0, t, h])
            z = lam[h] * z + k[0, t, h]
            expect = (q[0, t, h] @ S) / (q[0, t, h] @ z)
            assert torch.allclose(o[0, t, h], expect, rtol=1e-12, atol=1e-12)


def test_noncausal_different_key_length():
    q, k, v, _ = _inputs(2, 11, 2, 4, 3, Nk=29)
    for normalize in (True, False):
        o_ref, _ = linear_attention_parallel(q, k, v, causal=False, normalize=normalize)
        # Independent: softmax-free attention matrix written out.
        A = torch.einsum("bqhd,bkhd->bhqk", q, k)
        num = torch.einsum("bhqk,bkhe->bqhe", A, v)
        expect = num / (A.sum(-1).transpose(1, 2)[..., None] + 1e-6) if normalize else num
        assert_rel_close(o_ref, expect, 1e-12, "non-causal")
        o, _ = linear_attention_chunked(q, k, v, causal=False, normalize=normalize)
        assert_rel_close(o, expect, 1e-12, "chunked non-causal")


@pytest.mark.parametrize("decay", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_split_sequence_equals_whole(decay, normalize):
    q, k, v, s0 = _inputs(1, 37, 2, 4, 5, normalize=normalize, s0=True)
    kw = dict(causal=True, decay=_decay(2, decay), normalize=normalize)
    for f in (linear_attention_parallel, _chunked(8)):
        o_all, s_all = f(q, k, v, initial_state=s0, output_final_state=True, **kw)
        o1, s1 = f(q[:, :20], k[:, :20], v[:, :20], initial_state=s0, output_final_state=True, **kw)
        o2, s2 = f(q[:, 20:], k[:, 20:], v[:, 20:], initial_state=s1, output_final_state=True, **kw)
        assert_rel_close(torch.cat([o1, o2], 1), o_all, 1e-12, "split output")
        assert_rel_close(s2, s_all, 1e-12, "split state")


def test_decay_one_equals_no_decay():
    q, k, v, _ = _inputs(1, 20, 2, 4, 4)
    o1, _ = linear_attention_chunked(q, k, v, causal=True, chunk_size=8)
    o2, _ = linear_attention_chunked(q, k, v, causal=True, decay=torch.ones(2, dtype=torch.float64), chunk_size=8)
    assert_rel_close(o2, o1, 1e-13, "decay=1")


@pytest.mark.parametrize("decay", [False, True])
def test_normaliser_gradients_against_recurrence(decay):
    """fla shipped normaliser-gradient bugs: dq/dk/dv with normalize=True vs the recurrence's autograd."""
    q, k, v, s0 = _inputs(1, 23, 2, 4, 3, s0=True)
    kw = dict(causal=True, decay=_decay(2, decay), normalize=True, scale=0.5, output_final_state=True)
    w = torch.randn(1, 23, 2, 3, dtype=torch.float64)
    ws = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    grads = []
    for f in (linear_attention_recurrent, linear_attention_parallel, _chunked(8)):
        ins = [t.clone().requires_grad_() for t in (q, k, v, s0)]
        o, s = f(*ins[:3], initial_state=ins[3], **kw)
        grads.append(torch.autograd.grad((o * w).sum() + (s * ws).sum(), ins))
    for g_par, g_chk, g_rec in zip(grads[1], grads[2], grads[0]):
        assert_rel_close(g_par, g_rec, 1e-10, "parallel grad")
        assert_rel_close(g_chk, g_rec, 1e-10, "chunked grad")


@pytest.mark.parametrize("causal,decay,normalize,s0", CASES)
def test_gradcheck_chunked(causal, decay, normalize, s0):
    q, k, v, state = _inputs(1, 7, 2, 3, 2, normalize=normalize, s0=s0 and causal)
    lam = _decay(2, decay)
    ins = [t.requires_grad_() for t in (q, k, v)] + ([state.requires_grad_()] if state is not None else [])

    def fn(*xs):
        st = xs[3] if len(xs) > 3 else None
        o, s = linear_attention_chunked(
            xs[0], xs[1], xs[2], causal=causal, decay=lam, normalize=normalize, initial_state=st,
            output_final_state=True, chunk_size=4,
        )  # fmt: skip
        return o, s

    assert torch.autograd.gradcheck(fn, ins)


def test_chunked_long_sequence_is_causal_and_small():
    """N = 16k in the chunked path: no N² buffer (16k² fp32 would be 1 GiB), and the prefix matches the truth."""
    q, k, v, _ = _inputs(1, 16384, 1, 4, 4, dtype=torch.float32)
    lam = torch.tensor([0.999])
    o, s = linear_attention_chunked(q, k, v, causal=True, decay=lam, output_final_state=True)
    o_ref, _ = linear_attention_parallel(q[:, :300], k[:, :300], v[:, :300], causal=True, decay=lam)
    assert_rel_close(o[:, :300], o_ref, 1e-5, "prefix")
    assert torch.isfinite(o).all() and torch.isfinite(s).all()


def test_future_tokens_do_not_leak():
    q, k, v, _ = _inputs(1, 30, 2, 4, 4)
    lam = _decay(2, True)
    o, _ = linear_attention_chunked(q, k, v, causal=True, decay=lam, chunk_size=8)
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[:, 17:] += 5.0
    v2[:, 17:] -= 3.0
    q2[:, 17:] *= 2.0
    o2, _ = linear_attention_chunked(q2, k2, v2, causal=True, decay=lam, chunk_size=8)
    torch.testing.assert_close(o2[:, :17], o[:, :17], rtol=0, atol=0)


def test_invalid_arguments():
    q, k, v, _ = _inputs(1, 5, 2, 3, 3)
    with pytest.raises(ValueError, match="decay"):
        linear_attention_parallel(q, k, v, causal=False, decay=torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="initial_state"):
        linear_attention_chunked(q, k, v, causal=False, initial_state=torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="as many keys"):
        linear_attention_chunked(q, k[:, :3], v[:, :3], causal=True)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        linear_attention_chunked(q, k, v, causal=True, decay=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="initial_state must be"):
        linear_attention_chunked(q, k, v, causal=True, initial_state=torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="4-d"):
        linear_attention(q[0], k[0], v[0], causal=True, backend="torch")


def test_entry_point_torch_backend():
    q, k, v, _ = _inputs(1, 9, 2, 3, 3)
    o, s = linear_attention(q, k, v, causal=True, backend="torch", output_final_state=True)
    o_ref, s_ref = linear_attention_parallel(q, k, v, causal=True, output_final_state=True)
    assert_rel_close(o, o_ref, 1e-12, "entry point")
    assert_rel_close(s, s_ref, 1e-12, "entry point state")
    assert o.dtype == q.dtype and s.shape == (1, 2, 3, 4)


def test_output_dtype_and_state_dtype():
    q, k, v, _ = _inputs(1, 9, 2, 4, 4, dtype=torch.bfloat16)
    o, s = linear_attention(q, k, v, causal=True, backend="torch", output_final_state=True)
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32


# --------------------------------------------------------------------------------------------------------------
# Triton kernels vs the fp32 O(N²) reference (interpreter on CPU; real kernels on a GPU)

needs_triton = pytest.mark.skipif(
    not triton_can_run(torch.empty(0, device=DEV)), reason="Triton can run neither on a GPU nor in the interpreter"
)

TRITON_CASES = [
    # N, Dk, Dv, causal, decay, normalize, s0, Nk, chunk
    (1, 16, 16, True, True, True, True, None, 64),
    (17, 32, 60, True, True, False, True, None, 64),
    (70, 16, 16, True, True, True, True, None, 64),
    (70, 60, 32, True, False, True, False, None, 16),
    (130, 60, 32, True, False, True, False, None, 64),
    (130, 16, 32, True, True, True, True, None, 32),
    (20, 200, 160, True, True, True, True, None, 16),  # Dk > 128 and Dv > 128: split-K / split-V partial sums
    (70, 60, 32, False, False, True, False, 17, 64),
    (17, 16, 60, False, False, False, False, 130, 64),
    (20, 160, 200, False, False, True, False, 33, 64),
]


def _triton_vs_reference(N, Dk, Dv, causal, decay, normalize, s0, Nk, chunk, *, noncausal_impl="auto"):
    from flurka.ops.linear.triton_linear import linear_attention_triton

    H = 2 if N <= 70 else 1
    q, k, v, state = _inputs(1, N, H, Dk, Dv, Nk=Nk, dtype=torch.float32, device=DEV, normalize=normalize,
                             s0=s0)  # fmt: skip
    lam = _decay(H, decay, torch.float32, DEV)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, N, H, Dv, generator=gen).to(DEV)
    ws = torch.randn(1, H, Dk, Dv + int(normalize), generator=gen).to(DEV)
    results = []
    for impl in ("ref", "triton"):
        ins = [t.clone().requires_grad_() for t in (q, k, v)] + ([state.clone().requires_grad_()] if s0 else [])
        kw = dict(causal=causal, decay=lam, normalize=normalize, scale=0.8, output_final_state=True,
                  initial_state=ins[3] if s0 else None)  # fmt: skip
        if impl == "ref":
            o, s = linear_attention_parallel(*ins[:3], **kw)
        else:
            o, s = linear_attention_triton(*ins[:3], chunk_size=chunk, noncausal_impl=noncausal_impl, **kw)
        grads = torch.autograd.grad((o * w).sum() + (s * ws).sum(), ins)
        results.append((o, s, *grads))
    names = ["output", "final state", "dq", "dk", "dv", "d initial_state"]
    for name, got, ref in zip(names, results[1], results[0]):
        assert_rel_close(got.float(), ref.float(), 1e-4, name)


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("N,Dk,Dv,causal,decay,normalize,s0,Nk,chunk", TRITON_CASES)
def test_triton_matches_reference(N, Dk, Dv, causal, decay, normalize, s0, Nk, chunk):
    _triton_vs_reference(N, Dk, Dv, causal, decay, normalize, s0, Nk, chunk)


@pytest.mark.interpret
@needs_triton
def test_triton_noncausal_cublas_formulation():
    _triton_vs_reference(70, 60, 32, False, False, True, False, 17, 64, noncausal_impl="cublas")


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("normalize", [False, True])
def test_triton_split_sequence_equals_whole(normalize):
    from flurka.ops.linear.triton_linear import linear_attention_triton

    q, k, v, s0 = _inputs(1, 90, 2, 16, 16, dtype=torch.float32, device=DEV, normalize=normalize, s0=True)
    kw = dict(causal=True, decay=_decay(2, True, torch.float32, DEV), normalize=normalize, output_final_state=True)
    o_all, s_all = linear_attention_triton(q, k, v, initial_state=s0, **kw)
    o1, s1 = linear_attention_triton(q[:, :37], k[:, :37], v[:, :37], initial_state=s0, **kw)
    o2, s2 = linear_attention_triton(q[:, 37:], k[:, 37:], v[:, 37:], initial_state=s1, **kw)
    assert_rel_close(torch.cat([o1, o2], 1), o_all, 1e-5, "split output")
    assert_rel_close(s2, s_all, 1e-5, "split state")


@pytest.mark.interpret
@needs_triton
def test_triton_entry_point_and_no_leak():
    q, k, v, _ = _inputs(1, 70, 2, 16, 16, dtype=torch.float32, device=DEV)
    lam = _decay(2, True, torch.float32, DEV)
    o, _ = linear_attention(q, k, v, causal=True, decay=lam, backend="triton")
    o_ref, _ = linear_attention_parallel(q, k, v, causal=True, decay=lam)
    assert_rel_close(o, o_ref, 1e-5, "entry point")
    k2 = k.clone()
    k2[:, 65:] += 1.0  # a change in the second chunk must not reach the first 65 outputs
    o2, _ = linear_attention(q, k2, v, causal=True, decay=lam, backend="triton")
    torch.testing.assert_close(o2[:, :65], o[:, :65], rtol=0, atol=0)


@pytest.mark.interpret
@needs_triton
def test_triton_rejects_trainable_decay():
    from flurka.ops.linear.triton_linear import linear_attention_triton

    q, k, v, _ = _inputs(1, 5, 2, 16, 16, dtype=torch.float32, device=DEV)
    lam = torch.full((2,), 0.9, device=DEV, requires_grad=True)
    with pytest.raises(ValueError, match="constant"):
        linear_attention_triton(q, k, v, causal=True, decay=lam)
