"""Choosing between an op's Triton kernel and its PyTorch reference.

`backend="torch"` always runs the reference (any device). `backend="triton"` runs our kernel: on a CUDA
tensor, or on a CPU tensor when the Triton interpreter is on (`TRITON_INTERPRET=1`, how CI checks kernels).
`backend="auto"` picks Triton on CUDA and the reference elsewhere. Asking for Triton where it cannot run is
an error, never a silent fallback.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "triton", "torch")


def triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_can_run(t: torch.Tensor) -> bool:
    """True when a Triton kernel can run on tensors like `t` here."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if t.is_cuda:
        return True
    return t.device.type == "cpu" and triton_interpreter_on()


def resolve_backend(backend: str, t: torch.Tensor) -> str:
    """Turn a requested backend into the one that will run: "triton" or "torch"."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if t.is_cuda and triton_can_run(t) else "torch"
    if backend == "triton" and not triton_can_run(t):
        raise RuntimeError(
            f"backend='triton' needs a CUDA tensor or TRITON_INTERPRET=1 for CPU tensors; got a tensor on "
            f"{t.device}. Use backend='torch' for the reference path."
        )
    return backend


def next_power_of_2(n: int) -> int:
    """The smallest power of two ≥ n (as Triton's: 0 for 0), in plain Python: a launcher computes a few block sizes per
    call, and `triton.next_power_of_2` is a constexpr function in recent Triton (~3.5 µs a call on the dev CPU,
    host time a host-bound training step pays per layer)."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


def check_bnhd(name: str, t: torch.Tensor) -> None:
    """Ops take [batch, seq, heads, head_dim]; anything else is a caller bug."""
    if t.dim() != 4:
        raise ValueError(f"{name} must be [B, N, H, D] (4-d); got shape {tuple(t.shape)}")


def without_autocast(t: torch.Tensor) -> torch.autocast:
    """A region where autocast is off on `t`'s device: math an op promises in fp32 stays fp32.

    Under autocast, matmul, bmm and einsum run in bf16 even on fp32 tensors (the cast happens inside the op), so
    `.float()` before a product is not enough: causal FLuRKA's chunk entry states, written as fp32 einsums, came
    out of a bf16 training step in bf16 with 2e-3 relative error instead of 4e-8, and the op's torch path and the
    FAVOR+ exponent lost their fp32 the same way."""
    return torch.autocast(t.device.type, enabled=False)
