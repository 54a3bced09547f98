"""GPU tier for the attention modules: every variant on its GPU path (`backend="auto"`: our Triton kernels and
fused feature maps) against the same module, same weights, on its PyTorch path (`backend="torch"`), output and
gradients (input and every parameter), causal and not, with a padding mask for encoders.

fp32: the two paths must agree closely (the kernels run fp32 products as tf32x3 or IEEE). bf16: the GPU path's
error against the fp32 PyTorch path may be at most twice the PyTorch path's own bf16 error, plus a small floor
— the standard the kernel issues set for the ops, here through the modules the models use.
"""

from __future__ import annotations

import copy

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("GPU tier: needs a CUDA GPU (run through the device tool)", allow_module_level=True)

from flurka.attention import build_attention
from tests.attention.conftest import CAUSAL_VARIANTS, NONCAUSAL_VARIANTS

pytestmark = pytest.mark.gpu
D_MODEL, HEADS, MAX_LEN = 256, 4, 1024  # head dim 64
OPTIONS = {
    "linformer": {"downsample_len": 64},
    "performer": {"n_features": 64},
    "flurka_performer": {"n_features": 64, "downsample_len": 64},
    "flurka_rnn": {"downsample_len": 64},
    "flurka_eva": {"downsample_len": 64},
    "scfa_qk": {"drop": 0.3},
    "scfa_hash": {"n_buckets": 4},
}
CASES = [(n, True) for n in CAUSAL_VARIANTS] + [(n, False) for n in NONCAUSAL_VARIANTS]
FP32_TOL, BF16_FLOOR = 2e-3, 2e-3
ZERO = 1e-4  # per-element size below which a tensor counts as zero (the key bias's gradient is exactly 0 in math)


def err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative error, with a floor in the denominator so that a tensor that is zero in exact arithmetic (the
    key projection's bias gradient: softmax ignores a shift shared by all keys) compares its rounding noise
    against that floor, not against itself."""
    floor = ZERO * expected.numel() ** 0.5
    return (actual.double() - expected.double()).norm().item() / (expected.double().norm().item() + floor)


def with_backend(module: torch.nn.Module, backend: str) -> torch.nn.Module:
    out = copy.deepcopy(module)
    for m in out.modules():
        if hasattr(m, "backend"):
            m.backend = backend
    return out


def run(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
    """Output, input gradient and parameter gradients, in fp32. The seed is fixed per call: SCFA-hash draws its
    rotations in every forward pass, and both paths must draw the same ones."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(0)
    y = module(x, padding_mask=mask)
    y.backward(g.to(y.dtype))
    grads = [p.grad.float() for p in module.parameters() if p.grad is not None]
    return [y.float(), x.grad.float(), *grads]


@pytest.mark.parametrize(("name", "causal"), CASES)
@pytest.mark.parametrize("n", [200, 1000])
def test_gpu_path_matches_the_pytorch_path(name, causal, n):
    torch.manual_seed(1)
    ref = build_attention(
        name, D_MODEL, HEADS, causal=causal, max_len=MAX_LEN, backend="torch", **OPTIONS.get(name, {})
    )
    ref = ref.cuda().float()
    gpu = with_backend(ref, "auto")
    x = torch.randn(2, n, D_MODEL, device="cuda")
    g = torch.randn(2, n, D_MODEL, device="cuda")
    mask = None
    if not causal:  # the second sequence is half padding
        mask = torch.ones(2, n, dtype=torch.bool, device="cuda")
        mask[1, n // 2 :] = False

    want = run(ref, x, g, mask)
    got = run(gpu, x, g, mask)
    for i, (a, e) in enumerate(zip(got, want, strict=True)):
        assert torch.isfinite(a).all(), f"fp32 tensor {i}: not finite"
        assert err(a, e) <= FP32_TOL, f"fp32 tensor {i}: {err(a, e):.2e}"

    xb, gb = x.bfloat16().float(), g.bfloat16().float()  # both bf16 runs and the reference see the same inputs
    want = run(ref, xb, gb, mask)
    ours = run(with_backend(ref, "auto").bfloat16(), xb.bfloat16(), gb, mask)
    torch_bf16 = run(with_backend(ref, "torch").bfloat16(), xb.bfloat16(), gb, mask)
    for i, (a, t, e) in enumerate(zip(ours, torch_bf16, want, strict=True)):
        assert torch.isfinite(a).all(), f"bf16 tensor {i}: not finite"
        assert err(a, e) <= 2 * err(t, e) + BF16_FLOOR, f"bf16 tensor {i}: ours {err(a, e):.2e} vs {err(t, e):.2e}"
