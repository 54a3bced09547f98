"""A whole kernel-attention layer on the Triton backend (interpreter here; the kernels on a GPU) computes the
same function as on the PyTorch backend: outputs and the gradients of the input and every parameter, causal and
not, with a padding mask. This covers what the layers add around the ops: the fused feature maps written in the
op's dtype (flurka.ops.features.ops), the chunk summaries, the padded keys."""

from __future__ import annotations

import pytest
import torch

from flurka.attention import build_attention
from flurka.ops._backend import triton_can_run
from flurka.ops.testing import assert_rel_close
from tests.attention.conftest import SMALL_OPTIONS

DEV = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_FAMILY = ["linear", "performer", "flurka_rnn", "flurka_performer"]

pytestmark = [
    pytest.mark.interpret,
    pytest.mark.skipif(
        not triton_can_run(torch.empty(0, device=DEV)), reason="Triton can run neither on a GPU nor in the interpreter"
    ),
]


def _run(layer: torch.nn.Module, x: torch.Tensor, keep: torch.Tensor | None) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    y = layer(x, padding_mask=keep)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(5)).to(y.device)
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = torch.autograd.grad((y * w).sum(), [x, *params], allow_unused=True)
    return [y] + [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, [x, *params], strict=True)]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("name", KERNEL_FAMILY)
def test_triton_layer_equals_torch_layer(name, causal):
    # d_head 16: the kernels' smallest block; N 19 is not a multiple of any block or chunk
    opts = {**SMALL_OPTIONS.get(name, {}), "max_len": 24}
    torch.manual_seed(0)
    layers = {b: build_attention(name, 32, 2, causal=causal, backend=b, **opts).to(DEV) for b in ("torch", "triton")}
    layers["triton"].load_state_dict(layers["torch"].state_dict())
    x = torch.randn(2, 19, 32, device=DEV)
    keep = torch.ones(2, 19, dtype=torch.bool, device=DEV)
    keep[1, 15:] = False  # the second sequence is padded at its end
    want, got = (_run(layers[b], x, keep) for b in ("torch", "triton"))
    names = ["output", "dx"] + [n for n, p in layers["torch"].named_parameters() if p.requires_grad]
    for what, a, b in zip(names, got, want, strict=True):
        assert_rel_close(a, b, 1e-4, f"{name} causal={causal} {what}")
