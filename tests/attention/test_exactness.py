"""Each variant against an independent reference: the math, or a variant it must reduce to."""

from __future__ import annotations

import pytest
import torch

from flurka.ops.testing import rel_err
from tests.attention.conftest import make


def explicit_softmax_attention(q, k, v, *, causal, keep=None):
    """softmax(QKᵀ/√d)V on [B, N, H, D], spelled out in fp64; rows that see no key give 0."""
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / q.shape[-1] ** 0.5
    n_q, n_k = q.shape[1], k.shape[1]
    visible = torch.ones(n_q, n_k, dtype=torch.bool)
    if causal:
        visible = torch.arange(n_k)[None, :] <= torch.arange(n_q)[:, None] + (n_k - n_q)
    visible = visible[None, None].expand(q.shape[0], 1, n_q, n_k)
    if keep is not None:
        visible = visible & keep[:, None, None, :]
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.nan_to_num(scores.softmax(-1))
    return torch.einsum("bhij,bjhd->bihd", probs, v)


def heads(m, t):
    return m.split_heads(t)


@pytest.mark.parametrize("impl", ["sdpa", "math"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_full_equals_explicit_softmax(impl, causal, padded, x64):
    m = make("full", causal=causal, impl=impl)
    keep = None
    if padded:  # left padding in row 0 makes early causal queries see no key at all
        keep = torch.ones(2, 11, dtype=torch.bool)
        keep[0, :3] = False
        keep[1, 7:] = False
    q, k, v = (heads(m, p(x64)) for p in (m.q_proj, m.k_proj, m.v_proj))
    ref = m.o_proj(explicit_softmax_attention(q, k, v, causal=causal, keep=keep).reshape(2, 11, 8))
    out = m(x64, padding_mask=keep)
    assert rel_err(out, ref) < 1e-12


def test_full_cross_attention_equals_explicit(x64):
    m = make("full", causal=False)
    ctx = torch.randn(2, 5, 8, dtype=torch.float64)
    q = heads(m, m.q_proj(x64))
    k, v = heads(m, m.k_proj(ctx)), heads(m, m.v_proj(ctx))
    ref = m.o_proj(explicit_softmax_attention(q, k, v, causal=False).reshape(2, 11, 8))
    assert rel_err(m(x64, context=ctx), ref) < 1e-12


def test_alibi_sdpa_equals_math(x64):
    a = make("full", causal=True, positional="alibi", impl="sdpa")
    b = make("full", causal=True, positional="alibi", impl="math")
    b.load_state_dict(a.state_dict())
    assert rel_err(a(x64), b(x64)) < 1e-12
    plain = make("full", causal=True)
    plain.load_state_dict(a.state_dict())
    assert rel_err(a(x64), plain(x64)) > 1e-3  # the bias really changes the output


def set_identity(down, n):
    with torch.no_grad():
        down.E.copy_(torch.eye(n, dtype=down.E.dtype))
        if down.F is not None:
            down.F.copy_(torch.eye(n, dtype=down.F.dtype))


def test_linformer_identity_projection_equals_full(x64):
    lin = make("linformer", causal=False, max_len=11, downsample_len=11)
    full = make("full", causal=False)
    full.load_state_dict(lin.state_dict(), strict=False)
    set_identity(lin.downsample, 11)
    assert rel_err(lin(x64), full(x64)) < 1e-12


@pytest.mark.parametrize("padded", [False, True])
def test_linformer_equals_its_formula_with_random_projections(padded, x64):
    """softmax(Q (E K)ᵀ/√d) (F V), spelled out, with E, F random and padded keys left out of E K and F V."""
    lin = make("linformer", causal=False, max_len=11, downsample_len=4)
    keep = None
    if padded:
        keep = torch.ones(2, 11, dtype=torch.bool)
        keep[1, 6:] = False
    q, k, v = (heads(lin, p(x64)) for p in (lin.q_proj, lin.k_proj, lin.v_proj))
    w = keep[:, :, None, None].double() if padded else 1.0
    E, F = lin.downsample.E, lin.downsample.F
    k_low, v_low = (torch.einsum("kn,bnhd->bkhd", M, t * w) for M, t in ((E, k), (F, v)))
    want = lin.o_proj(explicit_softmax_attention(q, k_low, v_low, causal=False).reshape(2, 11, 8))
    assert rel_err(lin(x64, padding_mask=keep), want) < 1e-12


def test_linformer_in_bf16_runs_its_gemms_in_bf16():
    """No fp32 GEMM on bf16 inputs (they had no tensor cores in the bf16 benchmarks): every matmul of a bf16
    Linformer layer takes bf16 operands, and the output stays within bf16 rounding of the fp64 layer's."""
    from torch.utils._python_dispatch import TorchDispatchMode

    matmuls = {"mm", "bmm", "addmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu"}

    class GemmDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in matmuls:
                self.seen.append((func.overloadpacket.__name__, {a.dtype for a in args if torch.is_tensor(a)}))
            return func(*args, **(kwargs or {}))

    lin64 = make("linformer", causal=False, max_len=11, downsample_len=4, d_model=32)
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    lin16 = make("linformer", causal=False, max_len=11, downsample_len=4, d_model=32).bfloat16()
    lin16.load_state_dict(lin64.state_dict())
    with GemmDtypes() as mode:
        got = lin16(x.bfloat16())
    assert mode.seen and all(dtypes == {torch.bfloat16} for _, dtypes in mode.seen), mode.seen
    assert got.dtype == torch.bfloat16 and rel_err(got.double(), lin64(x)) < 2e-2


KERNEL_OF = {"flurka_performer": "performer", "flurka_rnn": "linear", "flurka_eva": "eva"}


@pytest.mark.parametrize("flurka", list(KERNEL_OF))
@pytest.mark.parametrize("order", ["before_projection", "after_projection"])
def test_flurka_identity_downsampling_equals_kernel_method_noncausal(flurka, order, x64):
    n = x64.shape[1]
    kernel = make(KERNEL_OF[flurka], causal=False, **({"chunk_size": 3} if flurka == "flurka_eva" else {}))
    extra = {"eva_chunk_size": 3} if flurka == "flurka_eva" else {}
    fl = make(flurka, causal=False, max_len=n, downsample_len=n, downsample=order, **extra)
    missing = fl.load_state_dict(kernel.state_dict(), strict=False).missing_keys
    assert all(k.startswith("downsample.") for k in missing), missing
    set_identity(fl.downsample, n)
    assert rel_err(fl(x64), kernel(x64)) < 1e-10


@pytest.mark.parametrize("flurka", list(KERNEL_OF))
def test_flurka_identity_chunk_summaries_equal_kernel_method_causal(flurka, x64):
    chunk = 4
    kernel = make(KERNEL_OF[flurka], causal=True, **({} if flurka == "flurka_rnn" else {"chunk_size": chunk}))
    fl = make(flurka, causal=True, chunk_size=chunk, rows_per_chunk=chunk)
    fl.load_state_dict(kernel.state_dict(), strict=False)
    set_identity(fl.downsample, chunk)
    assert rel_err(fl(x64), kernel(x64)) < 1e-10


@pytest.mark.parametrize("flurka", list(KERNEL_OF))
@pytest.mark.parametrize("padded", [False, True])
def test_flurka_before_projection_equals_after_projection(flurka, padded, x64):
    before = make(flurka, causal=False, downsample="before_projection")
    after = make(flurka, causal=False, downsample="after_projection")
    after.load_state_dict(before.state_dict())
    with torch.no_grad():  # biases make the orders differ unless (E·1)·b is accounted for
        for p in (before.k_proj.bias, before.v_proj.bias):
            p.normal_()
        after.load_state_dict(before.state_dict())
    keep = None
    if padded:
        keep = torch.ones(2, 11, dtype=torch.bool)
        keep[1, 6:] = False
    assert rel_err(before(x64, padding_mask=keep), after(x64, padding_mask=keep)) < 1e-12


def test_per_head_downsampling_needs_after_projection():
    with pytest.raises(ValueError, match="after_projection"):
        make("flurka_rnn", causal=False, share_heads=False, downsample="before_projection")
    m = make("flurka_rnn", causal=False, share_heads=False, downsample="after_projection")
    assert m.downsample.E.dim() == 3


def test_performer_error_shrinks_with_more_features():
    """FAVOR+ estimates softmax attention with error ~ 1/√m: averaged over feature draws, 64× more features
    must cut the error several-fold (an unbiased estimator with 1/√m error would cut it ~8×)."""
    torch.manual_seed(0)
    x = torch.randn(2, 32, 16, dtype=torch.float64) * 0.5
    full = make("full", causal=False, d_model=16, n_heads=2, max_len=32)
    errors = []
    for m_feat in (8, 64, 512):
        errs = []
        for seed in range(6):
            perf = make(
                "performer",
                causal=False,
                d_model=16,
                n_heads=2,
                max_len=32,
                n_features=m_feat,
                feature_seed=seed,
            )
            perf.load_state_dict(full.state_dict(), strict=False)
            errs.append(rel_err(perf(x), full(x)))
        errors.append(sum(errs) / len(errs))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < errors[0] / 3.0, errors


def test_scfa_without_sparsity_equals_causal_full(x64):
    full = make("full", causal=True)
    for name, opts in (("scfa_qk", {"drop": 0.0}), ("scfa_hash", {"n_buckets": 1})):
        m = make(name, causal=True, **opts)
        m.load_state_dict(full.state_dict())
        assert rel_err(m(x64), full(x64)) < 1e-12, name


def test_scfa_qk_dropped_queries_output_zero():
    m = make("scfa_qk", causal=True, drop=0.5)
    q, k, v = (torch.randn(1, 9, 2, 4, dtype=torch.float64) for _ in range(3))
    from flurka.ops.scfa import scfa_qk

    q_keep = torch.rand(1, 9, 2) > 0.5
    k_keep = torch.ones(1, 9, 2, dtype=torch.bool)
    out = scfa_qk(q, k, v, q_keep, k_keep, backend="torch")
    assert (out[~q_keep] == 0).all() and m.drop == 0.5


def test_lightning_without_decay_equals_causal_linear(x64):
    lin = make("linear", causal=True)
    light = make("lightning", causal=True, decay=1.0, feature_map="elu", normalize=True, output_norm=False)
    light.load_state_dict(lin.state_dict())
    assert rel_err(light(x64), lin(x64)) < 1e-12


def test_lightning_decay_matches_recurrent_form(x64):
    """The module's output equals the token-by-token recurrence kv_t = λ kv_{t−1} + k_tᵀv_t, o_t = q_t kv_t."""
    m = make("lightning", causal=True, output_norm=False)
    q, k, v = (m.split_heads(p(x64)) for p in (m.q_proj, m.k_proj, m.v_proj))
    lam = m.decay
    B, N, H, D = q.shape
    state = torch.zeros(B, H, D, D, dtype=torch.float64)
    outs = []
    for t in range(N):
        state = lam[None, :, None, None] * state + torch.einsum("bhd,bhe->bhde", k[:, t], v[:, t])
        outs.append(torch.einsum("bhd,bhde->bhe", q[:, t], state))
    ref = m.o_proj(torch.stack(outs, 1).reshape(B, N, H * D))
    assert rel_err(m(x64), ref) < 1e-12


def test_eva_single_chunk_is_exact_softmax(x64):
    """With one chunk covering the sequence, EVA's local window is everything: exact softmax attention."""
    for causal in (False, True):
        eva = make("eva", causal=causal, chunk_size=11)
        full = make("full", causal=causal)
        full.load_state_dict(eva.state_dict(), strict=False)
        assert rel_err(eva(x64), full(x64)) < 1e-12


def test_rope_scores_depend_only_on_relative_position():
    from flurka.attention.positional import RotaryEmbedding

    rope = RotaryEmbedding(8)
    q = torch.randn(1, 1, 1, 8).expand(1, 6, 1, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 6, 1, 8)
    s = torch.einsum("bihd,bjhd->ij", rope(q), rope(k))
    for shift in range(1, 4):  # every diagonal is constant
        d = torch.diagonal(s, offset=shift)
        assert torch.allclose(d, d[0].expand_as(d), atol=1e-5)
    scaled = RotaryEmbedding(8, scale=2.0)
    assert torch.allclose(scaled(q)[:, 2], rope(q)[:, 1], atol=1e-6)  # interpolation halves the angle


def test_full_passes_no_mask_tensor_when_none_is_needed(x64, monkeypatch):
    """Without padding or a bias, `full` hands SDPA is_causal instead of a [B, 1, N, N] mask: an explicit mask rules
    out SDPA's flash and cuDNN backends and their causal block skipping (issue: full at 1k ran at 18% MFU)."""
    import torch.nn.functional as F

    seen = []
    real = F.scaled_dot_product_attention

    def recording(*args, attn_mask=None, is_causal=False, **kwargs):
        seen.append((attn_mask is None, is_causal))
        return real(*args, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    make("full", causal=True, impl="sdpa")(x64)
    make("full", causal=False, impl="sdpa")(x64)
    make("full", causal=True, impl="sdpa")(x64, padding_mask=torch.ones(2, 11, dtype=torch.bool))
    assert seen == [(True, True), (True, False), (False, False)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["full", "performer", "lightning"])
def test_the_fused_qkv_projection_equals_three_projections(name, bias, x64):
    """Self-attention's one GEMM on the concatenated weights gives what q_proj, k_proj and v_proj give apart,
    and the gradients reach the three Linear layers as they would."""
    m = make(name, causal=name == "lightning", bias=bias)
    q, k, v = m.project_qkv(x64, None)
    want = [heads(m, p(x64)) for p in (m.q_proj, m.k_proj, m.v_proj)]
    for got, ref in zip((q, k, v), want):
        assert rel_err(got, ref) < 1e-14
    (q.sum() + 2 * k.sum() + 3 * v.sum()).backward()
    fused = [p.weight.grad.clone() for p in (m.q_proj, m.k_proj, m.v_proj)]
    m.zero_grad()
    (want[0].sum() + 2 * want[1].sum() + 3 * want[2].sum()).backward()
    for got, p in zip(fused, (m.q_proj, m.k_proj, m.v_proj)):
        assert rel_err(got, p.weight.grad) < 1e-14
