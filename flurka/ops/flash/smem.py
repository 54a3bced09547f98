"""Shared memory each flash/SCFA kernel config asks for on a Hopper GPU, found by compiling for sm_90 here.

Triton compiles for a GPU target without the GPU (ptxas ships with it), and a compiled kernel records the shared
memory its launch will request; a request above the device's limit (227 KB on the H100/H200) is what failed for
wide heads (D = 325 pads BLOCK_D to 512). This checks every config of the autotuned kernel objects that the
launches at wide heads go through (`_kernels.kernel(kind, BLOCK_D).configs`, in the default and in the
`FLURKA_FLASH_TUNE=first` mode) against that limit, on any machine:

    TRITON_INTERPRET=0 python -m flurka.ops.flash.smem [--quick]

It exits non-zero if a config does not fit. The kernels must be defined as compiled kernels, not interpreted
ones, so the Triton interpreter must be off in the process (the tests run this module in a subprocess).
Compilation details differ across Triton versions: the numbers are the installed version's.
"""

from __future__ import annotations

import argparse
import os
import sys

import triton

from flurka.ops.flash import _kernels as K
from flurka.ops.gpu_compile import HOPPER_SMEM_LIMIT, hopper_shared_memory

KERNELS = ("fwd", "dkdv", "dq")
MODES = ("", "first")  # FLURKA_FLASH_TUNE values whose launches are checked (full is for narrow heads)
POINTERS = {
    **{name: "*bf16" for name in ("Q", "K", "V", "O", "DO", "DK", "DV", "DQ")},
    **{name: "*fp32" for name in ("LSE", "DELTA")},
    **{name: "*i32" for name in ("KS", "KE", "QS", "QE", "PQ", "PK")},
    "PAD": "*i8",
}
FLOATS = ("qk_scale", "sm_scale")


def shared_memory_bytes(kind: str, head_dim: int, block_d: int, config: triton.Config) -> int:
    """Bytes of shared memory the `kind` kernel (fwd, dkdv, dq) requests with `config`, bf16, causal, sparse and
    padded (every optional path compiled in), compiled for sm_90."""
    jit = K.kernel(kind, block_d).fn  # the JITFunction under the autotuner the launch uses
    consts = dict(HEAD_DIM=head_dim, BLOCK_D=block_d, CAUSAL=True, SPARSE=True, HAS_PAD=True, PREC="tf32",
                  EVEN_D=head_dim == block_d, **config.kwargs)  # fmt: skip
    types = {n: POINTERS.get(n, "fp32" if n in FLOATS else "i32") for n in jit.arg_names if n not in consts}
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the largest tile per kernel and head dim only")
    args = p.parse_args(argv)
    if K.INTERPRET:
        raise SystemExit("run with TRITON_INTERPRET=0: interpreted kernels cannot be compiled for a GPU")
    worst = 0
    for kind, head_dim, block_d, cfg in wide_head_configs(args.quick):
        used = shared_memory_bytes(kind, head_dim, block_d, cfg)
        worst = max(worst, used)
        tile = f"{cfg.kwargs['BLOCK_M']}x{cfg.kwargs['BLOCK_N']}"
        verdict = "ok" if used <= HOPPER_SMEM_LIMIT else "TOO BIG"
        print(f"{kind:5s} D={head_dim} BLOCK_D={block_d} tile {tile:6s} warps {cfg.num_warps} stages "
              f"{cfg.num_stages}: {used / 1024:6.1f} KB  {verdict}", flush=True)  # fmt: skip
    print(f"largest: {worst / 1024:.1f} KB of {HOPPER_SMEM_LIMIT // 1024} KB (triton {triton.__version__}, sm_90)")
    return 0 if worst <= HOPPER_SMEM_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
