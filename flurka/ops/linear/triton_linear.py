"""Launchers and autograd Functions for the Triton linear-attention kernels (`triton_kernels.py`).

- Causal: `causal_forward`, the Lightning-2 `fused_chunk` sweep (BT = 64); `causal_backward` recomputes the
  fp32 states with a forward sweep for dQ and reverse sweeps for dK (+ the initial state's gradient) and dV.
- Non-causal: `noncausal_forward`: either two Triton kernels (key-value state, then the output with the
  normaliser in the same pass) or the cuBLAS formulation (two batched matmuls in torch), selected by `impl`.
  `noncausal_backward` is four small GEMMs in torch either way (no N² term, nothing to fuse that cuBLAS does not do).

Autograd and torch.compile support live in `custom_ops.py`: these functions are the bodies of its
torch.library custom ops (`linear_attention_triton` below calls them through the ops).

On GPUs the kernels are autotuned over warps/stages with a key of head dims, block sizes and flags — never the
sequence length, which is also `do_not_specialize`, so a new length never recompiles or re-tunes.
"""

from __future__ import annotations

import itertools
import math
import os

import torch
import triton

from flurka.ops._backend import next_power_of_2, triton_interpreter_on
from flurka.ops.linear import triton_kernels as K
from flurka.ops.linear._common import DEFAULT_EPS, check_args

LOG2E = 1.0 / math.log(2.0)
CHUNK = 64

#: Non-causal forward: "triton" (fused normaliser) or "cublas" (torch matmuls). "auto" picks by shape; see
#: NOTES.md for the measurements behind `_noncausal_auto`.
NONCAUSAL_IMPLS = ("auto", "triton", "cublas")

_TUNE_KEY = ["Dk", "Dv", "BT", "BK", "BV", "NORMALIZE", "HAS_DECAY", "HAS_S0", "LOWP"]
_tuned: dict[tuple, object] = {}


def _launch(
    name: str, grid, args: tuple, kw: dict, tune: dict[str, tuple[int, ...]], stages: tuple[int, ...] = (2, 3)
) -> None:
    """Launch kernel `name`; `tune` maps block-size meta-parameters to candidates (the first is the default).

    Under the interpreter, or with FLURKA_AUTOTUNE=0 (GPU correctness tests: many shapes, no tuning time), the
    defaults run with 4 warps. Otherwise Triton autotunes the candidates × warps × stages, keyed on head dims,
    blocks and flags — never on the sequence length.
    """
    raw = getattr(K, name)
    interp = triton_interpreter_on()
    if interp or os.environ.get("FLURKA_AUTOTUNE", "1") == "0":
        cfg = default_config(tune, kw)
        extra = {} if interp else {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
        raw[grid(cfg.kwargs)](*args, **kw, **cfg.kwargs, **extra)
        return
    tkey = (name, tuple(sorted(tune.items())), stages, bool(kw.get("LOWP", True)))
    if tkey not in _tuned:
        key = [x for x in _TUNE_KEY if x not in tune and (x in raw.arg_names)]
        _tuned[tkey] = triton.autotune(configs=config_space(tune, stages, kw), key=key)(raw)
    _tuned[tkey][grid](*args, **kw)


def _stages(stages: tuple[int, ...], kw: dict) -> tuple[int, ...]:
    """fp32 operands double the staging buffers: a causal fp32 kernel at D = 128 asks 240–450 KB of shared
    memory with 2–3 stages (limit 227 KB on sm_90; triton 3.6 and 3.8, `python -m flurka.ops.linear.preflight`), and
    160 KB with one. So fp32 launches also offer, and by default use, a single stage."""
    return stages if kw.get("LOWP", True) else tuple(sorted({1, *stages}))


def config_space(tune: dict[str, tuple[int, ...]], stages: tuple[int, ...], kw: dict) -> list[triton.Config]:
    """Every config the autotuner tries for a launch: block-size candidates × warps {4, 8} × stages."""
    metas = [dict(zip(tune, vals, strict=True)) for vals in itertools.product(*tune.values())]
    return [triton.Config(m, num_warps=w, num_stages=st) for m in metas for w in (4, 8) for st in _stages(stages, kw)]


def default_config(tune: dict[str, tuple[int, ...]], kw: dict) -> triton.Config:
    """The config run without autotuning (interpreter, FLURKA_AUTOTUNE=0): first candidates, 4 warps, 2 stages
    (1 for fp32 operands, see `_stages`)."""
    return triton.Config({m: c[0] for m, c in tune.items()}, num_warps=4, num_stages=2 if kw.get("LOWP", True) else 1)


def _log2_decay(decay: torch.Tensor) -> torch.Tensor:
    """log2 λ per head (the exp2 trick), cached on the decay tensor itself while it is unmodified: a
    module's decay buffer then costs no small kernels per call."""
    if torch.compiler.is_compiling():  # a traced graph computes it (attributes set on a tensor do not trace)
        return (decay.detach().double().log() * LOG2E).float().contiguous()
    cached = getattr(decay, "_flurka_log2", None)
    if cached is not None and cached[0] == decay._version:
        return cached[1]
    out = (decay.detach().double().log() * LOG2E).float().contiguous()
    decay._flurka_log2 = (decay._version, out)
    return out


def _cands(*vals: int) -> tuple[int, ...]:
    return tuple(dict.fromkeys(vals))


def _p2(n: int, cap: int) -> int:
    return max(16, min(cap, next_power_of_2(n)))


def _lowp(t: torch.Tensor) -> bool:
    return t.dtype in (torch.float16, torch.bfloat16)


def _partial(n_split: int, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Output buffer: final dtype when one program holds the whole reduction, fp32 partials otherwise."""
    if n_split == 1:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return torch.empty((n_split, *shape), dtype=torch.float32, device=like.device)


def _reduce(buf: torch.Tensor, n_split: int, dtype: torch.dtype) -> torch.Tensor:
    return buf if n_split == 1 else buf.sum(0).to(dtype)


def _split_stride(buf: torch.Tensor, n_split: int) -> int:
    return 0 if n_split == 1 else buf.stride(0)


def causal_forward(
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
    keep_o32: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The causal forward sweep on contiguous inputs: `(o, final state or None, o for the backward, den)`.

    `keep_o32` (normaliser, fp16/bf16, gradients needed; see below) keeps o in fp32 for the backward; otherwise
    the saved o is the output itself. `den` (the backward's fp32 [B, N, H] denominator) is None without the
    normaliser: the kernel then never writes its buffer."""
    B, N, H, Dk = q.shape
    Dv = v.shape[-1]
    SC = Dv + int(normalize)
    lowp = _lowp(q)
    # The key dim is the reduction of q·S: whole in one program when Dk ≤ 128 (else fp32 partials).
    BK = _p2(Dk, 128)
    nK = triton.cdiv(Dk, BK)
    divide = normalize and nK == 1
    # With the normaliser the backward's r = −(dO·o)/den must see an output as exact as its denominator:
    # an error δo in o (bf16 storage, or a numerator from bf16-rounded A and S while the denominator sums
    # the fp32 A) enters r as g·δo, which multiplies Σ_j λ^{i−j} k_j (not centred). On the H100 that put dq
    # at RMS 5.2e-3 (> 5e-3; the floor from bf16 dO and bf16 dq is 2.3e-3). So when gradients are needed
    # the numerator runs near fp32 (tf32x3) and o is kept in fp32 for the backward; inference keeps bf16.
    if keep_o32 and nK == 1:
        o = torch.empty((B, N, H, Dv), dtype=torch.float32, device=q.device)
    else:
        o = _partial(nK, q, (B, N, H, Dv))
    den = torch.empty((nK if nK > 1 else 1, B, N, H), dtype=torch.float32, device=q.device)
    sN = torch.empty((B, H, Dk, SC), dtype=torch.float32, device=q.device) if output_final_state else q
    dummy = q
    if N > 0:
        _launch(
            "causal_fwd_kernel",
            lambda m: (triton.cdiv(Dv, m["BV"]), nK, B * H),
            (q, k, v, o, den, s0 if s0 is not None else dummy, sN,
             log2_decay if log2_decay is not None else dummy,
             scale, eps, N, H, Dk, Dv, _split_stride(o, nK), den.stride(0) if nK > 1 else 0),
            dict(BT=BT, BK=BK, HAS_DECAY=log2_decay is not None, NORMALIZE=normalize, DIVIDE=divide,
                 HAS_S0=s0 is not None, STORE_SN=output_final_state, LOWP=lowp, NUM_F32=keep_o32),
            {"BV": _cands(_p2(Dv, 64), _p2(Dv, 128))},
        )  # fmt: skip
    elif output_final_state:
        sN = s0.clone() if s0 is not None else torch.zeros_like(sN)
    if nK > 1:
        o = o.sum(0)
        if normalize:
            den = den.sum(0) + eps
            o = o / den[..., None]
    den = (den[0] if nK == 1 else den) if normalize else None
    o_saved = o if keep_o32 else o.to(q.dtype)
    o = o.to(q.dtype)
    return o, (sN if output_final_state else None), o_saved, den


def causal_backward(
    do: torch.Tensor,
    dsN: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    den: torch.Tensor | None,
    s0: torch.Tensor | None,
    log2_decay: torch.Tensor | None,
    scale: float,
    normalize: bool,
    BT: int,
    want_s0: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients of `causal_forward` (o and den as it returned them): `(dq, dk, dv, d s0 or None)`."""
    B, N, H, Dk = q.shape
    Dv = v.shape[-1]
    SC = Dv + int(normalize)
    lowp = _lowp(q)
    do = do.contiguous()
    r = -(do.float() * o.float()).sum(-1) / den if normalize else do  # dL/d(denominator), [B, N, H]
    if den is None:  # no normaliser: the kernels take a den pointer they never read (an fp32 one, as before)
        den = torch.empty(1, dtype=torch.float32, device=q.device)
    dsN = dsN.contiguous().float() if dsN is not None else None
    dec = log2_decay if log2_decay is not None else q
    has_decay = log2_decay is not None
    want_s0 = want_s0 and s0 is not None
    ds0 = torch.empty((B, H, Dk, SC), dtype=torch.float32, device=q.device) if want_s0 else None
    if N == 0:
        if want_s0:
            ds0 = dsN.clone() if dsN is not None else torch.zeros_like(ds0)
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v), ds0

    # dQ and dK reduce over the value dim: all of it in one program when Dv ≤ 128 (else fp32 partials).
    BV = _p2(Dv, 128)
    nV = triton.cdiv(Dv, BV)
    bk = {"BK": _cands(_p2(Dk, 64), _p2(Dk, 128))}
    dq = _partial(nV, q, (B, N, H, Dk))
    _launch(
        "causal_bwd_dq_kernel",
        lambda m: (triton.cdiv(Dk, m["BK"]), nV, B * H),
        (k, v, do, den, r, s0 if s0 is not None else q, dec, dq, scale, N, H, Dk, Dv, _split_stride(dq, nV)),
        dict(BT=BT, BV=BV, HAS_DECAY=has_decay, NORMALIZE=normalize, HAS_S0=s0 is not None, LOWP=lowp),
        bk,
    )  # fmt: skip
    dk = _partial(nV, k, (B, N, H, Dk))
    _launch(
        "causal_bwd_dk_kernel",
        lambda m: (triton.cdiv(Dk, m["BK"]), nV, B * H),
        (q, v, do, den, r, dsN if dsN is not None else q, dec, dk, ds0 if want_s0 else q,
         scale, N, H, Dk, Dv, _split_stride(dk, nV)),
        dict(BT=BT, BV=BV, HAS_DECAY=has_decay, NORMALIZE=normalize, HAS_DSN=dsN is not None,
             STORE_DS0=want_s0, LOWP=lowp),
        bk,
    )  # fmt: skip
    # dV reduces over the key dim: all of it in one program when Dk ≤ 128.
    BK = _p2(Dk, 128)
    nK = triton.cdiv(Dk, BK)
    dv = _partial(nK, v, (B, N, H, Dv))
    _launch(
        "causal_bwd_dv_kernel",
        lambda m: (triton.cdiv(Dv, m["BV"]), nK, B * H),
        (q, k, do, den, dsN if dsN is not None else q, dec, dv, scale, N, H, Dk, Dv, _split_stride(dv, nK)),
        dict(BT=BT, BK=BK, HAS_DECAY=has_decay, NORMALIZE=normalize, HAS_DSN=dsN is not None, LOWP=lowp),
        {"BV": _cands(_p2(Dv, 64), _p2(Dv, 128))},
    )  # fmt: skip
    dq = _reduce(dq, nV, q.dtype)
    dk = _reduce(dk, nV, k.dtype)
    dv = _reduce(dv, nK, v.dtype)
    return dq, dk, dv, ds0


def _noncausal_state_triton(k: torch.Tensor, v: torch.Tensor, normalize: bool) -> torch.Tensor:
    B, Nk, H, Dk = k.shape
    Dv = v.shape[-1]
    SC = Dv + int(normalize)
    BT = 64 if not triton_interpreter_on() else 32
    BK, BV = _p2(Dk, 64), _p2(Dv, 64)
    n_kv = triton.cdiv(Dk, BK) * triton.cdiv(Dv, BV)
    # Split the keys so that enough programs run when B·H is small or the keys are many.
    target = 2 * (torch.cuda.get_device_properties(k.device).multi_processor_count if k.is_cuda else 1)
    n_split = max(1, min(triton.cdiv(Nk, 4 * BT), triton.cdiv(target, B * H * n_kv)))
    per = triton.cdiv(triton.cdiv(Nk, n_split), BT) * BT
    n_split = max(1, triton.cdiv(Nk, per))
    part = torch.zeros((n_split, B, H, Dk, SC), dtype=torch.float32, device=k.device)
    if Nk > 0:
        _launch(
            "noncausal_state_kernel",
            lambda m: (n_kv, n_split, B * H),
            (k, v, part, Nk, H, Dk, Dv, per, part.stride(0)),
            dict(BT=BT, BK=BK, BV=BV, NORMALIZE=normalize, LOWP=_lowp(k)),
            {},
            stages=(1, 2, 3),
        )
    return part.sum(0) if n_split > 1 else part[0]


def _noncausal_out_triton(q, state, scale, eps, normalize, Dv, keep_o32):
    B, Nq, H, Dk = q.shape
    o = torch.empty((B, Nq, H, Dv), dtype=torch.float32 if keep_o32 else q.dtype, device=q.device)
    den = torch.empty((B, Nq, H), dtype=torch.float32, device=q.device)
    BK, BV = _p2(Dk, 64), _p2(Dv, 128)
    if Nq > 0:
        _launch(
            "noncausal_out_kernel",
            lambda m: (triton.cdiv(Nq, 64), triton.cdiv(Dv, BV), B * H),
            (q, state, o, den, scale, eps, Nq, H, Dk, Dv),
            dict(BM=64, BK=BK, BV=BV, NORMALIZE=normalize, LOWP=_lowp(q), NUM_F32=keep_o32),
            {},
            stages=(1, 2, 3),  # run 1 (BM=64, stages 1–3) beat run 2 (BM 64/128, stages 2–3) 2.6×; NOTES.md
        )
    return o, den


def _noncausal_cublas(q, k, v, scale, eps, normalize, keep_o32):
    """The two-batched-matmul formulation: fp32 state (Nk is the short side), GEMM in the input dtype
    (in fp32 when the normaliser's gradients need an exact output, see `causal_forward`)."""
    kt = k.permute(0, 2, 3, 1).float()  # [B, H, Dk, Nk]
    vh = v.transpose(1, 2).float()
    S = kt @ vh  # [B, H, Dk, Dv]
    qh = q.transpose(1, 2)
    num = (qh @ S.to(q.dtype)) if _lowp(q) and not keep_o32 else qh.float() @ S
    if not normalize:
        o = (num * scale) if scale != 1.0 else num
        return o.transpose(1, 2).to(q.dtype), S, None
    z = kt.sum(-1)  # [B, H, Dk]
    den = (qh.float() @ z[..., None]).squeeze(-1) * scale + eps  # fp32 denominator [B, H, Nq]
    o = num.float() * (scale / den[..., None])
    state = torch.cat([S, z[..., None]], dim=-1)
    o = o.transpose(1, 2)
    return (o if keep_o32 else o.to(q.dtype)), state, den.transpose(1, 2).contiguous()


def _noncausal_auto(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    # Decided from the H100 measurements recorded in NOTES.md (Triton fuses the normaliser and the division).
    return "triton"


def noncausal_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    eps: float,
    normalize: bool,
    impl: str,
    keep_o32: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Non-causal forward (`impl` "triton" or "cublas"): `(o, key state, o for the backward, den or None)`.

    `keep_o32` as in `causal_forward`. The cuBLAS path returns o (and the saved o) as a transposed view
    ([B, H, N, Dv] in memory); the Triton path's are contiguous. den (fp32 [B, Nq, H]) is None without the
    normaliser."""
    Dv = v.shape[-1]
    if impl == "cublas":
        o, state, den = _noncausal_cublas(q, k, v, scale, eps, normalize, keep_o32)
    else:
        state = _noncausal_state_triton(k, v, normalize)
        o, den = _noncausal_out_triton(q, state, scale, eps, normalize, Dv, keep_o32)
    return o.to(q.dtype), state, o, (den if normalize else None)


def noncausal_backward(
    do: torch.Tensor,
    dstate: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    den: torch.Tensor | None,
    state: torch.Tensor,
    scale: float,
    normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of `noncausal_forward` (o, den and state as it returned them): four GEMMs in torch fp32."""
    Dv = v.shape[-1]
    qh, kh, vh = (t.transpose(1, 2).float() for t in (q, k, v))  # [B, H, N, D]
    g = do.transpose(1, 2).float()
    S = state[..., :Dv]
    if normalize:
        denh = den.transpose(1, 2)[..., None]  # [B, H, Nq, 1]
        r = -(g * o.transpose(1, 2).float()).sum(-1, keepdim=True) / denh
        g = g / denh
        z = state[..., Dv:]  # [B, H, Dk, 1]
    dq = g @ S.transpose(-1, -2)
    dS = qh.transpose(-1, -2) @ g * scale  # [B, H, Dk, Dv]
    if normalize:
        dq = dq + r @ z.transpose(-1, -2)
        dz = qh.transpose(-1, -2) @ r * scale  # [B, H, Dk, 1]
    if dstate is not None:
        dS = dS + dstate[..., :Dv]
        if normalize:
            dz = dz + dstate[..., Dv:]
    dk = vh @ dS.transpose(-1, -2)
    if normalize:
        dk = dk + dz.transpose(-1, -2)
    dv = kh @ dS
    back = (dq * scale, dk, dv)
    dq, dk, dv = (t.transpose(1, 2).to(x.dtype) for t, x in zip(back, (q, k, v)))
    return dq, dk, dv


def linear_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    decay: torch.Tensor | None = None,
    normalize: bool = True,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    eps: float = DEFAULT_EPS,
    chunk_size: int = CHUNK,
    noncausal_impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton linear attention; same contract as `reference.linear_attention_parallel` (fp16/bf16/fp32).

    The kernels run inside torch.library custom ops (`custom_ops.py`), so torch.compile traces this function
    whole (no graph break); in eager mode the ops run the same launchers as a plain autograd.Function would."""
    from flurka.ops.linear import custom_ops  # here, not at the top: custom_ops imports this module's launchers

    a = check_args(q, k, v, causal=causal, decay=decay, normalize=normalize, scale=scale, initial_state=initial_state)
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"the Triton path takes fp16/bf16/fp32; got {q.dtype} (use backend='torch')")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two ≥ 16; got {chunk_size}")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if not causal:
        if noncausal_impl not in NONCAUSAL_IMPLS:
            raise ValueError(f"noncausal_impl must be one of {NONCAUSAL_IMPLS}; got {noncausal_impl!r}")
        impl = _noncausal_auto(q, k, v) if noncausal_impl == "auto" else noncausal_impl
        o, state = custom_ops.noncausal_linear(q, k, v, a.scale, eps, normalize, impl)
        return o, (state if output_final_state else None)
    if decay is not None and decay.requires_grad and torch.is_grad_enabled():
        raise ValueError("the Triton path treats decay as a constant; pass decay.detach() or use backend='torch'")
    log2_decay = None if decay is None else _log2_decay(decay)
    s0 = None if initial_state is None else initial_state.float().contiguous()
    return custom_ops.causal_linear(q, k, v, s0, log2_decay, a.scale, eps, normalize, output_final_state, chunk_size)
