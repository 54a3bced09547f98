"""GPU tier: the fused feature maps as the layers call them (bf16 features from bf16 inputs) against the fp32
reference on the same inputs: no worse than the torch path (the fp32 reference rounded once to bf16), and the
gradients as close. On a GPU the cast rounds to nearest (the interpreter truncates, so CPU tests hold a looser
bound)."""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("GPU tier: needs a CUDA GPU (run through the device tool)", allow_module_level=True)

from flurka.ops.features import ops
from flurka.ops.features import reference as ref
from flurka.ops.testing import rms_ratio

pytestmark = pytest.mark.gpu
BF16 = torch.bfloat16


def _call(kind: str, x: torch.Tensor, w: torch.Tensor, backend: str, dtype=BF16) -> torch.Tensor:
    if kind == "elu":
        return ops.elu_plus_one(x, dtype=dtype, backend=backend)
    is_query = kind.endswith("query")
    if kind.startswith("causal"):
        return ops.favor_plus_causal_features(x, w, is_query=is_query, dtype=dtype, backend=backend)[0]
    return ops.favor_plus_features(x, w, is_query=is_query, dtype=dtype, backend=backend)


@pytest.mark.parametrize("kind", ["elu", "query", "key", "causal query", "causal key"])
@pytest.mark.parametrize("N,H,D,M", [(1000, 4, 64, 128), (333, 2, 325, 256), (63, 3, 60, 512)])
def test_bf16_features_as_accurate_as_the_torch_path(kind, N, H, D, M):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(2, N, H, D, device="cuda", generator=g) * D**-0.25 * 1.5).to(BF16)
    w = ref.orthogonal_gaussian_projection(M, D, generator=torch.Generator().manual_seed(1)).cuda()
    dy = torch.randn(2, N, H, D if kind == "elu" else M, device="cuda", generator=g)
    xf = x.float().requires_grad_()
    truth = _call(kind, xf, w, "torch", dtype=None)
    (g_truth,) = torch.autograd.grad((truth * dy).sum(), [xf])
    errs = {}
    for backend in ("torch", "triton"):
        xb = x.clone().requires_grad_()
        y = _call(kind, xb, w, backend)
        assert y.dtype == BF16
        (gx,) = torch.autograd.grad((y.float() * dy).sum(), [xb])
        errs[backend] = (rms_ratio(y, truth), rms_ratio(gx, g_truth))
    (y_torch, g_torch), (y_ours, g_ours) = errs["torch"], errs["triton"]
    assert y_ours <= 1.05 * y_torch + 1e-6, errs
    assert g_ours <= 1.5 * g_torch + 1e-3, errs
