"""flash_attention: the reference against an explicit per-row fp64 softmax, and the Triton kernel (interpreter,
tiny shapes, fp32) against the reference, outputs and gradients of q, k, v within 1e-4 relative."""

from __future__ import annotations

import math

import pytest
import torch

from flurka.ops.flash import attention_reference, flash_attention
from flurka.ops.testing import assert_rel_close

TOL = 1e-4
# the kernel tests run the real kernel in fp32 on a GPU when there is one, else the interpreter on CPU
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def explicit_attention(q, k, v, *, causal, scale, padding_mask):
    """Row by row in float64 with Python-level visibility rules: independent of the reference's tensor masks."""
    B, nq, H, _ = q.shape
    nk = k.shape[1]
    out = torch.zeros(B, nq, H, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for i in range(nq):
                js = [
                    j
                    for j in range(nk)
                    if (not causal or j <= i + nk - nq) and (padding_mask is None or bool(padding_mask[b, j]))
                ]
                if not js:
                    continue  # no visible key: the row is 0
                s = torch.tensor(
                    [float(q[b, i, h].double() @ k[b, j, h].double()) * scale for j in js], dtype=torch.float64
                )
                p = torch.exp(s - s.max())
                p = p / p.sum()
                out[b, i, h] = sum(p[t] * v[b, j, h].double() for t, j in enumerate(js))
    return out


def _inputs(B, nq, nk, H, D, dtype=torch.float32, grad=False, device="cpu"):
    q = torch.randn(B, nq, H, D, dtype=dtype, device=device, requires_grad=grad)
    k = torch.randn(B, nk, H, D, dtype=dtype, device=device, requires_grad=grad)
    v = torch.randn(B, nk, H, D, dtype=dtype, device=device, requires_grad=grad)
    return q, k, v


@pytest.mark.parametrize(
    ("nq", "nk", "causal", "pad"),
    [(7, 7, False, False), (7, 7, True, False), (5, 9, True, False), (9, 5, True, False), (6, 8, False, True),
     (8, 6, True, True)],
)  # fmt: skip
def test_reference_matches_explicit_softmax(nq, nk, causal, pad):
    B, H, D = 2, 2, 8
    q, k, v = _inputs(B, nq, nk, H, D, dtype=torch.float64)
    pm = torch.rand(B, nk) > 0.4 if pad else None
    if pad:
        pm[1] = False  # a batch with every key padded: all its rows are empty
    scale = 0.3
    got = attention_reference(q, k, v, causal=causal, scale=scale, padding_mask=pm)
    want = explicit_attention(q, k, v, causal=causal, scale=scale, padding_mask=pm)
    assert got.dtype == torch.float64
    assert_rel_close(got, want, 1e-12, "reference vs explicit")


def test_reference_default_scale_and_dtype():
    q, k, v = _inputs(1, 5, 5, 1, 16)
    got = attention_reference(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.dtype == torch.bfloat16
    want = explicit_attention(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), causal=False,
                              scale=1 / math.sqrt(16), padding_mask=None)  # fmt: skip
    assert_rel_close(got.float(), want.float(), 1e-2, "bf16 reference")


def test_reference_empty_rows_zero_output_and_grads():
    # causal with Nq > Nk: the first Nq - Nk queries see nothing
    q, k, v = _inputs(1, 6, 3, 1, 4, grad=True)
    o = attention_reference(q, k, v, causal=True)
    assert torch.isfinite(o).all()
    assert (o[:, :3] == 0).all() and (o[:, 3:] != 0).any()
    o.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, :3] == 0).all()


def test_bad_shapes_raise():
    q, k, v = _inputs(1, 4, 4, 1, 8)
    with pytest.raises(ValueError, match="B, N, H, D"):
        flash_attention(q[0], k, v)
    with pytest.raises(ValueError, match="padding_mask"):
        flash_attention(q, k, v, padding_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown backend"):
        flash_attention(q, k, v, backend="cuda")


def test_auto_backend_on_cpu_is_reference():
    q, k, v = _inputs(1, 5, 5, 2, 8)
    assert torch.equal(flash_attention(q, k, v, causal=True), attention_reference(q, k, v, causal=True))


# --------------------------------------------------------------------------------------------------------------
# Triton kernel in the interpreter
# --------------------------------------------------------------------------------------------------------------
CASES = [
    # B, H, Nq, Nk, D, causal, pad
    (1, 1, 1, 1, 16, False, False),
    (1, 2, 17, 17, 16, False, False),
    (1, 1, 33, 33, 32, True, False),
    (2, 1, 70, 70, 60, True, False),  # D=60: padded to 64 and masked
    (1, 1, 70, 70, 16, False, False),
    (1, 1, 17, 40, 32, True, False),  # cross-attention, bottom-right causal
    (1, 1, 40, 17, 16, True, False),  # Nq > Nk: the first rows see nothing
    (2, 1, 33, 17, 16, False, True),  # padding mask, one batch fully padded
    (1, 2, 33, 33, 16, True, True),
    (1, 1, 17, 17, 96, False, False),  # D=96: padded to 128
    (1, 1, 17, 20, 325, True, False),  # D=325 (FLuRKA Fig. 3): padded to 512
]


@pytest.mark.interpret
@pytest.mark.parametrize(("B", "H", "nq", "nk", "D", "causal", "pad"), CASES)
def test_triton_matches_reference(B, H, nq, nk, D, causal, pad):
    if D > 256 and DEV == "cuda":
        pytest.skip("fp32 tiles at BLOCK_D=512 exceed shared memory on GPUs; wide heads are checked in bf16 there")
    q, k, v = _inputs(B, nq, nk, H, D, grad=True, device=DEV)
    pm = None
    if pad:
        pm = torch.rand(B, nk, device=DEV) > 0.3
        pm[0, -1] = False
        if B > 1:
            pm[1] = False
    scale = None if D != 16 else 0.7
    do = torch.randn(B, nq, H, D, device=DEV)
    o = flash_attention(q, k, v, causal=causal, scale=scale, padding_mask=pm, backend="triton")
    grads = torch.autograd.grad(o, (q, k, v), do)
    o_ref = attention_reference(q, k, v, causal=causal, scale=scale, padding_mask=pm)
    grads_ref = torch.autograd.grad(o_ref, (q, k, v), do)
    assert o.dtype == q.dtype
    assert_rel_close(o, o_ref, TOL, "out")
    for name, g, gr in zip("qkv", grads, grads_ref):
        assert_rel_close(g, gr, TOL, f"d{name}")


@pytest.mark.interpret
def test_triton_empty_rows_are_zero_without_nan():
    q, k, v = _inputs(2, 20, 18, 1, 16, grad=True, device=DEV)
    pm = torch.ones(2, 18, dtype=torch.bool, device=DEV)
    pm[1] = False
    o = flash_attention(q, k, v, causal=True, padding_mask=pm, backend="triton")
    assert torch.isfinite(o).all()
    assert (o[0, :2] == 0).all(), "causal rows before the first key (Nq > Nk) must be 0"
    assert (o[1] == 0).all(), "a fully padded batch must output 0"
    o.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[1] == 0).all() and (k.grad[1] == 0).all() and (v.grad[1] == 0).all()
    assert (q.grad[0, :2] == 0).all()


@pytest.mark.interpret
def test_triton_noncontiguous_inputs():
    # [B, H, N, D] storage viewed as [B, N, H, D]: strided rows must be honoured
    q, k, v = (torch.randn(1, 2, 19, 32, device=DEV).transpose(1, 2) for _ in range(3))
    o = flash_attention(q, k, v, causal=True, backend="triton")
    assert_rel_close(o, attention_reference(q, k, v, causal=True), TOL, "strided")


# --------------------------------------------------------------------------------------------------------------
# TMA (tensor-descriptor) loads: the same kernels with Hopper's bulk copies in place of pointer loads
# --------------------------------------------------------------------------------------------------------------
def _run_with_tma(mode, monkeypatch, q, k, v, *, causal, pm, do):
    monkeypatch.setenv("FLURKA_FLASH_TMA", mode)
    ins = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    o = flash_attention(*ins, causal=causal, padding_mask=pm, backend="triton")
    return (o, *torch.autograd.grad(o, ins, do))


TMA_CASES = [
    # Nq, Nk, D, causal, pad, dtype
    (33, 33, 32, True, False, torch.float32),
    (33, 33, 64, False, False, torch.float32),
    (17, 40, 32, True, False, torch.float32),  # cross-attention, bottom-right causal; rows past Nq read 0
    (40, 17, 16, True, True, torch.float32),  # Nq > Nk (empty rows) with a padding mask
    # 16-bit tiles: fp16, because the interpreter multiplies bf16 dot operands as raw bits (triton-lang/triton#11584,
    # "not supported yet"); the GPU tier checks the TMA path in bf16
    (45, 45, 32, True, False, torch.float16),
]


@pytest.mark.interpret
@pytest.mark.parametrize(("nq", "nk", "D", "causal", "pad", "dtype"), TMA_CASES)
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "qkv-views"])
def test_tma_loads_equal_pointer_loads(monkeypatch, nq, nk, D, causal, pad, dtype, fused):
    """Every tile the TMA path reads is the tile the pointer path reads (out-of-range rows as 0): outputs and
    gradients are bitwise equal, for separate tensors and for q/k/v viewed out of one fused projection."""
    from flurka.ops.flash import _kernels as K

    B, H = 2, 2
    if fused:  # q, k, v as strided views of one [B, N, 3, H, D] tensor (a fused qkv GEMM's output)
        qkv = torch.randn(B, max(nq, nk), 3, H, D, device=DEV).to(dtype)
        q, k, v = qkv[:, :nq, 0], qkv[:, :nk, 1], qkv[:, :nk, 2]
    else:
        q, k, v = (t.to(dtype) for t in _inputs(B, nq, nk, H, D, device=DEV))
    pm = (torch.rand(B, nk, device=DEV) > 0.3) if pad else None
    do = torch.randn(B, nq, H, D, device=DEV).to(dtype)
    pointer = _run_with_tma("off", monkeypatch, q, k, v, causal=causal, pm=pm, do=do)
    tma = _run_with_tma("only", monkeypatch, q, k, v, causal=causal, pm=pm, do=do)
    used = {key[0] for key in K._AUTOTUNED if key[2] and key[4] == "only"}
    assert used == {"fwd", "dkdv", "dq"}, f"the TMA kernels did not run: {sorted(K._AUTOTUNED)}"
    for name, a, b in zip(["o", "dq", "dk", "dv"], pointer, tma):
        assert torch.equal(a, b), f"{name}: TMA loads differ from pointer loads (max {(a - b).abs().max():.3g})"
    want = attention_reference(q.float(), k.float(), v.float(), causal=causal, padding_mask=pm)
    assert_rel_close(tma[0].float(), want, TOL if dtype == torch.float32 else 5e-3, "TMA out vs reference")


@pytest.mark.interpret
def test_tma_is_used_only_where_the_hardware_rules_hold(monkeypatch):
    """Descriptors are built for dense launches at D = BLOCK_D <= 128 with 16-byte aligned strides; SCFA's
    gathered rows, padded heads, wide heads, misaligned views and FLURKA_FLASH_TMA=off stay on pointer loads."""
    from flurka.ops.flash.core import SparseRanges, _descriptors

    monkeypatch.setenv("FLURKA_FLASH_TMA", "auto")
    x = torch.randn(2, 40, 2, 64)
    assert _descriptors(x, x, ranges=None) is not None
    assert _descriptors(torch.randn(2, 40, 2, 60), ranges=None) is None, "D=60 pads to 64: lanes of the next head"
    assert _descriptors(torch.randn(2, 40, 2, 256), ranges=None) is None, "wide heads keep their small tiles"
    odd = torch.randn(2, 40, 2 * 64 + 1)[..., 1:].unflatten(-1, (2, 64))  # base 4 bytes off alignment
    assert _descriptors(odd, ranges=None) is None
    strided = torch.randn(2, 40, 2, 72)[..., :64]  # row stride 72 * 4 bytes is 16-aligned, 72 * 2 is not
    assert _descriptors(strided, ranges=None) is not None
    assert _descriptors(strided.bfloat16()[..., :64], ranges=None) is not None
    assert _descriptors(torch.randn(2, 40, 2, 68, dtype=torch.bfloat16)[..., :64], ranges=None) is None
    ranges = SparseRanges(*(torch.zeros(4, 40, dtype=torch.int32) for _ in range(6)))
    assert _descriptors(x, ranges=ranges) is None, "SCFA gathers rows: no TMA"
    monkeypatch.setenv("FLURKA_FLASH_TMA", "off")
    assert _descriptors(x, ranges=None) is None
    monkeypatch.setenv("FLURKA_FLASH_TMA", "sometimes")
    with pytest.raises(ValueError, match="auto, off or only"):
        _descriptors(x, ranges=None)
