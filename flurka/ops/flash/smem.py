"""Shared memory each flash/SCFA kernel config asks for on a Hopper GPU, found by compiling for sm_90 here.

Triton compiles for a GPU target without the GPU (ptxas ships with it), and a compiled kernel records the shared
memory its launch will request; a request above the device's limit (227 KB on the H100/H200) is what failed for
wide heads (D = 325 pads BLOCK_D to 512). This checks every config of the autotuned kernel objects that the
launches at wide heads go through (`_kernels.kernel(kind, BLOCK_D).configs`, in the default and in the
`FLURKA_FLASH_TUNE=first` mode) against that limit, on any machine:

    TRITON_INTERPRET=0 python -m flurka.ops.flash.smem [--quick] [--tma]

With `--tma` it also checks the TMA configs of narrow heads (D = 64, 128: tensor-descriptor loads, whose
multi-buffered tiles are the largest requests of any narrow-head config), which also proves the descriptor path
compiles for Hopper. It exits non-zero if a config does not fit. The kernels must be defined as compiled
kernels, not interpreted ones, so the Triton interpreter must be off in the process (the tests run this module in
a subprocess).
Compilation details differ across Triton versions: the numbers are the installed version's.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import triton
from triton.runtime.jit import mangle_type
from triton.tools.tensor_descriptor import TensorDescriptor

from flurka.ops.flash import _kernels as K
from flurka.ops.gpu_compile import HOPPER_SMEM_LIMIT, hopper_shared_memory

KERNELS = ("fwd", "dkdv", "dq")
MODES = ("", "first")  # FLURKA_FLASH_TUNE values whose launches are checked (full is for narrow heads)
POINTERS = {
    # QD, KD, VD, DOD: the descriptor slots, which pointer configs fill with the tensors themselves
    **{name: "*bf16" for name in ("Q", "K", "V", "O", "DO", "DK", "DV", "DQ", "QD", "KD", "VD", "DOD")},
    **{name: "*fp32" for name in ("LSE", "DELTA")},
    **{name: "*i32" for name in ("KS", "KE", "QS", "QE", "PQ", "PK")},
    "PAD": "*i8",
}
FLOATS = ("qk_scale", "sm_scale")
DESCRIPTOR_ROWS = {"QD": "BLOCK_M", "DOD": "BLOCK_M", "KD": "BLOCK_N", "VD": "BLOCK_N"}  # as _set_tma_blocks


def _descriptor_type(block_d: int, rows: int) -> str:
    """Triton's type of a bf16 [B, N, H, D] descriptor moving [1, rows, 1, D] tiles (the block is in the type)."""
    t = torch.empty(1, 16, 1, block_d, dtype=torch.bfloat16)
    return mangle_type(TensorDescriptor(t, list(t.shape), list(t.stride()), [1, rows, 1, block_d]))


def shared_memory_bytes(kind: str, head_dim: int, block_d: int, config: triton.Config) -> int:
    """Bytes of shared memory the `kind` kernel (fwd, dkdv, dq) requests with `config`, bf16, causal and padded,
    compiled for sm_90: sparse too for pointer configs (every optional path compiled in), dense for TMA configs
    (the only mode that loads through descriptors)."""
    jit = K.kernel(kind, block_d).fn  # the JITFunction under the autotuner the launch uses
    tma = config.kwargs.get("USE_TMA", False)
    consts = dict(HEAD_DIM=head_dim, BLOCK_D=block_d, CAUSAL=True, SPARSE=not tma, HAS_PAD=True, PREC="tf32",
                  EVEN_D=head_dim == block_d, **{"USE_TMA": False, **config.kwargs})  # fmt: skip
    types = {n: POINTERS.get(n, "fp32" if n in FLOATS else "i32") for n in jit.arg_names if n not in consts}
    if tma:
        types.update({n: _descriptor_type(block_d, config.kwargs[rows]) for n, rows in DESCRIPTOR_ROWS.items()})
    return hopper_shared_memory(jit, types, consts, config.num_warps, config.num_stages)


def launch_configs(kind: str, block_d: int) -> list[triton.Config]:
    """Every config a launch of `kind` at this BLOCK_D can run with, in any checked tuning mode: the configs of
    the very autotuner objects `core` launches (`_kernels.kernel`), not a list rebuilt beside them."""
    previous = os.environ.get("FLURKA_FLASH_TUNE")
    out: list[triton.Config] = []
    try:
        for mode in MODES:
            os.environ["FLURKA_FLASH_TUNE"] = mode
            out += [c for c in K.kernel(kind, block_d).configs if str(c) not in map(str, out)]
    finally:
        if previous is None:
            os.environ.pop("FLURKA_FLASH_TUNE", None)
        else:
            os.environ["FLURKA_FLASH_TUNE"] = previous
    return out


def wide_head_configs(quick: bool) -> list[tuple[str, int, int, triton.Config]]:
    """(kind, head_dim, BLOCK_D, config) for every config a wide-head launch can use; `quick`: only the largest
    tile per kernel and head dim (the most shared memory), at 4 warps — also the `first` mode's config."""
    out = []
    for kind in KERNELS:
        for head_dim, block_d in ((325, 512), (256, 256)):
            configs = launch_configs(kind, block_d)
            if quick:
                biggest = max(c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] for c in configs)
                configs = [c for c in configs if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] == biggest]
                configs = [c for c in configs if c.num_warps == 4][:1]
            out += [(kind, head_dim, block_d, c) for c in configs]
    return out


def tma_configs(quick: bool) -> list[tuple[str, int, int, triton.Config]]:
    """(kind, head_dim, BLOCK_D, config) for the TMA configs a narrow-head launch can use (the autotuner object
    of a TMA-eligible launch, default mode); `quick`: D = 128 and the largest tile per kernel only."""
    out = []
    for kind in KERNELS:
        for head_dim in (128,) if quick else (64, 128):
            configs = [c for c in K.kernel(kind, head_dim, tma=True).configs if c.kwargs.get("USE_TMA")]
            if quick:
                configs = [max(configs, key=lambda c: (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"], c.num_stages))]
            out += [(kind, head_dim, head_dim, c) for c in configs]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the largest tile per kernel and head dim only")
    p.add_argument("--tma", action="store_true", help="also the TMA configs of narrow heads (D = 64, 128)")
    args = p.parse_args(argv)
    if K.INTERPRET:
        raise SystemExit("run with TRITON_INTERPRET=0: interpreted kernels cannot be compiled for a GPU")
    worst = 0
    checks = wide_head_configs(args.quick) + (tma_configs(args.quick) if args.tma else [])
    for kind, head_dim, block_d, cfg in checks:
        used = shared_memory_bytes(kind, head_dim, block_d, cfg)
        worst = max(worst, used)
        tile = f"{cfg.kwargs['BLOCK_M']}x{cfg.kwargs['BLOCK_N']}" + (" tma" if cfg.kwargs.get("USE_TMA") else "")
        verdict = "ok" if used <= HOPPER_SMEM_LIMIT else "TOO BIG"
        print(f"{kind:5s} D={head_dim} BLOCK_D={block_d} tile {tile:6s} warps {cfg.num_warps} stages "
              f"{cfg.num_stages}: {used / 1024:6.1f} KB  {verdict}", flush=True)  # fmt: skip
    print(f"largest: {worst / 1024:.1f} KB of {HOPPER_SMEM_LIMIT // 1024} KB (triton {triton.__version__}, sm_90)")
    return 0 if worst <= HOPPER_SMEM_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
