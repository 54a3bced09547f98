"""Variant options: feature maps, Linformer sharing, positional encodings in a model."""

from __future__ import annotations

import math

import pytest
import torch

from flurka.attention import build_attention
from flurka.models.gpt import GPT
from flurka.ops.testing import rel_err
from tests.attention.conftest import make


def test_cosformer_equals_its_reweighted_formula():
    """φ(q_i)·φ(k_j) = relu(q_i)·relu(k_j)·cos(π(i−j)/2M): check the module against that O(N²) formula."""
    m = make("linear", causal=False, feature_map="cosformer", max_len=16)
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    q, k, v = (
        m.split_heads(p(x)).relu() if i < 2 else m.split_heads(p(x))
        for i, p in enumerate((m.q_proj, m.k_proj, m.v_proj))
    )
    pos = torch.arange(9, dtype=torch.float64)
    w = torch.cos(math.pi * (pos[:, None] - pos[None, :]) / (2 * 16))
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * w
    out = torch.einsum("bhij,bjhd->bihd", scores, v) / (scores.sum(-1).transpose(1, 2)[..., None] + 1e-6)
    assert rel_err(m(x), m.o_proj(out.reshape(1, 9, 8))) < 1e-10
    with pytest.raises(ValueError, match="cosFormer re-weighting is defined up to max_len=16"):
        m(torch.randn(1, 17, 8, dtype=torch.float64))


@pytest.mark.parametrize("feature_map", ["elu", "relu", "cosformer"])
def test_causal_linear_feature_maps_do_not_leak(feature_map):
    m = make("linear", causal=True, feature_map=feature_map)
    x = torch.randn(1, 10, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 8, dtype=torch.float64)
    assert torch.allclose(m(x)[:, :6], m(y)[:, :6], rtol=0, atol=1e-12)


def test_identity_features_need_no_normaliser():
    with pytest.raises(ValueError, match="normalize=False"):
        build_attention("linear", 8, 2, feature_map="identity")


@pytest.mark.parametrize("share_heads,share_kv", [(True, False), (False, False), (True, True), (False, True)])
def test_linformer_sharing_options(share_heads, share_kv):
    m = make("linformer", causal=False, share_heads=share_heads, share_kv=share_kv)
    names = {n for n, _ in m.named_parameters() if n.startswith("downsample.")}
    assert names == ({"downsample.E"} if share_kv else {"downsample.E", "downsample.F"})
    assert m.downsample.E.dim() == (2 if share_heads else 3)
    x = torch.randn(2, 11, 8, dtype=torch.float64, requires_grad=True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "positional,attention",
    [("rope", "performer"), ("rope", "full"), ("alibi", "full"), ("none", "lightning"), ("learned", "eva")],
)
def test_gpt_positional_encodings(positional, attention):
    model = GPT(
        vocab_size=16, max_len=24, n_layers=2, n_heads=2, d_model=16, positional=positional, attention=attention
    )
    ids = torch.randint(0, 16, (2, 24))
    out = model(ids, labels=ids)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and (model.pos_emb is not None) == (positional == "learned")
    with pytest.raises(ValueError, match="longer than the model's max_len=24"):
        model(torch.randint(0, 16, (1, 25)))


def test_alibi_refused_by_kernel_variants():
    with pytest.raises(ValueError, match="cannot use ALiBi.*variants with ALiBi: full"):
        GPT(vocab_size=16, max_len=8, n_layers=1, n_heads=2, d_model=8, positional="alibi", attention="performer")


def test_performer_redraws_features_on_schedule():
    m = build_attention("performer", 8, 2, causal=True, redraw_interval=2, n_features=8).train()
    x = torch.randn(1, 5, 8)
    used = []  # the features each forward pass ran with
    for _ in range(5):
        m(x)
        used.append(m.projection.clone())
    assert torch.equal(used[0], used[1]) and torch.equal(used[2], used[3])
    assert not torch.equal(used[1], used[2]) and not torch.equal(used[3], used[4])
    m.eval()
    before = m.projection.clone()
    m(x)
    assert torch.equal(before, m.projection)  # never in eval


@pytest.mark.parametrize("name", ["performer", "flurka_performer"])
def test_random_features_follow_the_default_device(name):
    """A model built under `with torch.device(...)` (as the training bench builds GPT-2 small on the GPU) holds
    its features on that device, drawn from the CPU generator so that every build draws the same ones (the CUDA
    case, where a CPU generator used to fail, is in test_variants_gpu.py)."""
    on_cpu = build_attention(name, 8, 2, causal=True, n_features=8)
    with torch.device("meta"):
        on_meta = build_attention(name, 8, 2, causal=True, n_features=8)
    assert on_meta.projection.device.type == "meta" and on_meta.projection.shape == on_cpu.projection.shape
    again = build_attention(name, 8, 2, causal=True, n_features=8)
    assert torch.equal(on_cpu.projection, again.projection)
