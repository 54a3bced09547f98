"""torch.compile traces every attention layer whole (issue 15: the host-bound causal FLuRKA step needs the
compiler to fuse its small ops and, later, CUDA graphs): no graph break, on either backend, with the Triton path
through the linear-attention custom ops (flurka/ops/linear/custom_ops.py), and the compiled layer's output and
gradients equal eager's.

Flash and SCFA still run their Triton ops `torch.compiler.disable`d (a graph break each): named here, so the day
they trace, this test says so. `aot_eager_decomp_partition` traces forward and backward without generating code
(plain `aot_eager` trips over a PyTorch stride quirk, pytorch/pytorch#120035; Inductor and this backend do not).
"""

from __future__ import annotations

import pytest
import torch

from flurka.attention import VARIANTS, build_attention
from tests.attention.conftest import CAUSAL_ONLY, NONCAUSAL_ONLY, SMALL_OPTIONS

STILL_BREAKS = {"flash", "scfa_qk", "scfa_hash"}  # their Triton ops are compiler.disable'd (graph break each)
CASES = [
    (name, causal)
    for name in VARIANTS
    if name not in STILL_BREAKS
    for causal in (True, False)
    if not (causal and name in NONCAUSAL_ONLY) and not (not causal and name in CAUSAL_ONLY)
]


def layer(name: str, causal: bool, backend: str):
    return build_attention(name, 8, 2, causal=causal, max_len=16, backend=backend, **SMALL_OPTIONS.get(name, {}))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # each case traces from scratch (no recompile limits carried between tests)
    yield
    torch._dynamo.reset()


@pytest.mark.interpret
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name,causal", CASES)
def test_a_layer_compiles_to_one_graph(name, causal, backend):
    explained = torch._dynamo.explain(layer(name, causal, backend))(torch.randn(2, 16, 8))
    assert explained.graph_break_count == 0, [str(r.reason).splitlines()[0] for r in explained.break_reasons]


@pytest.mark.interpret
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", ["linear", "flurka_rnn", "lightning", "flurka_performer"])
def test_a_compiled_causal_layer_matches_eager_with_gradients(name, backend):
    att = layer(name, True, backend)
    x = torch.randn(2, 16, 8, requires_grad=True)
    y0 = att(x)
    (g0,) = torch.autograd.grad(y0.square().sum(), x)
    y1 = torch.compile(att, backend="aot_eager_decomp_partition", fullgraph=True)(x)
    (g1,) = torch.autograd.grad(y1.square().sum(), x)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run through the device tool)")
@pytest.mark.parametrize("name", ["linear", "flurka_rnn", "lightning", "flurka_performer"])
def test_an_inductor_compiled_causal_layer_matches_eager_on_the_gpu(name):
    """The GPU path (our Triton kernels through the custom ops, Inductor around them) at a model's size, fp32."""
    torch.manual_seed(0)
    options = {"downsample_len": 64} if name.startswith("flurka") else {}
    att = build_attention(name, 256, 4, causal=True, max_len=1024, backend="auto", **options).cuda()
    x = torch.randn(2, 1024, 256, device="cuda", requires_grad=True)
    y0 = att(x)
    (g0,) = torch.autograd.grad(y0.square().mean(), x)
    y1 = torch.compile(att)(x)
    (g1,) = torch.autograd.grad(y1.square().mean(), x)
    torch.testing.assert_close(y1, y0, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(g1, g0, rtol=2e-3, atol=2e-3 * g0.abs().max().item())
