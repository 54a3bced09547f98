"""Chunked linear + cross-entropy: the LM-head loss without the `[T, V]` logits (Liger-Kernel's technique).

The reference builds `logits = x Wᵀ` for all T tokens, keeps it for backward and then builds its gradient of
the same size: at T = 16k, V = 50k that is ~3.3 GB of fp32 logits plus as much for `dlogits`. Here forward walks
over chunks of `chunk_tokens` tokens and, per chunk:

1. `logits_c = x_c Wᵀ` in the compute dtype (bf16 under autocast; the matmul accumulates in fp32);
2. in fp32: `lse = logsumexp(logits_c)`, loss += `Σ (lse − logits_c[target])` over non-ignored tokens;
3. if a gradient is wanted, `g = (softmax(logits_c) − onehot(target)) / n_valid` right away (cast to the
   compute dtype, as autograd casts `dlogits` for the reference's bf16 matmul), then `grad_x_c = g W` and
   `grad_W += gᵀ x_c`.

Only the finished `grad_x` and `grad_W` are saved; backward just multiplies them by the (scalar) upstream
gradient. Peak extra memory is O(chunk_tokens · V) instead of O(T · V). The cost: forward does the backward's
two matmuls too, so an eval-only call must say so (no grad mode or no input that requires grad), and then the
gradient work is skipped.

Dtype decisions:
- Compute dtype: what autocast would give the reference's matmul (autocast's dtype for fp16/bf16/fp32 inputs
  when it is on for `x`'s device, fp64 untouched), else the inputs' own dtype; x and W must agree, as the
  reference's matmul requires.
- Softmax/loss math: fp32 (fp64 for fp64 inputs), like the reference's `logits.float()`.
- `grad_W` is accumulated in fp32 (fp64 for fp64), then cast to `weight.dtype`. The reference gets `grad_W` from
  one matmul over all T tokens with an fp32 accumulator and a single rounding; summing T / chunk_tokens chunk
  products in bf16 would add one bf16 rounding per chunk (hundreds of chunks at long context), so the accumulator
  must be fp32. It costs V·d fp32, the same as the fp32 parameter's own `.grad`.
- The two gradient matmuls take fp32 results straight from cuBLAS on CUDA (`mm/addmm(out_dtype=fp32)`). That is
  not a nicety: `g W` contracts over V (50k) into a chunk-sized output, and for so few output tiles cuBLAS picks
  split-K with a bf16 reduction (`allow_bf16_reduced_precision_reduction`), which measured 2.2x the reference's
  `grad_x` error on an H200 (chunk 1024, V 50257); the fp32 output removes it. Elsewhere (CPU accumulates in
  fp32 and rounds once) the product is rounded to the compute dtype, as in the reference.
- The logits stay rounded to the compute dtype, as the reference's are, so the loss matches it to fp32 noise.
- `grad_x` comes back in `x.dtype`, `grad_W` in `weight.dtype`, like the reference's autocast casts.

Labels out of range: `F.cross_entropy` raises on CPU and device-asserts on CUDA. We check explicitly (ValueError)
only for CPU labels, where the check costs no device sync; on CUDA the `gather`/`scatter` of an out-of-range
target trips the same device-side assert, so a bad label is never a silent wrong answer, and the hot path never
waits on the host.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# A chunk's fp32 logits are at most 2**26 elements = 256 MiB.
_MAX_CHUNK_LOGITS = 2**26
VOCAB_ALIGN = 64  # the head's rows are padded to a multiple of this (see `forward`)
# `mm`/`addmm` with an fp32 result for bf16/fp16 inputs (PyTorch ≥ 2.8; CUDA kernels only).
_HAS_OUT_DTYPE = hasattr(torch.ops.aten.mm, "dtype") and hasattr(torch.ops.aten.addmm, "dtype")


def _fp32_out(a: torch.Tensor, acc: torch.dtype) -> bool:
    return _HAS_OUT_DTYPE and a.is_cuda and a.dtype in (torch.bfloat16, torch.float16) and acc == torch.float32


def default_chunk_tokens(vocab_size: int) -> int:
    """Largest power of two ≤ 2**26 / V (at least 1): a chunk's fp32 logits stay ≤ 256 MiB.

    A power of two keeps the matmul's row count tile-friendly. The softmax in place plus the compute-dtype copy
    of the gradient put the chunk's peak at roughly 2-3x that.
    """
    n = max(1, _MAX_CHUNK_LOGITS // max(1, vocab_size))
    return 1 << (n.bit_length() - 1)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the reference's `x @ weight.T` would run in (autocast casts fp16/bf16/fp32, never fp64)."""
    dev = x.device.type
    dx, dw = x.dtype, weight.dtype
    if torch.is_autocast_enabled(dev):
        ac = torch.get_autocast_dtype(dev)
        eligible = (torch.float16, torch.bfloat16, torch.float32)
        dx = ac if dx in eligible else dx
        dw = ac if dw in eligible else dw
    if dx != dw:
        raise TypeError(
            f"linear_cross_entropy: x ({x.dtype}) and weight ({weight.dtype}) must have the same dtype outside "
            "autocast, as for x @ weight.T"
        )
    return dx


def _check_labels(labels: torch.Tensor, vocab_size: int, ignore_index: int) -> None:
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices; got {labels.dtype}")
    if labels.device.type != "cpu" or labels.numel() == 0:
        return  # no host sync on accelerators: an out-of-range target device-asserts in gather/scatter there
    bad = ((labels < 0) | (labels >= vocab_size)) & (labels != ignore_index)
    if bool(bad.any()):
        first = int(labels[bad][0])
        raise ValueError(
            f"labels must be in [0, {vocab_size}) or equal ignore_index={ignore_index}; found {first} "
            f"({int(bad.sum())} bad labels)"
        )


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss and both gradients in one chunked forward; backward only rescales the saved gradients."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,  # [T, d]
        weight: torch.Tensor,  # [V, d]
        labels: torch.Tensor,  # [T] int64
        ignore_index: int,
        chunk_tokens: int,
        compute_dtype: torch.dtype,
        need_x: bool,
        need_w: bool,
    ) -> torch.Tensor:
        T, d = x.shape
        V = weight.shape[0]
        acc = torch.promote_types(compute_dtype, torch.float32)
        need_grad = need_x or need_w
        xc = x.to(compute_dtype)
        # The head padded with zero rows to a multiple of VOCAB_ALIGN: with GPT-2's odd 50257 a logits row is not
        # 16-byte aligned, and cuBLAS then falls back to sm75 "align1" kernels, measured at 34 of a GPT-2 step's
        # 86 busy ms on the H200 (nanoGPT pads its vocabulary to 50304 for the same reason). The padded logits
        # are set to -inf, so they add nothing to the log-sum-exp and get no gradient.
        v_pad = -(-V // VOCAB_ALIGN) * VOCAB_ALIGN
        if v_pad == V:  # already aligned (e.g. our 8000-token vocabularies): no padded copy, only the cast if any
            w = weight.to(compute_dtype)  # never written to, so the head itself may serve
        else:
            w = weight.new_zeros((v_pad, d), dtype=compute_dtype)
            w[:V] = weight

        valid = labels != ignore_index
        n_valid = valid.sum().to(acc)  # stays on the device: no sync
        # 0 valid tokens: the loss is 0 / 0 = nan and the gradients are 0, as F.cross_entropy gives.
        grad_scale = valid.to(acc) / n_valid.clamp(min=1)  # per-token weight of (softmax − onehot)
        safe = torch.where(valid, labels, torch.zeros_like(labels))[:, None]  # ignored rows point at class 0

        total = torch.zeros((), dtype=acc, device=x.device)
        fp32_out = _fp32_out(xc, acc)  # the gradient matmuls' inputs are in the compute dtype, as xc
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros((v_pad, d), dtype=acc, device=weight.device) if need_w else None
        for s in range(0, T, chunk_tokens):
            e = min(s + chunk_tokens, T)
            x_c, t_c = xc[s:e], safe[s:e]
            logits = (x_c @ w.T).to(acc)  # [c, v_pad]; a fresh tensor, so the in-place ops below are safe
            logits[:, V:] = float("-inf")
            lse = torch.logsumexp(logits, dim=1)
            nll = lse - logits.gather(1, t_c).squeeze(1)
            total += torch.where(valid[s:e], nll, torch.zeros_like(nll)).sum()
            if not need_grad:
                continue
            p = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            p.scatter_add_(1, t_c, p.new_full(t_c.shape, -1.0))  # − onehot(target)
            p.mul_(grad_scale[s:e, None])  # / n_valid; ignored rows → 0
            g = p.to(compute_dtype)
            del logits, p
            if grad_x is not None:  # copy_ casts to x.dtype
                grad_x[s:e] = torch.mm(g, w, out_dtype=acc) if fp32_out else g @ w
            if grad_w is not None:
                if fp32_out:
                    torch.addmm(grad_w, g.T, x_c, out_dtype=acc, out=grad_w)
                elif g.dtype == acc:
                    grad_w.addmm_(g.T, x_c)
                else:
                    grad_w += g.T @ x_c
        ctx.save_for_backward(grad_x, None if grad_w is None else grad_w[:V].to(weight.dtype))
        return total / n_valid

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_x, grad_w = ctx.saved_tensors
        gx = None if grad_x is None else grad_x * grad_out.to(grad_x.dtype)
        gw = None if grad_w is None else grad_w * grad_out.to(grad_w.dtype)
        return gx, gw, None, None, None, None, None, None


@torch.compiler.disable
def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of `x [..., d] @ weight [V, d]ᵀ` against `labels [...]`, never building `[T, V]`.

    Same value and gradients (for `x` and `weight`) as `linear_cross_entropy_reference`, including under
    autocast. `chunk_tokens` defaults to `default_chunk_tokens(V)`. `torch.compile` is kept out
    (`compiler.disable`): Dynamo would unroll the chunk loop (compile time growing with T / chunk_tokens) and the
    CPU label check syncs anyway; the graph breaks only at the loss.
    """
    if x.dim() < 1:
        raise ValueError("x must be [..., d]; got a 0-dim tensor")
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(f"weight must be [V, {x.shape[-1]}] to match x {tuple(x.shape)}; got {tuple(weight.shape)}")
    V, d = weight.shape
    if labels.shape != x.shape[:-1]:
        raise ValueError(
            f"labels {tuple(labels.shape)} must match x's leading dimensions {tuple(x.shape[:-1])} (x is [..., d])"
        )
    if chunk_tokens is None:
        chunk_tokens = default_chunk_tokens(V)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be ≥ 1; got {chunk_tokens}")
    _check_labels(labels, V, ignore_index)
    compute_dtype = _compute_dtype(x, weight)

    grad_on = torch.is_grad_enabled()
    need_x, need_w = grad_on and x.requires_grad, grad_on and weight.requires_grad
    x2 = x.reshape(-1, d)
    T = x2.shape[0]
    # Our casts are explicit; autocast off inside so no op is re-cast behind our back.
    with torch.autocast(x.device.type, enabled=False):
        return _LinearCrossEntropy.apply(
            x2,
            weight,
            labels.reshape(-1).long(),
            ignore_index,
            min(chunk_tokens, max(T, 1)),
            compute_dtype,
            need_x,
            need_w,
        )
