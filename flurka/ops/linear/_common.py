"""Argument checking and small helpers shared by every linear-attention implementation.

One place decides what a valid call is, so the reference, the chunked PyTorch path and the Triton kernels
reject the same inputs with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flurka.ops._backend import check_bnhd

#: The one eps policy of this op: the denominator is `q · z + eps`, computed in fp32 (or fp64 for fp64 inputs).
DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class LinearArgs:
    B: int
    Nq: int
    Nk: int
    H: int
    Dk: int
    Dv: int
    causal: bool
    normalize: bool
    scale: float
    compute_dtype: torch.dtype  # fp32, or fp64 when the inputs are fp64 (for gradcheck / exactness tests)

    @property
    def state_cols(self) -> int:
        return self.Dv + 1 if self.normalize else self.Dv


def check_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    decay: torch.Tensor | None,
    normalize: bool,
    scale: float | None,
    initial_state: torch.Tensor | None,
) -> LinearArgs:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_bnhd(name, t)
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor; got {t.dtype}")
    B, Nq, H, Dk = q.shape
    if k.shape[0] != B or k.shape[2] != H or k.shape[3] != Dk:
        raise ValueError(f"k must be [B={B}, Nk, H={H}, Dk={Dk}]; got {tuple(k.shape)}")
    Nk = k.shape[1]
    if v.shape[0] != B or v.shape[1] != Nk or v.shape[2] != H:
        raise ValueError(f"v must be [B={B}, Nk={Nk}, H={H}, Dv]; got {tuple(v.shape)}")
    Dv = v.shape[3]
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")
    if causal and Nk != Nq:
        raise ValueError(f"causal linear attention needs as many keys as queries; got Nq={Nq}, Nk={Nk}")
    if not causal and decay is not None:
        raise ValueError("decay is only defined for causal linear attention (causal=True); got causal=False")
    if not causal and initial_state is not None:
        raise ValueError("initial_state is only defined for causal linear attention (causal=True)")
    if decay is not None:
        if decay.shape != (H,) or not decay.is_floating_point():
            raise ValueError(f"decay must be a float tensor of shape [H]=[{H}]; got {tuple(decay.shape)}")
        # The range check reads the values (a device sync on GPU): do it once per unmodified decay tensor.
        if not torch.compiler.is_compiling() and getattr(decay, "_flurka_checked", None) != decay._version:
            d = decay.detach()
            if bool(((d <= 0) | (d > 1)).any()):
                raise ValueError(f"decay values must lie in (0, 1]; got {d.tolist()}")
            decay._flurka_checked = decay._version
    compute_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    cols = Dv + 1 if normalize else Dv
    if initial_state is not None and tuple(initial_state.shape) != (B, H, Dk, cols):
        raise ValueError(
            f"initial_state must be [B, H, Dk, {'Dv + 1' if normalize else 'Dv'}] = {(B, H, Dk, cols)} "
            f"(normalize={normalize}); got {tuple(initial_state.shape)}"
        )
    return LinearArgs(
        B=B,
        Nq=Nq,
        Nk=Nk,
        H=H,
        Dk=Dk,
        Dv=Dv,
        causal=causal,
        normalize=normalize,
        scale=1.0 if scale is None else float(scale),
        compute_dtype=compute_dtype,
    )


def augment_values(v: torch.Tensor, normalize: bool) -> torch.Tensor:
    """[B, N, H, Dv] → [B, N, H, Dv + 1] with a ones column: the normaliser z is then just another value column."""
    if not normalize:
        return v
    return torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)


def split_output(o_aug: torch.Tensor, normalize: bool, eps: float) -> torch.Tensor:
    """Numerator columns divided by the (last) denominator column plus eps; identity without the normaliser."""
    if not normalize:
        return o_aug
    return o_aug[..., :-1] / (o_aug[..., -1:] + eps)
