"""Fused Triton feature maps vs the PyTorch reference feature maps (outputs and gradients)."""

from __future__ import annotations

import pytest
import torch

from flurka.ops._backend import triton_can_run
from flurka.ops.features import reference as ref
from flurka.ops.testing import assert_rel_close

DEV = "cuda" if torch.cuda.is_available() else "cpu"

pytestmark = [
    pytest.mark.interpret,
    pytest.mark.skipif(
        not triton_can_run(torch.empty(0, device=DEV)), reason="Triton can run neither on a GPU nor in the interpreter"
    ),
]


def _grads(fn, x, *extra):
    xs = [t.clone().requires_grad_() for t in (x, *extra)]
    y = fn(*xs)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(y.device, y.dtype)
    return y, torch.autograd.grad((y * w).sum(), xs)


@pytest.mark.parametrize("shape", [(1, 17, 2, 16), (2, 5, 1, 60), (1, 1, 1, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_elu_plus_one_matches_reference(shape, dtype):
    from flurka.ops.features.triton_features import elu_plus_one_triton

    x = (3 * torch.randn(shape, device=DEV)).to(dtype)
    y_ref, g_ref = _grads(ref.elu_plus_one, x)
    y, g = _grads(elu_plus_one_triton, x)
    assert y.dtype == y_ref.dtype == torch.float32
    assert_rel_close(y, y_ref, 1e-6, "elu+1")
    tol = 1e-6 if dtype == torch.float32 else 1e-2  # the bf16 gradient is rounded to bf16 by both paths
    assert_rel_close(g[0].float(), g_ref[0].float(), tol, "elu+1 grad")


@pytest.mark.parametrize("is_query", [True, False])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("N,H,D,M", [(70, 2, 16, 32), (9, 1, 60, 50)])
def test_favor_plus_matches_reference(is_query, per_head, N, H, D, M):
    from flurka.ops.features.triton_features import favor_plus_features_triton

    x = torch.randn(2, N, H, D, device=DEV) * D**-0.25
    w = ref.orthogonal_gaussian_projection(M, D, generator=torch.Generator().manual_seed(0)).to(DEV)
    if per_head:
        w = torch.stack([w.roll(i, 0) for i in range(H)])
    y_ref, g_ref = _grads(lambda a, b: ref.favor_plus_features(a, b, is_query=is_query, eps=1e-4), x, w)
    y, g = _grads(lambda a, b: favor_plus_features_triton(a, b, is_query=is_query, eps=1e-4), x, w)
    assert_rel_close(y, y_ref, 1e-4, "favor+ features")
    assert_rel_close(g[0], g_ref[0], 1e-4, "favor+ dx")
    assert_rel_close(g[1], g_ref[1], 1e-4, "favor+ dW")


def test_favor_plus_rejects_bad_shapes():
    from flurka.ops.features.triton_features import favor_plus_features_triton

    x = torch.randn(1, 4, 2, 8, device=DEV)
    with pytest.raises(ValueError, match="heads"):
        favor_plus_features_triton(x, torch.randn(3, 16, 8, device=DEV), is_query=True)
    with pytest.raises(ValueError, match="projection"):
        favor_plus_features_triton(x, torch.randn(16, 7, device=DEV), is_query=True)
