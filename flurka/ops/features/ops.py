"""The feature maps the attention layers call: the fused Triton kernel or the PyTorch reference, by backend.

Same functions as `reference` (same names, same values), with two keywords more:
- `dtype`: the dtype to write the features in. The attention ops take features in the dtype of v (bf16 under
  autocast), so the fused kernels write that directly instead of an fp32 tensor that is then cast (one pass
  instead of two or more). The math is fp32 either way. None keeps the reference's dtype (fp32, fp64 for fp64).
- `backend` (`flurka.ops._backend`): "auto" runs the kernel on CUDA tensors and the reference elsewhere.
Inside `torch.compile` the reference runs: Inductor fuses its elementwise chain itself, and our kernels'
launchers are not traceable.
"""

from __future__ import annotations

import torch

from flurka.ops._backend import resolve_backend
from flurka.ops.features import reference as ref


def _use_kernel(x: torch.Tensor, backend: str) -> bool:
    kernel = resolve_backend(backend, x) == "triton"
    return kernel and x.dtype != torch.float64 and not torch.compiler.is_compiling()


def _favor_kernel_fits(x: torch.Tensor, projection: torch.Tensor, backend: str) -> bool:
    """The fused FAVOR+ kernel runs here and holds this many features (more go to the reference)."""
    if not _use_kernel(x, backend):
        return False
    from flurka.ops.features.triton_features import MAX_FUSED_FEATURES

    return projection.shape[-2] <= MAX_FUSED_FEATURES


def _cast(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return t if dtype is None else t.to(dtype)


def elu_plus_one(x: torch.Tensor, *, dtype: torch.dtype | None = None, backend: str = "auto") -> torch.Tensor:
    """φ(x) = elu(x) + 1 (`reference.elu_plus_one`), in `dtype`."""
    if _use_kernel(x, backend):
        from flurka.ops.features.triton_features import elu_plus_one_triton

        return elu_plus_one_triton(x, dtype=dtype or torch.float32)
    return _cast(ref.elu_plus_one(x), dtype)


def favor_plus_features(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    eps: float = 0.0,
    dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Non-causal FAVOR+ features (`reference.favor_plus_features`), in `dtype`."""
    if _favor_kernel_fits(x, projection, backend):
        from flurka.ops.features.triton_features import favor_plus_features_triton

        return favor_plus_features_triton(x, projection, is_query=is_query, eps=eps, dtype=dtype or torch.float32)
    return _cast(ref.favor_plus_features(x, projection, is_query=is_query, eps=eps), dtype)


def favor_plus_causal_features(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal-safe FAVOR+ features (`reference.favor_plus_causal_features`): (φ in `dtype`, the query shift)."""
    if _favor_kernel_fits(x, projection, backend):
        from flurka.ops.features.triton_features import favor_plus_causal_features_triton

        return favor_plus_causal_features_triton(x, projection, is_query=is_query, dtype=dtype or torch.float32)
    phi, shift = ref.favor_plus_causal_features(x, projection, is_query=is_query)
    return _cast(phi, dtype), shift


def relu_features(x: torch.Tensor, *, dtype: torch.dtype | None = None, backend: str = "auto") -> torch.Tensor:
    """φ(x) = relu(x) (`reference.relu_features`), in `dtype`; relu is exact in any dtype, so x's own dtype
    needs no fp32 round trip."""
    resolve_backend(backend, x)  # the same errors as every op; there is no kernel to pick
    if dtype == x.dtype:
        return torch.relu(x)
    return _cast(ref.relu_features(x), dtype)


def identity_features(x: torch.Tensor, *, dtype: torch.dtype | None = None, backend: str = "auto") -> torch.Tensor:
    """φ(x) = x (`reference.identity_features`), in `dtype`."""
    resolve_backend(backend, x)
    return x if dtype == x.dtype else _cast(ref.identity_features(x), dtype)


#: the fixed feature maps of linear attention by name, each f(x, *, dtype, backend)
FEATURE_MAPS = {"elu": elu_plus_one, "relu": relu_features, "identity": identity_features}
