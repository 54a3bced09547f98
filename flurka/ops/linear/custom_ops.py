"""torch.library custom ops around the Triton linear-attention launchers (`triton_linear.py`).

Why: Dynamo cannot trace into a Triton launch (autotuner, Python-side config choice), so the Triton path used
to be `@torch.compiler.disable`d, which put a graph break around every attention call of a compiled model. As
custom ops the launches are opaque nodes with a fake (meta) implementation for shapes and dtypes and a
registered autograd formula, so `torch.compile(fullgraph=True)` traces a model through them. They run exactly
the launchers the former autograd.Functions ran (same kernels, same outputs, same grads). Eager calls skip the
dispatcher: an autograd.Function runs the ops' own implementation, setup and backward (`_EAGER_FUNCTION`).

    flurka::linear_causal_fwd     causal forward sweep          -> (o, final state, o kept for backward, den)
    flurka::linear_causal_bwd     its three backward sweeps     -> (dq, dk, dv, d initial state)
    flurka::linear_noncausal_fwd  non-causal forward (Triton or cuBLAS formulation) -> (o, state, o kept, den)

Custom ops take and return tensors, not None, and outputs may not alias each other. So: an absent optional
output (final state, d initial state, the fp32 copy of o, den) is an empty tensor that the Python wrappers
below map back to None; the saved o is a separate output only when it differs from o (fp32, `keep_o32`).
The non-causal backward is plain torch (four GEMMs): it runs in the registered backward formula, where
Dynamo / AOTAutograd trace it like any torch code, so it needs no op of its own.

Schemas are written out (not inferred from annotations) so that they read the same on every torch ≥ 2.4.
"""

from __future__ import annotations

import torch

from flurka.ops.linear import triton_linear as TL

_F32 = torch.float32


def _empty(like: torch.Tensor) -> torch.Tensor:
    """The stand-in for an absent optional output."""
    return like.new_empty((0,), dtype=_F32)


def _or_empty(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return _empty(like) if t is None else t


def _keep_o32(q: torch.Tensor, normalize: bool, need_grad: bool) -> bool:
    """Whether the forward keeps o in fp32 for the backward (why: `triton_linear.causal_forward`). Decided
    inside the ops from `need_grad`, so a real and a fake run always agree on the outputs."""
    return normalize and need_grad and q.dtype in (torch.float16, torch.bfloat16)


#: Eager calls go through an autograd.Function that runs the ops' own implementation, setup and backward (so
#: the results are the ops' by construction), because the custom-op dispatch costs host time per call that the
#: host-bound training step cannot spare: in the interpreter with launches stubbed out (2-core CPU), 60 → 105 µs
#: a forward and 300 → 510 µs forward + backward. Under torch.compile the ops are what Dynamo traces.
_EAGER_FUNCTION = True


def _eager() -> bool:
    return _EAGER_FUNCTION and not torch.compiler.is_compiling()


def _needs_grad(*ts: torch.Tensor | None) -> bool:
    # What autograd.Function's ctx.needs_input_grad said in the forward; Dynamo traces it as a constant.
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


# ---------------------------------------------------------------------------------------------------- causal


def _causal_fwd_impl(q, k, v, s0, log2_decay, scale, eps, normalize, output_final_state, BT, need_grad):
    # .contiguous() is free for the wrapper's (contiguous) inputs; it guards the kernels' stride assumptions
    # against whatever layout a compiler hands an opaque op.
    s0 = None if s0 is None else s0.contiguous()
    keep_o32 = _keep_o32(q, normalize, need_grad)
    o, sN, o_saved, den = TL.causal_forward(
        q.contiguous(), k.contiguous(), v.contiguous(), s0, log2_decay, scale, eps, normalize,
        output_final_state, BT, keep_o32,
    )  # fmt: skip
    return o, _or_empty(sN, q), (o_saved if keep_o32 else _empty(q)), _or_empty(den, q)


_causal_fwd = torch.library.custom_op(
    "flurka::linear_causal_fwd",
    _causal_fwd_impl,
    mutates_args=(),
    schema="(Tensor q, Tensor k, Tensor v, Tensor? s0, Tensor? log2_decay, float scale, float eps, bool normalize, "
    "bool output_final_state, int BT, bool need_grad) -> (Tensor, Tensor, Tensor, Tensor)",
)


@_causal_fwd.register_fake
def _(q, k, v, s0, log2_decay, scale, eps, normalize, output_final_state, BT, need_grad):
    B, N, H, Dk = q.shape
    Dv = v.shape[-1]
    o = q.new_empty((B, N, H, Dv))
    sN = q.new_empty((B, H, Dk, Dv + int(normalize)), dtype=_F32) if output_final_state else _empty(q)
    o32 = q.new_empty((B, N, H, Dv), dtype=_F32) if _keep_o32(q, normalize, need_grad) else _empty(q)
    den = q.new_empty((B, N, H), dtype=_F32) if normalize else _empty(q)
    return o, sN, o32, den


def _causal_bwd_impl(do, dsN, q, k, v, o, den, s0, log2_decay, scale, normalize, BT, want_s0):
    q, k, v, o, den, s0 = (None if t is None else t.contiguous() for t in (q, k, v, o, den, s0))
    dq, dk, dv, ds0 = TL.causal_backward(do, dsN, q, k, v, o, den, s0, log2_decay, scale, normalize, BT, want_s0)
    return dq, dk, dv, _or_empty(ds0, q)


_causal_bwd = torch.library.custom_op(
    "flurka::linear_causal_bwd",
    _causal_bwd_impl,
    mutates_args=(),
    schema="(Tensor do, Tensor? dsN, Tensor q, Tensor k, Tensor v, Tensor o, Tensor? den, Tensor? s0, "
    "Tensor? log2_decay, float scale, bool normalize, int BT, bool want_s0) -> (Tensor, Tensor, Tensor, Tensor)",
)


@_causal_bwd.register_fake
def _(do, dsN, q, k, v, o, den, s0, log2_decay, scale, normalize, BT, want_s0):
    B, _, H, Dk = q.shape
    Dv = v.shape[-1]
    want = want_s0 and s0 is not None
    ds0 = q.new_empty((B, H, Dk, Dv + int(normalize)), dtype=_F32) if want else _empty(q)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), ds0


def _causal_setup(ctx, inputs, output) -> None:
    q, k, v, s0, log2_decay, scale, _eps, normalize, output_final_state, BT, need_grad = inputs
    o, _, o32, den = output
    saved_o = o32 if _keep_o32(q, normalize, need_grad) else o
    ctx.save_for_backward(q, k, v, saved_o, den if normalize else None, s0, log2_decay)
    ctx.cfg = (scale, normalize, output_final_state, BT)
    # Absent gradients arrive as None (not zeros the size of o): o32 and den never get one.
    ctx.set_materialize_grads(False)


def _causal_backward(ctx, do, dsN, _do32, _dden):
    q, k, v, o, den, s0, log2_decay = ctx.saved_tensors
    scale, normalize, output_final_state, BT = ctx.cfg
    # Zeros where the autograd.Function got materialised zeros (an output that the loss does not use), so that
    # the same kernels run with the same flags (HAS_DSN) as before.
    if do is None:
        do = torch.zeros(o.shape, dtype=q.dtype, device=q.device)
    if not output_final_state:
        dsN = None
    elif dsN is None:
        dsN = torch.zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[3] + int(normalize), dtype=_F32, device=q.device)
    want_s0 = s0 is not None and ctx.needs_input_grad[3]
    bwd = _causal_bwd_impl if getattr(ctx, "eager", False) else _causal_bwd
    dq, dk, dv, ds0 = bwd(do, dsN, q, k, v, o, den, s0, log2_decay, scale, normalize, BT, want_s0)
    return dq, dk, dv, (ds0 if want_s0 else None), None, None, None, None, None, None, None


_causal_fwd.register_autograd(_causal_backward, setup_context=_causal_setup)


class _CausalFn(torch.autograd.Function):
    """Eager mode: the op's implementation, setup and backward, without the dispatcher (see `_EAGER_FUNCTION`)."""

    @staticmethod
    def forward(ctx, *args):
        out = _causal_fwd_impl(*args)
        _causal_setup(ctx, args, out)
        ctx.eager = True  # the backward calls its implementation directly too
        return out

    backward = staticmethod(_causal_backward)


def causal_linear(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s0: torch.Tensor | None,
    log2_decay: torch.Tensor | None,
    scale: float,
    eps: float,
    normalize: bool,
    output_final_state: bool,
    BT: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal Triton linear attention (the op when compiled): `(o, final state or None)`; differentiable in q, k, v, s0
    (`log2_decay` is a constant)."""
    fwd = _CausalFn.apply if _eager() else _causal_fwd
    o, sN, _, _ = fwd(
        q, k, v, s0, log2_decay, float(scale), float(eps), normalize, output_final_state, BT,
        _needs_grad(q, k, v, s0),
    )  # fmt: skip
    return o, (sN if output_final_state else None)


# ------------------------------------------------------------------------------------------------ non-causal


def _noncausal_fwd_impl(q, k, v, scale, eps, normalize, impl, need_grad):
    keep_o32 = _keep_o32(q, normalize, need_grad)
    o, state, o_saved, den = TL.noncausal_forward(
        q.contiguous(), k.contiguous(), v.contiguous(), scale, eps, normalize, impl, keep_o32
    )
    return o, state, (o_saved if keep_o32 else _empty(q)), _or_empty(den, q)


_noncausal_fwd = torch.library.custom_op(
    "flurka::linear_noncausal_fwd",
    _noncausal_fwd_impl,
    mutates_args=(),
    schema="(Tensor q, Tensor k, Tensor v, float scale, float eps, bool normalize, str impl, bool need_grad) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
)


@_noncausal_fwd.register_fake
def _(q, k, v, scale, eps, normalize, impl, need_grad):
    B, Nq, H, Dk = q.shape
    Dv = v.shape[-1]

    def out(dtype: torch.dtype) -> torch.Tensor:
        # The cuBLAS formulation's o is a transposed view of its [B, H, Nq, Dv] product; Triton's is contiguous.
        if impl == "cublas":
            return q.new_empty((B, H, Nq, Dv), dtype=dtype).transpose(1, 2)
        return q.new_empty((B, Nq, H, Dv), dtype=dtype)

    state = q.new_empty((B, H, Dk, Dv + int(normalize)), dtype=_F32)
    o32 = out(_F32) if _keep_o32(q, normalize, need_grad) else _empty(q)
    den = q.new_empty((B, Nq, H), dtype=_F32) if normalize else _empty(q)
    return out(q.dtype), state, o32, den


def _noncausal_setup(ctx, inputs, output) -> None:
    q, k, v, scale, _eps, normalize, _impl, need_grad = inputs
    o, state, o32, den = output
    saved_o = o32 if _keep_o32(q, normalize, need_grad) else o
    ctx.save_for_backward(q, k, v, saved_o, den if normalize else None, state)
    ctx.cfg = (scale, normalize)
    ctx.set_materialize_grads(False)  # as in `_causal_setup`


def _noncausal_backward(ctx, do, dstate, _do32, _dden):
    q, k, v, o, den, state = ctx.saved_tensors
    scale, normalize = ctx.cfg
    # Materialised zeros where the autograd.Function had them (see `_causal_backward`).
    do = torch.zeros(o.shape, dtype=q.dtype, device=q.device) if do is None else do
    dstate = torch.zeros_like(state) if dstate is None else dstate
    dq, dk, dv = TL.noncausal_backward(do, dstate, q, k, v, o, den, state, scale, normalize)
    return dq, dk, dv, None, None, None, None, None


_noncausal_fwd.register_autograd(_noncausal_backward, setup_context=_noncausal_setup)


class _NonCausalFn(torch.autograd.Function):
    """Eager mode, as `_CausalFn`."""

    @staticmethod
    def forward(ctx, *args):
        out = _noncausal_fwd_impl(*args)
        _noncausal_setup(ctx, args, out)
        return out

    backward = staticmethod(_noncausal_backward)


def noncausal_linear(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float, normalize: bool, impl: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-causal Triton (or cuBLAS-formulation) linear attention (the op when compiled): `(o, key state)`."""
    fwd = _NonCausalFn.apply if _eager() else _noncausal_fwd
    o, state, _, _ = fwd(q, k, v, float(scale), float(eps), normalize, impl, _needs_grad(q, k, v))
    return o, state
