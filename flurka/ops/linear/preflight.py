"""Compile every linear-attention kernel launch for a Hopper GPU (sm_90) on a machine without one.

The Triton interpreter (CI) runs the kernels' arithmetic but not the GPU compiler, so a kernel can pass every
CPU test and still fail to compile for the GPU (a dot shape or precision the backend rejects, a config that
asks for more shared memory than a block may have). This runs the real op wrappers on CPU tensors with the
launch step replaced by compilation for sm_90 — of every config the autotuner may try — and reports what each
launch would request:

    TRITON_INTERPRET=0 python -m flurka.ops.linear.preflight

The wrappers see unwritten outputs (nothing runs), which is fine: only the launches' arguments matter here.
Exits non-zero if a kernel does not compile or no config of a launch fits in shared memory.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import triton

from flurka.ops.gpu_compile import HOPPER_SMEM_LIMIT, compile_for_hopper
from flurka.ops.linear import triton_kernels as K
from flurka.ops.linear import triton_linear


@dataclass
class Launch:
    kernel: str
    meta: dict
    num_warps: int
    num_stages: int
    shared: int | None = None
    error: str | None = None


def compile_launch(name: str, args: tuple, kw: dict, meta: dict, warps: int, stages: int) -> Launch:
    """Compile kernel `name` for sm_90 with these runtime arguments and meta-parameters."""
    jit = getattr(K, name)
    launch = Launch(name, dict(meta), warps, stages)
    try:
        bound = {**dict(zip(jit.arg_names, args, strict=False)), **kw, **meta}
        launch.shared = compile_for_hopper(jit, bound, warps, stages).shared
    except Exception as err:  # a compile error is the finding: record it, keep checking the others
        launch.error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}"
    return launch


@contextlib.contextmanager
def compiling_launches(every_config: bool = True) -> Iterator[list[list[Launch]]]:
    """Within the block, triton_linear's launches compile instead of running; yields one list per launch
    (the autotuner's whole config space when `every_config`, else the config run without autotuning)."""
    found: list[list[Launch]] = []

    def fake_launch(name, grid, args, kw, tune, stages=(2, 3)):
        space = (
            triton_linear.config_space(tune, stages, kw) if every_config else [triton_linear.default_config(tune, kw)]
        )
        found.append([compile_launch(name, args, kw, c.kwargs, c.num_warps, c.num_stages) for c in space])

    real = triton_linear._launch
    triton_linear._launch = fake_launch
    try:
        yield found
    finally:
        triton_linear._launch = real


def representative_calls() -> Iterator[tuple[str, callable]]:
    """The op's code paths: causal with decay / normaliser / initial state, inference and training (whose
    normalised bf16 forward keeps o in fp32), head dims 128 and 325 (split reductions), non-causal."""
    for dtype, d, normalize, decay, grad in itertools.product(
        (torch.bfloat16, torch.float32), (128, 325), (True, False), (True, False), (True, False)
    ):
        label = f"causal {str(dtype)[6:]} D={d} normalize={normalize} decay={decay} grad={grad}"

        def call(dtype=dtype, d=d, normalize=normalize, decay=decay, grad=grad):
            q, k, v = (torch.rand(1, 130, 2, d, dtype=dtype, requires_grad=grad) for _ in range(3))
            s0 = torch.zeros(1, 2, d, d + int(normalize), requires_grad=grad)
            lam = torch.tensor([0.9, 0.99]) if decay else None
            o, s = triton_linear.linear_attention_triton(
                q, k, v, causal=True, decay=lam, normalize=normalize, scale=None, initial_state=s0,
                output_final_state=True, eps=1e-6,
            )  # fmt: skip
            if grad:
                (o.float().sum() + s.sum()).backward()

        yield label, call
    for dtype, d, grad in itertools.product((torch.bfloat16, torch.float32), (128, 325), (True, False)):

        def call(dtype=dtype, d=d, grad=grad):
            q = torch.rand(1, 130, 2, d, dtype=dtype, requires_grad=grad)
            k, v = (torch.rand(1, 70, 2, d, dtype=dtype, requires_grad=grad) for _ in range(2))
            o, _ = triton_linear.linear_attention_triton(
                q, k, v, causal=False, decay=None, normalize=True, scale=None, initial_state=None,
                output_final_state=False, eps=1e-6,
            )  # fmt: skip
            if grad:
                o.float().sum().backward()

        yield f"non-causal {str(dtype)[6:]} D={d} grad={grad}", call


def main(argv: list[str] | None = None) -> int:
    if triton_linear.triton_interpreter_on():
        raise SystemExit("run with TRITON_INTERPRET=0: the point is the GPU compiler, not the interpreter")
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    failures = 0
    for label, call in representative_calls():
        with compiling_launches(every_config=not quick) as launches:
            call()
        for space in launches:
            fits = [x for x in space if x.error is None and x.shared <= HOPPER_SMEM_LIMIT]
            errors = sorted({x.error for x in space if x.error})
            worst = max((x.shared for x in space if x.shared is not None), default=0)
            ok = bool(fits) and not errors
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {label}: {space[0].kernel} — {len(fits)}/{len(space)} configs fit, "
                  f"largest {worst / 1024:.0f} KB" + (f"; errors: {errors}" if errors else ""), flush=True)  # fmt: skip
    print(f"{failures} launch(es) failed (triton {triton.__version__}, sm_90)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
