"""The plain PyTorch formulations (the Fig. 3 bench's peers) compute the modules' own functions: fp64, random
parameters with biases, N shorter than max_len (E, F cut to the first N columns), outputs and input gradients."""

from __future__ import annotations

import pytest
import torch

from flurka.attention import build_attention
from flurka.bench.plain import PLAIN, plain_forward
from flurka.ops.testing import rel_err

OPTIONS = {
    "linformer": {"downsample_len": 5},
    "performer": {"n_features": 12},
    "linear": {},
    "flurka_rnn": {"downsample_len": 5},
    "flurka_performer": {"downsample_len": 5, "n_features": 12},
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_formulation_is_the_module_function(name):
    torch.manual_seed(0)
    m = build_attention(name, 24, 3, causal=False, max_len=16, backend="torch", **OPTIONS[name]).double()
    for p in m.parameters():  # nonzero biases everywhere, so (E 1)·b is exercised
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 13, 24, dtype=torch.float64, requires_grad=True)
    want = m(x)
    (g_want,) = torch.autograd.grad(want.sum(), [x])
    got = plain_forward(m, x)
    (g_got,) = torch.autograd.grad(got.sum(), [x])
    assert rel_err(got, want) < 1e-10
    assert rel_err(g_got, g_want) < 1e-10


def test_plain_refuses_what_it_does_not_formulate():
    with pytest.raises(ValueError, match="no plain formulation of 'eva'.*flurka_rnn"):
        plain_forward(build_attention("eva", 8, 2, causal=False, max_len=16), torch.randn(1, 4, 8))
    causal = build_attention("linear", 8, 2, causal=True, max_len=16)
    with pytest.raises(ValueError, match="non-causal"):
        plain_forward(causal, torch.randn(1, 4, 8))
