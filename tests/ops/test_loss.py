"""The chunked LM-head loss (`flurka.ops.loss`) against its reference.

Loss and the gradients of both the hidden states and the head weight: fp64 (to ~1e-12), fp32 (1e-5) and CPU bf16
autocast (at most twice the reference's own bf16 error, plus a floor), with chunks that do not divide the tokens,
leading dims, ignored labels, no valid label at all, a tied head, eval mode, and the memory claim itself: no op
ever produces a tensor as large as the `[T, V]` logits.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from flurka.ops.loss import default_chunk_tokens, linear_cross_entropy, linear_cross_entropy_reference
from flurka.ops.loss.chunked import VOCAB_ALIGN
from flurka.ops.testing import rel_err

V, D = 257, 60
BF16_FLOOR = 1e-3  # absolute slack on the relative error, where the reference's own bf16 error is tiny


def _inputs(shape, d=D, vocab=V, dtype=torch.float32, ignored=0.25, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, d, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(vocab, d, generator=g) / d**0.5).to(dtype).requires_grad_()
    labels = torch.randint(vocab, shape, generator=g)
    labels[torch.rand(shape, generator=g) < ignored] = -100
    return x, w, labels


def _run(fn, x, w, labels, *, autocast=False, scale=1.7, **kw):
    """(loss, dx, dW) of `scale · fn(...)`'s backward: the upstream gradient is not 1, so backward must use it."""
    x.grad = w.grad = None
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = fn(x, w, labels, **kw)
    (scale * loss).backward()
    return loss.detach(), x.grad.clone(), w.grad.clone()


def _as64(*ts):
    return [t.detach().double().requires_grad_() for t in ts]


@pytest.mark.parametrize("chunk", [1, 8, 37, 1000, None])
@pytest.mark.parametrize("shape", [(37,), (3, 13)])
@pytest.mark.parametrize("vocab", [V, 2 * VOCAB_ALIGN], ids=["padded-head", "aligned-head"])
def test_matches_the_reference_in_fp64(shape, chunk, vocab):
    x, w, labels = _inputs(shape, vocab=vocab, dtype=torch.float64)
    want = _run(linear_cross_entropy_reference, x, w, labels)
    got = _run(linear_cross_entropy, x, w, labels, chunk_tokens=chunk)
    for name, a, b in zip(("loss", "dx", "dW"), got, want, strict=True):
        assert a.dtype == b.dtype == torch.float64, name
        assert rel_err(a, b) < 1e-12, f"{name}: {rel_err(a, b):.2e}"


@pytest.mark.parametrize("chunk", [1, 8, 1000])
def test_matches_the_reference_in_fp32(chunk):
    x, w, labels = _inputs((3, 13))
    want = _run(linear_cross_entropy_reference, x, w, labels)
    got = _run(linear_cross_entropy, x, w, labels, chunk_tokens=chunk)
    for name, a, b in zip(("loss", "dx", "dW"), got, want, strict=True):
        assert a.dtype == b.dtype == torch.float32, name
        assert a.shape == b.shape, name
        assert rel_err(a, b) < 1e-5, f"{name}: {rel_err(a, b):.2e}"


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab", [V, 2 * VOCAB_ALIGN], ids=["padded-head", "aligned-head"])
def test_bf16_autocast_is_as_accurate_as_the_reference(x_dtype, vocab):
    """Both round the matmuls (and `dlogits`) to bf16; ours may differ from the autocast reference by at most
    twice the reference's own error against fp64, plus a floor. x may be a bf16 activation, W an fp32 param.
    An aligned head (V a multiple of VOCAB_ALIGN) is used as it is, without the padded copy."""
    x, w, labels = _inputs((3, 13), vocab=vocab, dtype=torch.float32)
    x = x.detach().to(x_dtype).requires_grad_()
    truth = _run(linear_cross_entropy_reference, *_as64(x, w), labels)
    ref = _run(linear_cross_entropy_reference, x, w, labels, autocast=True)
    got = _run(linear_cross_entropy, x, w, labels, autocast=True, chunk_tokens=8)
    for name, g, r, t in zip(("loss", "dx", "dW"), got, ref, truth, strict=True):
        assert g.dtype == r.dtype, name  # loss fp32, dx in x's dtype, dW in the fp32 param's dtype
        e_ref = rel_err(r, t)
        assert rel_err(g, r) <= 2 * e_ref + BF16_FLOOR, f"{name}: vs reference {rel_err(g, r):.2e}, ref {e_ref:.2e}"
        assert rel_err(g, t) <= 2 * e_ref + BF16_FLOOR, f"{name}: vs fp64 {rel_err(g, t):.2e}, ref {e_ref:.2e}"
    assert got[1].dtype == x_dtype and got[2].dtype == torch.float32


def test_a_custom_ignore_index_inside_the_vocabulary():
    x, w, labels = _inputs((37,), dtype=torch.float64, ignored=0.0)
    labels[::3] = 5  # e.g. the pad token id
    want = _run(linear_cross_entropy_reference, x, w, labels, ignore_index=5)
    got = _run(linear_cross_entropy, x, w, labels, ignore_index=5, chunk_tokens=8)
    for name, a, b in zip(("loss", "dx", "dW"), got, want, strict=True):
        assert rel_err(a, b) < 1e-12, name


def test_eval_gives_the_same_loss_and_skips_the_gradient_matmuls():
    x, w, labels = _inputs((37,))
    want = linear_cross_entropy_reference(x, w, labels).detach()
    with _Recorder() as train:
        linear_cross_entropy(x, w, labels, chunk_tokens=8)
    with torch.no_grad(), _Recorder() as ev:
        got = linear_cross_entropy(x, w, labels, chunk_tokens=8)
    assert got.grad_fn is None
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    assert ev.matmuls == 5 and train.matmuls == 15  # ⌈37 / 8⌉ chunks: logits only vs logits, dx and dW
    frozen = linear_cross_entropy(x.detach(), w.detach(), labels, chunk_tokens=8)  # nothing requires grad
    assert frozen.grad_fn is None
    torch.testing.assert_close(frozen, want, rtol=1e-6, atol=0)


def test_only_the_requested_gradients_are_computed():
    x, w, labels = _inputs((20,), dtype=torch.float64)
    for need_x in (True, False):
        xi, wi = x.detach().requires_grad_(need_x), w.detach().requires_grad_(not need_x)
        leaf = xi if need_x else wi
        want = torch.autograd.grad(linear_cross_entropy_reference(xi, wi, labels), leaf)[0]
        linear_cross_entropy(xi, wi, labels, chunk_tokens=6).backward()
        assert rel_err(leaf.grad, want) < 1e-12
        assert (wi if need_x else xi).grad is None


@pytest.mark.parametrize("n", [9, 0])
def test_no_valid_label_gives_the_references_nan_and_zero_gradients(n):
    x, w, labels = _inputs((n,), ignored=1.0)
    want = _run(linear_cross_entropy_reference, x, w, labels)
    got = _run(linear_cross_entropy, x, w, labels, chunk_tokens=4)
    assert torch.isnan(want[0]) and torch.isnan(got[0])
    for a, b in zip(got[1:], want[1:], strict=True):
        assert a.shape == b.shape and not a.any() and not b.any()


def test_a_tied_head_gets_both_gradients():
    """GPT ties the head to the token embedding: autograd adds the head's gradient to the embedding's."""
    emb = torch.nn.Embedding(31, 12).double()
    ids = torch.randint(31, (2, 9), generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (linear_cross_entropy_reference, linear_cross_entropy):
        emb.zero_grad()
        fn(torch.tanh(emb(ids)), emb.weight, ids.roll(-1, 1)).backward()
        grads.append(emb.weight.grad.clone())
    assert rel_err(grads[1], grads[0]) < 1e-12


class _Recorder(TorchDispatchMode):
    """Records the largest tensor any aten op produces, and how many matmuls run."""

    def __init__(self) -> None:
        super().__init__()
        self.max_numel, self.matmuls = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.matmuls += func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_no_tensor_is_as_large_as_the_logits():
    """Forward and backward: every tensor any op makes is at most a chunk of logits, dW, or x-sized."""
    T, vocab, d, chunk = 200, 257, 8, 8
    x, w, labels = _inputs((T,), d=d, vocab=vocab)
    v_pad = -(-vocab // VOCAB_ALIGN) * VOCAB_ALIGN  # the head is padded to aligned rows
    bound = max(chunk * v_pad, v_pad * d, T * d)
    assert bound * 10 < T * vocab
    for fn, kw in ((linear_cross_entropy_reference, {}), (linear_cross_entropy, {"chunk_tokens": chunk})):
        with _Recorder() as rec:
            fn(x, w, labels, **kw).backward()
        if fn is linear_cross_entropy_reference:
            assert rec.max_numel >= T * vocab  # the recorder does see the reference's full logits
        else:
            assert rec.max_numel <= bound, f"{rec.max_numel} > {bound}"


def test_default_chunk_keeps_fp32_logits_under_256_mib():
    for vocab in (1, 65, 257, 32000, 50257, 128256, 10**9):
        c = default_chunk_tokens(vocab)
        assert c >= 1 and c & (c - 1) == 0  # a power of two
        assert c == 1 or c * vocab * 4 <= 2**28
        assert 2 * c * vocab * 4 > 2**28 or c == 2**26  # and not needlessly small
    assert default_chunk_tokens(50257) == 1024


def test_integer_labels_of_any_width():
    x, w, labels = _inputs((11,), dtype=torch.float64)
    want = linear_cross_entropy_reference(x, w, labels)
    assert rel_err(linear_cross_entropy(x, w, labels.int(), chunk_tokens=4), want) < 1e-12


def test_bad_arguments_raise_clear_errors():
    x, w, labels = _inputs((10,), d=8, vocab=20)
    for bad in (20, -3):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 20\)"):
            linear_cross_entropy(x, w, torch.full((10,), bad))
    with pytest.raises(TypeError, match="integer class indices"):
        linear_cross_entropy(x, w, labels.float())
    with pytest.raises(ValueError, match="must match x's leading dimensions"):
        linear_cross_entropy(x, w, labels[:5])
    with pytest.raises(ValueError, match=r"weight must be \[V, 8\]"):
        linear_cross_entropy(x, w.T, labels)
    with pytest.raises(ValueError, match="chunk_tokens"):
        linear_cross_entropy(x, w, labels, chunk_tokens=0)
    with pytest.raises(TypeError, match="same dtype"):  # as the reference's matmul refuses outside autocast
        linear_cross_entropy(x.bfloat16(), w, labels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run through the device tool)")
def test_on_the_gpu_at_gpt2s_vocabulary_under_bf16_autocast():
    """Chunks of 1000 tokens at V = 50257: the gradient matmuls contract over V into chunk-sized outputs, where
    cuBLAS's bf16 split-K reduction would double `dx`'s error unless the op asks for fp32 results."""
    x, w, labels = _inputs((2, 1500), 768, 50257)
    x, w, labels = x.detach().cuda().requires_grad_(), w.detach().cuda().requires_grad_(), labels.cuda()
    truth = _run(linear_cross_entropy_reference, *_as64(x, w), labels)
    ref = _run(linear_cross_entropy_reference, x, w, labels, autocast=True)
    got = _run(linear_cross_entropy, x, w, labels, autocast=True, chunk_tokens=1000)  # the last chunk short
    for name, g, r, t in zip(("loss", "dx", "dW"), got, ref, truth, strict=True):
        assert g.dtype == r.dtype, name
        e_ref = rel_err(r, t)
        assert rel_err(g, t) <= 2 * e_ref + BF16_FLOOR, f"{name}: vs fp64 {rel_err(g, t):.2e}, ref {e_ref:.2e}"
