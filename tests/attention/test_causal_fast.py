"""Causal kernel attention on the linear-attention op (chunks folded into the batch, summaries as initial
states) against the previous log-space implementation, the fp64 reference; the Triton path (interpreter on
CPU) against the PyTorch path; summaries from K/V against re-projecting X; bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from flurka.attention import build_attention
from flurka.attention.causal_kernel import causal_kernel_attention, chunk_entry_states, fold_chunks
from flurka.attention.causal_kernel_reference import causal_kernel_attention_reference
from flurka.ops._backend import triton_can_run
from flurka.ops.features import (
    elu_plus_one,
    favor_exponent,
    favor_plus_causal_features,
    log_elu_plus_one,
    orthogonal_gaussian_projection,
)
from flurka.ops.testing import assert_rel_close
from tests.attention.conftest import make

DEV = "cuda" if torch.cuda.is_available() else "cpu"
H, D = 2, 4

# N, chunk, rows: N not a multiple of the chunk, N < chunk, N = 1, one whole chunk, rows = chunk, many chunks
SHAPES = [(13, 4, 2), (3, 4, 2), (1, 4, 3), (8, 8, 2), (12, 4, 4), (17, 2, 1)]


def _inputs(n, chunk, rows, dtype=torch.float64, device="cpu"):
    """Pre-feature q, k, v and summary keys/values (requires_grad), [B=2, N, H, D] and [2, C, rows, H, D]."""
    c = -(-n // chunk)
    shapes = [(2, n, H, D)] * 3 + [(2, c, rows, H, D)] * 2
    return [torch.randn(s, dtype=dtype, device=device).requires_grad_() for s in shapes]


def _keep(n: int) -> torch.Tensor:
    """Padding in the middle and at the end of row 1; every query still sees a key (its first token is kept),
    so the eps-free reference never divides 0 by 0."""
    keep = torch.ones(2, n, dtype=torch.bool)
    keep[1, 1:3] = False
    keep[1, n - n // 3 :] = False
    keep[:, 0] = True
    return keep


def _new(q, k, v, sk, sv, *, chunk, keep=None, eps=0.0, backend="torch", favor=None):
    """`favor`: a FAVOR+ projection [M, D] (causal FAVOR+ features, per-query stabilised); None: elu+1."""
    if favor is None:
        fq, fk, fs, scale = elu_plus_one(q), elu_plus_one(k), elu_plus_one(sk), None
    else:
        (fq, a), (fk, _) = (favor_plus_causal_features(t, favor, is_query=isq) for t, isq in ((q, True), (k, False)))
        fs = favor_plus_causal_features(sk.flatten(1, 2), favor, is_query=False)[0].view(*sk.shape[:-1], -1)
        scale = torch.exp(-a)
    return causal_kernel_attention(
        fq, fk, v, chunk_size=chunk, summary_phi=fs, summary_v=sv, key_keep=keep, eps=eps, query_scale=scale,
        backend=backend,
    )  # fmt: skip


def _reference(q, k, v, sk, sv, *, chunk, keep=None, eps=0.0, favor=None):
    if favor is None:
        lq, lk, ls = log_elu_plus_one(q), log_elu_plus_one(k), log_elu_plus_one(sk)
    else:
        lq, lk = favor_exponent(q, favor), favor_exponent(k, favor)
        ls = favor_exponent(sk.flatten(1, 2), favor).view(*sk.shape[:-1], -1)
    return causal_kernel_attention_reference(
        lq, lk, v, chunk_size=chunk, summary_logfeat=ls, summary_v=sv, key_keep=keep, eps=eps
    )


def _outputs_and_grads(fn, ins, w):
    out = fn(*ins)
    return [out, *torch.autograd.grad((out * w).sum(), ins, allow_unused=True, materialize_grads=True)]


NAMES = ["output", "dq", "dk", "dv", "d summary k", "d summary v"]


def _favor_projection(m: int = 8) -> torch.Tensor:
    return orthogonal_gaussian_projection(m, D, generator=torch.Generator().manual_seed(3)).double()


@pytest.mark.parametrize("n,chunk,rows", SHAPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("features", ["elu", "favor"])
def test_matches_the_logspace_reference_fp64(n, chunk, rows, padded, features):
    """Without eps both compute the exact normalised kernel sum: they must agree to rounding, gradients too
    (FAVOR+: the data-independent key shift and the per-query stabiliser cancel exactly)."""
    ins = _inputs(n, chunk, rows)
    keep = _keep(n) if padded and n > 2 else None
    favor = _favor_projection() if features == "favor" else None
    w = torch.randn(2, n, H, D, dtype=torch.float64)
    got = _outputs_and_grads(lambda *t: _new(*t, chunk=chunk, keep=keep, favor=favor), ins, w)
    want = _outputs_and_grads(lambda *t: _reference(*t, chunk=chunk, keep=keep, favor=favor), ins, w)
    for name, a, e in zip(NAMES, got, want, strict=True):
        if name.startswith("d summary") and -(-n // chunk) == 1:
            assert a.abs().max() == 0 and e.abs().max() == 0, name  # one chunk: no query sees a summary
            continue
        # relative, or absolute where the exact value is 0 (N = 1: the output is v, dq = dk = 0 up to rounding)
        assert (a - e).norm() <= 1e-10 * max(e.norm().item(), 1.0), name


def _explicit(phi_q, phi_k, v, phi_s, sv, chunk):
    """Numerator [B, N, H, Dv] and denominator [B, N, H], spelled out: own chunk up to t + earlier summaries."""
    n = phi_q.shape[1]
    chunk_of = torch.arange(n) // chunk
    own = (chunk_of[:, None] == chunk_of[None, :]) & (torch.arange(n)[None, :] <= torch.arange(n)[:, None])
    a_own = torch.einsum("bthm,bjhm->bhtj", phi_q, phi_k) * own
    seen = torch.arange(phi_s.shape[1])[None, :] < chunk_of[:, None]  # [N, C]
    a_sum = torch.einsum("bthm,bcrhm->bhtcr", phi_q, phi_s) * seen[None, None, :, :, None]
    num = torch.einsum("bhtj,bjhd->bthd", a_own, v) + torch.einsum("bhtcr,bcrhd->bthd", a_sum, sv)
    return num, (a_own.sum(-1) + a_sum.sum((-1, -2))).transpose(1, 2)


def test_default_eps_is_the_plain_normaliser():
    """With eps the new path divides by den + eps (the plain linear-attention normaliser, as the non-causal
    and `linear` variants). The reference capped eps at eps times the query's largest term when that term was
    below 1; the two differ by O(eps / den) at most."""
    n, chunk, rows = 13, 4, 2
    q, k, v, sk, sv = _inputs(n, chunk, rows)
    with torch.no_grad():
        got = _new(q, k, v, sk, sv, chunk=chunk, eps=1e-6)
        want = _reference(q, k, v, sk, sv, chunk=chunk, eps=1e-6)
        num, den = _explicit(elu_plus_one(q), elu_plus_one(k), v, elu_plus_one(sk), sv, chunk)
        plain = num / (den[..., None] + 1e-6)
    assert_rel_close(got, plain, 1e-12, "plain normaliser")
    assert_rel_close(got, want, 1e-6, "reference")


@pytest.mark.parametrize("n,chunk", [(13, 4), (1, 4)])
def test_query_scale_normaliser(n, chunk):
    """With `query_scale` (queries scaled by it) the normaliser is den + eps·min(1, den) in unscaled units: the
    plain eps for den ≥ 1, a relative one below. Scaling a query together with its query_scale changes
    nothing (what a per-query stabiliser relies on), and a query that sees nothing gives 0, not NaN."""
    q, k, v, sk, sv = _inputs(n, chunk, 2)
    phi_q, phi_k, phi_s = elu_plus_one(q), elu_plus_one(k), elu_plus_one(sk)
    phi_q = phi_q * torch.rand(2, n, H, 1, dtype=torch.float64) ** 4  # some denominators below 1
    kw = dict(chunk_size=chunk, summary_phi=phi_s, summary_v=sv, backend="torch", eps=0.1)
    ones = torch.ones(2, n, H, dtype=torch.float64)
    got = causal_kernel_attention(phi_q, phi_k, v, query_scale=ones, **kw)
    num, den = _explicit(phi_q, phi_k, v, phi_s, sv, chunk)
    assert n == 1 or ((den < 1).any() and (den > 1).any())  # both regimes of the normaliser
    assert_rel_close(got, num / (den + 0.1 * den.clamp(max=1.0))[..., None], 1e-12, "normaliser")
    scale = torch.rand(2, n, H, dtype=torch.float64) + 0.5
    scaled = causal_kernel_attention(phi_q * scale[..., None], phi_k, v, query_scale=scale, **kw)
    assert_rel_close(scaled, got, 1e-13, "scaled query")
    nothing = causal_kernel_attention(phi_q, phi_k * 0, v, query_scale=ones, **{**kw, "summary_phi": phi_s * 0})
    assert torch.equal(nothing, torch.zeros_like(nothing))


def test_summaries_equal_to_the_keys_give_plain_causal_kernel_attention():
    """rows = chunk with each chunk's own keys as its summary: plain causal linear attention (no folding)."""
    n, chunk = 13, 4
    q, k, v, _, _ = _inputs(n, chunk, chunk)
    sk, sv = (fold_chunks(t, chunk).view(2, -1, chunk, H, D) for t in (k, v))
    # zero-padded summary keys of the last chunk would be elu+1 = 1, not 0: that chunk reaches no query anyway
    got = _new(q, k, v, sk, sv, chunk=chunk, eps=1e-6)
    plain = causal_kernel_attention(elu_plus_one(q), elu_plus_one(k), v, eps=1e-6, backend="torch")
    assert_rel_close(got, plain, 1e-12)


def test_entry_states_are_the_exclusive_prefix_sums():
    phi_s = torch.rand(2, 3, 2, H, D, dtype=torch.float64)
    sv = torch.randn(2, 3, 2, H, D, dtype=torch.float64)
    s0 = chunk_entry_states(phi_s, sv).view(2, 3, H, D, D + 1)
    assert s0[:, 0].abs().max() == 0
    torch.testing.assert_close(s0[:, 2, ..., :D], torch.einsum("bcrhm,bcrhd->bhmd", phi_s[:, :2], sv[:, :2]))
    torch.testing.assert_close(s0[:, 2, ..., D], phi_s[:, :2].sum((1, 2)))


def test_entry_states_stay_fp32_under_bf16_autocast():
    """Autocast runs einsum in bf16 even on fp32 tensors: the states came out bf16 with 2e-3 relative error (the
    normaliser's z column included) until the prefix sums ran with autocast off. Now fp32, at fp32's error."""
    torch.manual_seed(0)
    phi_s = torch.rand(2, 16, 8, H, 32)  # elu+1-like features of 16 chunks' summaries
    sv = torch.randn(2, 16, 8, H, 32).bfloat16()
    truth = chunk_entry_states(phi_s.double(), sv.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s0 = chunk_entry_states(phi_s, sv)
    assert s0.dtype == torch.float32
    assert_rel_close(s0, truth, 1e-6, "entry states under autocast")


def test_an_empty_sequence_and_shapes():
    q = torch.rand(2, 0, H, D)
    out = causal_kernel_attention(q, q, torch.rand(2, 0, H, 3), summary_phi=torch.rand(2, 0, 1, H, D),
                                  summary_v=torch.rand(2, 0, 1, H, 3))  # fmt: skip
    assert out.shape == (2, 0, H, 3)
    with pytest.raises(ValueError, match="all 2 chunks"):
        ins = _inputs(5, 4, 1)
        _new(*ins[:3], ins[3][:, :1], ins[4][:, :1], chunk=4)


# --------------------------------------------------------------------------------------------------------------
# modules


@pytest.mark.parametrize("order", ["before_projection", "after_projection"])
def test_summaries_from_kv_equal_projected_downsampled_x(order):
    """E_c K_c = (E_c X_c) W_k + (E_c 1) b: the summaries taken from K, V equal downsampling X and projecting
    (the before-projection order of the paper) for every chunk a query can see."""
    m = make("flurka_rnn", causal=True, downsample=order, chunk_size=4, rows_per_chunk=2)
    with torch.no_grad():
        for p in (m.k_proj.bias, m.v_proj.bias):
            p.normal_()
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    k, v = m.split_heads(m.k_proj(x)), m.split_heads(m.v_proj(x))
    sk, sv = m._chunk_summaries(k, v)
    for which, got, proj in (("k", sk, m.k_proj), ("v", sv, m.v_proj)):
        E = m.downsample.matrix(which, 4)
        xc = x[:, :12].reshape(2, 3, 4, 8)
        want = torch.einsum("rl,bcld->bcrd", E, xc) @ proj.weight.T + E.sum(-1)[:, None] * proj.bias
        assert_rel_close(got[:, :3], want.view(2, 3, 2, 2, 4), 1e-12, which)


def test_flurka_rnn_orders_agree_causally(x64):
    before = make("flurka_rnn", causal=True, downsample="before_projection")
    after = make("flurka_rnn", causal=True, downsample="after_projection")
    after.load_state_dict(before.state_dict())
    assert_rel_close(before(x64), after(x64), 1e-13)


@pytest.mark.parametrize("name", ["flurka_rnn", "flurka_performer", "performer"])
def test_bf16_autocast_forward_backward_is_finite(name):
    torch.manual_seed(0)
    m = build_attention(name, 32, 4, causal=True, max_len=96, backend="torch", chunk_size=16)
    x = torch.randn(2, 80, 32, requires_grad=True)
    keep = torch.ones(2, 80, dtype=torch.bool)
    keep[1, 50:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x, padding_mask=keep)
    y.float().square().mean().backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(x.grad).all()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


# --------------------------------------------------------------------------------------------------------------
# Triton path (interpreter on CPU; the real kernel on a GPU) against the PyTorch path

needs_triton = pytest.mark.skipif(
    not triton_can_run(torch.empty(0, device=DEV)), reason="Triton can run neither on a GPU nor in the interpreter"
)


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("n,chunk,favor", [(40, 16, False), (40, 16, True), (9, 16, False)])
def test_triton_path_matches_the_torch_path(n, chunk, favor):
    """fp32, outputs and gradients of q, k, v and the summaries (these reach the output only through the op's
    initial_state, so this checks the Triton backward's initial-state gradient too)."""
    torch.manual_seed(0)
    dk = 16  # the kernels' smallest block
    shapes = [(1, n, H, dk)] * 3 + [(1, -(-n // chunk), 3, H, dk)] * 2
    ins = [(torch.randn(s) * 0.5).to(DEV).requires_grad_() for s in shapes]
    keep = torch.ones(1, n, dtype=torch.bool, device=DEV)
    keep[0, 5:7] = False
    proj = orthogonal_gaussian_projection(16, dk, generator=torch.Generator().manual_seed(3)).to(DEV) if favor else None
    w = torch.randn(1, n, H, dk, device=DEV)
    results = [
        _outputs_and_grads(lambda *t, b=b: _new(*t, chunk=chunk, keep=keep, eps=1e-6, backend=b, favor=proj), ins, w)
        for b in ("torch", "triton")
    ]
    for name, got, want in zip(NAMES, results[1], results[0], strict=True):
        assert_rel_close(got, want, 1e-4, name)


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("name", ["flurka_rnn", "flurka_performer", "performer"])
def test_triton_module_has_no_future_leak(name):
    torch.manual_seed(0)
    m = build_attention(name, 32, 2, causal=True, max_len=48, backend="triton", chunk_size=16).to(DEV)
    x = torch.randn(1, 40, 32, device=DEV)
    y = x.clone()
    y[:, 21:] = torch.randn(1, 19, 32, device=DEV) * 50.0
    with torch.no_grad():
        out_x, out_y = m(x), m(y)
    assert torch.equal(out_x[:, :21], out_y[:, :21])
    assert not torch.allclose(out_x[:, 21:], out_y[:, 21:])
