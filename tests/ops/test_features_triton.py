"""Fused Triton feature maps vs the PyTorch reference feature maps (outputs and gradients), and the dispatch the
attention layers call (`flurka.ops.features.ops`)."""

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
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_elu_plus_one_matches_reference(shape, dtype, out_dtype):
    from flurka.ops.features.triton_features import elu_plus_one_triton

    x = (3 * torch.randn(shape, device=DEV)).to(dtype)
    y_ref, g_ref = _grads(lambda a: ref.elu_plus_one(a).to(out_dtype), x)
    y, g = _grads(lambda a: elu_plus_one_triton(a, dtype=out_dtype), x)
    assert y.dtype == y_ref.dtype == out_dtype
    # fp32 math, then one cast to the output dtype: within one ulp of it (the interpreter truncates fp32 → bf16,
    # a GPU rounds to nearest: tests/ops/test_features_gpu.py holds the GPU to the torch path's own error)
    assert_rel_close(y, y_ref, 1e-6 if out_dtype == torch.float32 else 8e-3, "elu+1")
    exact = dtype == out_dtype == torch.float32
    tol = 1e-6 if exact else 1e-2  # a bf16 gradient or output is rounded to bf16 by both paths
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


@pytest.mark.parametrize("is_query", [True, False])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("N,H,D,M", [(70, 2, 16, 32), (9, 1, 60, 50)])
def test_favor_plus_causal_matches_reference(is_query, per_head, N, H, D, M):
    """The causal-safe features: the ±‖w‖²/2 shift in the kernel, the query's own max returned; gradients reach
    the projection through the shift too (the reference differentiates c = ‖w‖²/2)."""
    from flurka.ops.features.triton_features import favor_plus_causal_features_triton

    x = torch.randn(2, N, H, D, device=DEV) * D**-0.25 * 2
    w = ref.orthogonal_gaussian_projection(M, D, generator=torch.Generator().manual_seed(1)).to(DEV)
    if per_head:
        w = torch.stack([w.roll(i, 0) for i in range(H)])
    (_, a_ref), (phi, a) = (
        fn(x, w, is_query=is_query) for fn in (ref.favor_plus_causal_features, favor_plus_causal_features_triton)
    )
    assert (a is None) == (a_ref is None) == (not is_query)
    if is_query:
        assert a.shape == (2, N, H) and a.dtype == torch.float32
        assert_rel_close(a, a_ref, 1e-5, "query shift")
        assert phi.amax(-1).sub(1).abs().max() < 1e-5  # the query's largest feature is exactly 1
    y_ref, g_ref = _grads(lambda a, b: ref.favor_plus_causal_features(a, b, is_query=is_query)[0], x, w)
    y, g = _grads(lambda a, b: favor_plus_causal_features_triton(a, b, is_query=is_query)[0], x, w)
    assert_rel_close(y, y_ref, 1e-4, "causal favor+ features")
    assert_rel_close(g[0], g_ref[0], 1e-4, "causal favor+ dx")
    assert_rel_close(g[1], g_ref[1], 1e-4, "causal favor+ dW")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("is_query", [True, False])
def test_favor_plus_writes_the_asked_dtype(causal, is_query):
    """bf16 features (what the attention op takes under autocast) from bf16 inputs: the reference in fp32, cast
    once; gradients as the reference's through the cast."""
    from flurka.ops.features import triton_features as tf

    x = (torch.randn(2, 33, 2, 24, device=DEV) * 24**-0.25 * 2).bfloat16()
    w = ref.orthogonal_gaussian_projection(40, 24, generator=torch.Generator().manual_seed(2)).to(DEV)
    if causal:
        ours = lambda a: tf.favor_plus_causal_features_triton(a, w, is_query=is_query, dtype=torch.bfloat16)[0]  # noqa: E731
        theirs = lambda a: ref.favor_plus_causal_features(a, w, is_query=is_query)[0].bfloat16()  # noqa: E731
    else:
        ours = lambda a: tf.favor_plus_features_triton(a, w, is_query=is_query, dtype=torch.bfloat16)  # noqa: E731
        theirs = lambda a: ref.favor_plus_features(a, w, is_query=is_query).bfloat16()  # noqa: E731
    (y, g), (y_ref, g_ref) = _grads(ours, x), _grads(theirs, x)
    assert y.dtype == torch.bfloat16 and g[0].dtype == torch.bfloat16
    assert_rel_close(y.float(), y_ref.float(), 8e-3, "bf16 features")  # one bf16 ulp (the interpreter truncates)
    assert_rel_close(g[0].float(), g_ref[0].float(), 1.5e-2, "bf16 features dx")


def test_dispatch_picks_the_kernel_by_backend(monkeypatch):
    """`ops` runs the kernel for backend="triton" (here: the interpreter) and the reference for "torch" or fp64,
    with the same values; "auto" on a CPU tensor is the reference."""
    from flurka.ops.features import ops
    from flurka.ops.features import triton_features as tf

    calls = []
    for name in ("elu_plus_one_triton", "favor_plus_features_triton", "favor_plus_causal_features_triton"):
        real = getattr(tf, name)
        monkeypatch.setattr(tf, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    x = torch.randn(1, 12, 2, 16, device=DEV)
    w = ref.orthogonal_gaussian_projection(20, 16, generator=torch.Generator().manual_seed(0)).to(DEV)
    for backend in ("triton", "torch", "auto"):
        calls.clear()
        got = [
            ops.elu_plus_one(x, backend=backend),
            ops.favor_plus_features(x, w, is_query=False, backend=backend),
            ops.favor_plus_causal_features(x, w, is_query=True, backend=backend)[0],
        ]
        want = [
            ref.elu_plus_one(x),
            ref.favor_plus_features(x, w, is_query=False),
            ref.favor_plus_causal_features(x, w, is_query=True)[0],
        ]
        kernel = backend == "triton" or (backend == "auto" and x.is_cuda)
        assert len(calls) == (3 if kernel else 0), (backend, calls)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype == torch.float32
            assert_rel_close(a, b, 1e-5 if kernel else 0.0, backend)
    calls.clear()
    assert ops.elu_plus_one(x.double(), backend="triton").dtype == torch.float64 and not calls


@pytest.mark.parametrize("name", ["relu", "identity"])
def test_plain_maps_in_their_own_dtype_are_exact(name):
    """relu and identity need no fp32 round trip: in x's own dtype they are x's values (relu'd), bitwise."""
    from flurka.ops.features import ops

    x = torch.randn(2, 9, 2, 8).bfloat16()
    got = ops.FEATURE_MAPS[name](x, dtype=torch.bfloat16, backend="torch")
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, ref.FEATURE_MAPS[name](x).bfloat16())
    assert ops.FEATURE_MAPS[name](x, backend="torch").dtype == torch.float32  # None: the reference's fp32


def test_favor_plus_rejects_bad_shapes():
    from flurka.ops.features.triton_features import favor_plus_features_triton

    x = torch.randn(1, 4, 2, 8, device=DEV)
    with pytest.raises(ValueError, match="heads"):
        favor_plus_features_triton(x, torch.randn(3, 16, 8, device=DEV), is_query=True)
    with pytest.raises(ValueError, match="projection"):
        favor_plus_features_triton(x, torch.randn(16, 7, device=DEV), is_query=True)
