"""Properties every variant must have: causality, correct gradients, finite bf16, clear errors, transfer."""

from __future__ import annotations

import pytest
import torch

from flurka.attention import VARIANTS, build_attention, variants_supporting
from flurka.models.gpt import GPT
from flurka.models.transfer import transfer_weights
from tests.attention.conftest import CAUSAL_VARIANTS, NONCAUSAL_VARIANTS, make


def seeded(module, seed=0):
    """SCFA draws its sparsity at random each call: re-seed so repeated calls compute one function."""

    def run(x):
        torch.manual_seed(seed)
        return module(x)

    return run


@pytest.mark.parametrize("name", CAUSAL_VARIANTS)
def test_no_leakage_from_future_tokens(name):
    n, t = 13, 6
    m = make(name, causal=True)
    x = torch.randn(2, n, 8, dtype=torch.float64)
    y = x.clone()
    y[:, t + 1 :] = torch.randn(2, n - t - 1, 8, dtype=torch.float64) * 50.0  # large: would upset a global stabiliser
    out_x, out_y = seeded(m)(x), seeded(m)(y)
    assert torch.equal(out_x[:, : t + 1], out_y[:, : t + 1]) or torch.allclose(
        out_x[:, : t + 1], out_y[:, : t + 1], rtol=0, atol=1e-12
    )
    assert not torch.allclose(out_x[:, t + 1 :], out_y[:, t + 1 :])  # the future does matter to the future


@pytest.mark.parametrize("name", NONCAUSAL_VARIANTS)
def test_noncausal_variants_see_the_whole_sequence(name):
    m = make(name, causal=False)
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    y = x.clone()
    y[:, -1] += 1.0
    assert not torch.allclose(m(x)[:, 0], m(y)[:, 0])


VALID_MODES = [(n, c) for n, cls in VARIANTS.items() for c in (False, True)
               if (cls.supports_causal if c else cls.supports_noncausal)]  # fmt: skip


@pytest.mark.parametrize("name,causal", VALID_MODES)
def test_gradients_match_finite_differences(name, causal):
    m = make(name, causal=causal, d_model=4, n_heads=2, max_len=9)
    x = torch.randn(1, 9, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded(m), (x,), eps=1e-6, atol=1e-6, rtol=1e-4)
    # and the parameters receive finite gradients
    seeded(m)(x).pow(2).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", list(VARIANTS))
def test_bf16_large_inputs_stay_finite(name):
    cls = VARIANTS[name]
    causal = cls.supports_causal
    m = build_attention(name, 32, 4, causal=causal, max_len=64, backend="torch").to(torch.bfloat16).train()
    x = (torch.randn(2, 64, 32) * 30.0).to(torch.bfloat16).requires_grad_()
    torch.manual_seed(0)
    out = m(x)
    out.float().pow(2).mean().backward()
    assert torch.isfinite(out.float()).all()
    assert torch.isfinite(x.grad.float()).all()


def test_unknown_variant_lists_valid_names():
    with pytest.raises(ValueError, match="unknown attention variant 'softmaxx'.*flurka_performer"):
        build_attention("softmaxx", 8, 2)


def test_causal_model_with_noncausal_variant_names_causal_ones():
    with pytest.raises(ValueError, match="cannot be causal") as err:
        GPT(vocab_size=10, max_len=16, n_layers=1, n_heads=2, d_model=8, attention="linformer")
    for name in variants_supporting("causal"):
        assert name in str(err.value)
    assert "linformer" not in str(err.value).split("causal variants:")[1]


def test_causal_only_variant_refuses_noncausal():
    with pytest.raises(ValueError, match="causal only; non-causal variants: .*performer"):
        build_attention("lightning", 8, 2, causal=False)


def test_fixed_length_variant_rejects_longer_sequences():
    m = make("flurka_performer", causal=False, max_len=10)
    with pytest.raises(ValueError, match="max_len=10 tokens; got 11"):
        m(torch.randn(1, 11, 8, dtype=torch.float64))
    m(torch.randn(1, 7, 8, dtype=torch.float64))  # shorter is fine: the first 7 columns of E, F


@pytest.mark.parametrize("bad", [torch.randn(3, 8), torch.randn(1, 3, 7), torch.randn(1, 2, 3, 8)])
def test_wrong_rank_or_width_is_rejected(bad):
    m = build_attention("full", 8, 2)
    with pytest.raises(ValueError, match=r"expects x of shape \[B, N, 8\]"):
        m(bad)


def test_bad_padding_mask_and_cross_attention_are_rejected():
    m = build_attention("full", 8, 2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="padding_mask must be a bool tensor"):
        m(x, padding_mask=torch.ones(2, 5))
    scfa = build_attention("scfa_hash", 8, 2, causal=True)
    with pytest.raises(ValueError, match="cannot do cross-attention; variants that can: full"):
        scfa(x, context=torch.randn(2, 3, 8))


def test_rope_refused_by_variants_that_mix_the_sequence():
    with pytest.raises(ValueError, match="cannot use RoPE.*variants with RoPE: full"):
        build_attention("flurka_rnn", 8, 2, positional="rope")


@pytest.mark.parametrize("name", [n for n, cls in VARIANTS.items() if n != "full" and cls.supports_causal])
def test_full_attention_gpt_checkpoint_loads_into_every_variant(name):
    kw = dict(vocab_size=20, max_len=16, n_layers=2, n_heads=2, d_model=8)
    base = GPT(**kw, attention="full")
    target = GPT(**kw, attention=name)
    report = transfer_weights(target, base.state_dict())
    sd = target.state_dict()
    for key, value in base.state_dict().items():
        assert torch.equal(sd[key], value), key  # every shared tensor came across
    expected_new = {k for k in sd if k not in base.state_dict()}
    assert set(report.new) == expected_new
    assert all(".attn." in k for k in report.new)
    # and back: the variant's extras are reported as dropped, the rest loads strictly
    back = transfer_weights(GPT(**kw, attention="full"), target.state_dict())
    assert set(back.dropped) == expected_new


def test_transfer_rejects_mismatched_models():
    small = GPT(vocab_size=20, max_len=16, n_layers=2, n_heads=2, d_model=8)
    wider = GPT(vocab_size=20, max_len=16, n_layers=2, n_heads=2, d_model=16)
    with pytest.raises(ValueError, match="does not fit this model"):
        transfer_weights(wider, small.state_dict())
    deeper = GPT(vocab_size=20, max_len=16, n_layers=3, n_heads=2, d_model=8)
    with pytest.raises(ValueError, match="missing from the checkpoint: blocks.2"):
        transfer_weights(deeper, small.state_dict())


@pytest.mark.parametrize(
    ("name", "causal"), [(n, True) for n in CAUSAL_VARIANTS] + [(n, False) for n in NONCAUSAL_VARIANTS]
)
@pytest.mark.parametrize("n", [3, 40])
def test_every_parameter_takes_part_in_every_backward(name, causal, n):
    """DDP (without find_unused_parameters) needs a gradient for every parameter after every backward, also for
    sequences shorter than one chunk, where causal FLuRKA's chunk summaries reach no query."""
    m = make(name, causal=causal, max_len=64, chunk_size=16) if name.startswith("flurka") and causal else None
    m = m or make(name, causal=causal, max_len=64)
    m(torch.randn(2, n, 8, dtype=torch.float64)).sum().backward()
    assert [k for k, p in m.named_parameters() if p.grad is None] == []
