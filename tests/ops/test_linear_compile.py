"""Linear attention under torch.compile: the Triton path's torch.library custom ops pass `opcheck` (schema,
autograd registration, fake tensors, AOT dispatch with dynamic shapes), and `torch.compile(fullgraph=True)`
traces linear attention and causal kernel attention with either backend — no graph break — to the eager
outputs and gradients.

Triton cases run in the interpreter on CPU (tiny shapes; N = 20 with BT = 16, so the last block is partial) or
on the GPU when there is one. `aot_eager` traces forward and backward without Inductor's code generation.
"""

from __future__ import annotations

import pytest
import torch

from flurka.attention.causal_kernel import causal_kernel_attention
from flurka.ops._backend import triton_can_run
from flurka.ops.features import elu_plus_one
from flurka.ops.linear import linear_attention

DEV = "cuda" if torch.cuda.is_available() else "cpu"
B, N, H, D = 1, 20, 2, 8

needs_triton = pytest.mark.skipif(
    not triton_can_run(torch.empty(0, device=DEV)), reason="Triton can run neither on a GPU nor in the interpreter"
)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # every test compiles from scratch: no cache limits or guards carried between tests
    yield
    torch._dynamo.reset()


def _qkv(dtype=torch.float32, Dk=D, Nk=N, grad=True):
    q = torch.rand(B, N, H, Dk, dtype=dtype, device=DEV)
    k = torch.rand(B, Nk, H, Dk, dtype=dtype, device=DEV)
    v = torch.randn(B, Nk, H, D, dtype=dtype, device=DEV)
    return [t.requires_grad_(grad) for t in (q, k, v)]


def _log2_decay():
    from flurka.ops.linear.triton_linear import _log2_decay

    return _log2_decay(torch.tensor([0.9, 0.6], device=DEV))


# ----------------------------------------------------------------------------------------------------- opcheck


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize(
    "s0,decay,normalize,final,grad",
    [
        (False, False, True, False, True),
        (True, True, True, True, True),
        (True, False, False, True, True),
        (False, True, False, False, False),
    ],
)
def test_opcheck_causal(s0, decay, normalize, final, grad):
    from flurka.ops.linear import custom_ops

    q, k, v = _qkv(grad=grad)
    st = torch.rand(B, H, D, D + int(normalize), device=DEV).requires_grad_(grad) if s0 else None
    lam = _log2_decay() if decay else None
    torch.library.opcheck(custom_ops._causal_fwd, (q, k, v, st, lam, 0.8, 1e-6, normalize, final, 16, grad))


@pytest.mark.interpret
@needs_triton
def test_opcheck_causal_fp16_keeps_fp32_output():
    """fp16 with the normaliser and gradients: the extra fp32 output (o kept for the backward) appears."""
    from flurka.ops.linear import custom_ops

    q, k, v = _qkv(torch.float16)
    outs = custom_ops._causal_fwd(q, k, v, None, None, 1.0, 1e-6, True, False, 16, True)
    assert outs[2].dtype == torch.float32 and outs[2].shape == outs[0].shape
    torch.library.opcheck(custom_ops._causal_fwd, (q, k, v, None, None, 1.0, 1e-6, True, False, 16, True))


@pytest.mark.interpret
@needs_triton
def test_opcheck_causal_split_keys():
    """Dk > 128: the forward sums per-key-block fp32 partials in torch; the outputs still match the fake."""
    from flurka.ops.linear import custom_ops

    for normalize in (True, False):
        q, k, v = _qkv(Dk=136, grad=False)
        args = (q, k, v, None, None, 1.0, 1e-6, normalize, True, 16, False)
        torch.library.opcheck(custom_ops._causal_fwd, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("s0,decay,normalize,dsN", [(True, True, True, True), (False, False, False, False)])
def test_opcheck_causal_backward(s0, decay, normalize, dsN):
    from flurka.ops.linear import custom_ops

    q, k, v = _qkv(grad=False)
    st = torch.rand(B, H, D, D + int(normalize), device=DEV) if s0 else None
    lam = _log2_decay() if decay else None
    o, _, _, den = custom_ops._causal_fwd(q, k, v, st, lam, 0.8, 1e-6, normalize, False, 16, False)
    do = torch.randn_like(o)
    ds = torch.randn(B, H, D, D + int(normalize), device=DEV) if dsN else None
    args = (do, ds, q, k, v, o, den, st, lam, 0.8, normalize, 16, s0)
    torch.library.opcheck(custom_ops._causal_bwd, args)


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("impl,normalize", [("triton", True), ("triton", False), ("cublas", True), ("cublas", False)])
def test_opcheck_noncausal(impl, normalize):
    from flurka.ops.linear import custom_ops

    q, k, v = _qkv(Nk=13)
    torch.library.opcheck(custom_ops._noncausal_fwd, (q, k, v, 0.8, 1e-6, normalize, impl, True))


# ------------------------------------------------------------------------------------ fullgraph compile = eager


class _Recorder:
    """`aot_eager`, keeping the graphs Dynamo hands it."""

    def __init__(self) -> None:
        self.graphs: list[torch.fx.GraphModule] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        from torch._dynamo.backends.registry import lookup_backend

        self.graphs.append(gm)
        return lookup_backend("aot_eager")(gm, example_inputs)

    def targets(self) -> set[str]:
        return {str(n.target) for g in self.graphs for n in g.graph.nodes if n.op == "call_function"}


def _compare(fn, inputs, *, tol=1e-5, op=None):
    """fn(*inputs) -> tensor or tuple; eager and torch.compile(fullgraph=True) agree in outputs and in the
    gradients of a random projection of the outputs w.r.t. every input that requires grad. One graph, which
    calls custom op `op` (when given)."""
    recorder = _Recorder()
    compiled = torch.compile(fn, fullgraph=True, backend=recorder)
    results = []
    for f in (fn, compiled):
        ins = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
        outs = f(*ins)
        outs = [outs] if isinstance(outs, torch.Tensor) else [o for o in outs if o is not None]
        gen = torch.Generator().manual_seed(1)
        loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in outs)
        grads = torch.autograd.grad(loss, [t for t in ins if t.requires_grad])
        results.append((outs, grads))
    (o_e, g_e), (o_c, g_c) = results
    assert len(recorder.graphs) == 1
    if op is not None:
        assert f"flurka.{op}.default" in recorder.targets(), recorder.targets()
    assert len(o_e) == len(o_c)
    for a, b in zip([*o_e, *g_e], [*o_c, *g_c]):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)


LINEAR_CASES = [
    # causal, decay, normalize, initial state, output_final_state
    (True, True, True, True, True),
    (True, False, False, True, False),
    (True, True, False, False, True),
    (False, False, True, False, True),
    (False, False, False, False, False),
]


def _linear_case(backend, causal, decay, normalize, s0, final):
    lam = torch.tensor([0.9, 0.6], device=DEV) if decay else None

    def fn(q, k, v, *st):
        return linear_attention(
            q, k, v, causal=causal, decay=lam, normalize=normalize, scale=0.8, initial_state=st[0] if st else None,
            output_final_state=final, backend=backend,
        )  # fmt: skip

    ins = _qkv(Nk=N if causal else 13)
    if s0:
        ins.append(torch.rand(B, H, D, D + int(normalize), device=DEV).requires_grad_())
    op = None if backend == "torch" else ("linear_causal_fwd" if causal else "linear_noncausal_fwd")
    _compare(fn, ins, op=op)


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("causal,decay,normalize,s0,final", LINEAR_CASES)
def test_compile_linear_attention_triton(causal, decay, normalize, s0, final):
    _linear_case("triton", causal, decay, normalize, s0, final)


@pytest.mark.parametrize("causal,decay,normalize,s0,final", LINEAR_CASES)
def test_compile_linear_attention_torch(causal, decay, normalize, s0, final):
    _linear_case("torch", causal, decay, normalize, s0, final)


def _kernel_attention_case(backend, query_scale):
    """Causal FLuRKA's call: chunks folded into the batch, summaries entering as the op's initial state (with
    the normaliser), or the per-query normaliser (without it) when `query_scale` is given."""
    chunk, rows = 8, 2
    C = -(-N // chunk)
    x = [torch.randn(B, N, H, D, device=DEV) for _ in range(3)]
    x += [torch.randn(B, C, rows, H, D, device=DEV) for _ in range(2)]
    x.append(torch.rand(B, N, H, device=DEV) + 0.5)
    ins = [t.clone().requires_grad_(i != 5) for i, t in enumerate(x)]

    def fn(q, k, v, sk, sv, qs):
        return causal_kernel_attention(
            elu_plus_one(q), elu_plus_one(k), v, chunk_size=chunk, summary_phi=elu_plus_one(sk), summary_v=sv,
            eps=1e-3, query_scale=qs if query_scale else None, backend=backend,
        )  # fmt: skip

    _compare(fn, ins, op=None if backend == "torch" else "linear_causal_fwd")


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("query_scale", [False, True])
def test_compile_causal_kernel_attention_triton(query_scale):
    _kernel_attention_case("triton", query_scale)


@pytest.mark.parametrize("query_scale", [False, True])
def test_compile_causal_kernel_attention_torch(query_scale):
    _kernel_attention_case("torch", query_scale)


@pytest.mark.interpret
@needs_triton
@pytest.mark.parametrize("causal", [True, False])
def test_eager_function_equals_eager_op(causal, monkeypatch):
    """Eager calls take an autograd.Function around the ops' own implementation (less host time per call);
    through the ops instead, outputs and gradients are bitwise the same."""
    from flurka.ops.linear import custom_ops

    ins = _qkv(Nk=N if causal else 13)
    if causal:
        ins.append(torch.rand(B, H, D, D + 1, device=DEV).requires_grad_())
    lam = torch.tensor([0.9, 0.6], device=DEV) if causal else None
    results = []
    for via_function in (True, False):
        monkeypatch.setattr(custom_ops, "_EAGER_FUNCTION", via_function)
        xs = [t.detach().clone().requires_grad_() for t in ins]
        o, s = linear_attention(
            *xs[:3], causal=causal, decay=lam, initial_state=xs[3] if causal else None, output_final_state=True,
            backend="triton",
        )  # fmt: skip
        grads = torch.autograd.grad((o * o).sum() + s.sum(), xs)
        results.append((o, s, *grads))
    for a, b in zip(*results):
        assert torch.equal(a, b)
