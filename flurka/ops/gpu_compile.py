"""Compile Triton launches for a Hopper GPU (sm_90) on a machine without one.

The Triton interpreter (how CI runs kernels) checks their arithmetic, not the GPU compiler: a kernel can pass
every CPU test and still fail on the GPU, e.g. by asking for more shared memory than a block may have (227 KB on
sm_90). Triton compiles for a GPU target without the GPU, and a compiled kernel records what its launch will
request. `compiling_jit_launches()` turns every plain `kernel[grid](...)` launch into such a compilation, so the
real op wrappers can run on CPU tensors and report what each launch would ask for. (Autotuned launches time their
configs on the device; `flurka.ops.linear.preflight` and `flurka.ops.flash.smem` handle those.)

Must run with the interpreter off (TRITON_INTERPRET=0): interpreted kernels cannot be compiled for a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

HOPPER_SMEM_LIMIT = 227 * 1024  # bytes a block may request on sm_90 (H100, H200)
POINTER_TYPES = {
    torch.float32: "*fp32",
    torch.bfloat16: "*bf16",
    torch.float16: "*fp16",
    torch.int32: "*i32",
    torch.int64: "*i64",
    torch.int8: "*i8",
}


@dataclass
class CompiledLaunch:
    kernel: str
    constexprs: dict
    num_warps: int
    num_stages: int
    shared: int  # bytes of shared memory the launch requests


def triton_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return POINTER_TYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {value!r}")


def hopper_shared_memory(jit: JITFunction, types: dict[str, str], constexprs: dict, warps: int, stages: int) -> int:
    """Bytes of shared memory `jit` requests when compiled for sm_90 with these runtime argument types (by name,
    Triton's spelling: "*bf16", "i32", "fp32") and constexpr values (by name)."""
    sig, consts = {}, {}
    for i, param in enumerate(jit.params):
        if param.is_constexpr:
            sig[param.name], consts[(i,)] = "constexpr", constexprs[param.name]
        else:
            sig[param.name] = types[param.name]
    src = ASTSource(fn=jit, signature=sig, constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
    return compiled.metadata.shared


def compile_for_hopper(jit: JITFunction, bound: dict, num_warps: int, num_stages: int) -> CompiledLaunch:
    """Compile `jit` for sm_90 with its arguments by name (runtime values and constexprs)."""
    constexprs = {p.name: bound[p.name] for p in jit.params if p.is_constexpr}
    types = {p.name: triton_type(bound[p.name]) for p in jit.params if not p.is_constexpr}
    shared = hopper_shared_memory(jit, types, constexprs, num_warps, num_stages)
    return CompiledLaunch(jit.__name__, constexprs, num_warps, num_stages, shared)


@contextlib.contextmanager
def compiling_jit_launches() -> Iterator[list[CompiledLaunch]]:
    """Within the block, `kernel[grid](...)` compiles for sm_90 instead of running; yields the launches seen.
    Outputs stay unwritten: only the launches' arguments matter."""
    found: list[CompiledLaunch] = []
    real_run = JITFunction.run

    def compile_instead(self, *args, grid, warmup, **kwargs):
        bound = dict(zip(self.arg_names, args, strict=False))
        bound.update({k: v for k, v in kwargs.items() if k in self.arg_names})
        found.append(compile_for_hopper(self, bound, kwargs.get("num_warps", 4), kwargs.get("num_stages", 3)))

    JITFunction.run = compile_instead
    try:
        yield found
    finally:
        JITFunction.run = real_run
