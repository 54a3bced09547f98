"""Math an op promises in fp32 stays fp32 under bf16 autocast (CPU autocast here: how CI catches dtype bugs that
otherwise show only on the GPU). Autocast runs matmul, bmm and einsum in bf16 even on fp32 tensors, so a
`.float()` before a product is not enough; each of these paths runs its products with autocast off
(`flurka.ops._backend.without_autocast`), and inside autocast gives, bitwise, what it gives outside."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from flurka.attention import build_attention
from flurka.ops.features import favor_exponent, orthogonal_gaussian_projection
from flurka.ops.flash import attention_reference
from flurka.ops.linear import linear_attention
from flurka.ops.scfa.reference import hash_buckets, random_rotations


def _bf16(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).bfloat16()


def _linear(causal: bool) -> Callable[[], tuple]:
    q, k = _bf16(2, 70, 2, 16).abs(), _bf16(2, 70, 2, 16).abs()  # non-negative features, as after elu+1
    v = _bf16(2, 70, 2, 16)
    return lambda: linear_attention(q, k, v, causal=causal, backend="torch", output_final_state=True)


def _full_math() -> Callable[[], torch.Tensor]:
    layer = build_attention("full", 32, 2, causal=True, impl="math", max_len=16)
    q, k, v = (_bf16(2, 9, 2, 16) for _ in range(3))
    return lambda: layer.attend(q, k, v, padding_mask=None)


CASES = {
    "linear attention, causal (torch path)": _linear(True),
    "linear attention, non-causal (torch path)": _linear(False),
    "FAVOR+ exponent": lambda: favor_exponent(
        _bf16(2, 9, 2, 16), orthogonal_gaussian_projection(24, 16, generator=torch.Generator().manual_seed(0))
    ),
    "SCFA hash buckets": lambda: hash_buckets(
        _bf16(2, 33, 2, 16) * 8, random_rotations(2, 16, 8, generator=torch.Generator().manual_seed(0))
    ),
    "flash reference": lambda: attention_reference(_bf16(2, 9, 2, 16), _bf16(2, 9, 2, 16), _bf16(2, 9, 2, 16)),
    "full attention, impl=math": _full_math(),
}


def _flat(out) -> list[torch.Tensor]:
    return [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]


@pytest.mark.parametrize("case", list(CASES))
def test_inside_autocast_equals_outside(case):
    fn = CASES[case]
    with torch.no_grad():
        want = _flat(fn())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = _flat(fn())
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), case
