"""Wide heads fit in shared memory: every config a launch at D = 256 and 325 (BLOCK_D 256 / 512) can use — the
configs of the autotuner objects core.py launches, in the default and the FLURKA_FLASH_TUNE=first modes —
compiled for sm_90 here (no GPU needed), requests at most the H100/H200's 227 KB — and the default tiles, which
failed on the GPU at D = 325 (394 KB), are reported as too big, so the check is not vacuous. The largest TMA
tiles of narrow heads (D = 128: multi-buffered descriptor loads) are compiled and checked too. The compile runs in a
subprocess: this test session defines the kernels for the Triton interpreter."""

from __future__ import annotations

import pytest

from tests.helpers import run_script

SCRIPT = """
import triton
from flurka.ops.flash.smem import HOPPER_SMEM_LIMIT, main, shared_memory_bytes
# a 64 x 64, 2-stage tile: the smallest of the default grid's sizes (the defaults asked 394 KB on the GPU)
default = triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=2)
print("DEFAULT", shared_memory_bytes("dkdv", 325, 512, default), HOPPER_SMEM_LIMIT)
raise SystemExit(main(["--quick", "--tma"]))
"""


@pytest.mark.slow
def test_wide_head_configs_fit_hopper_shared_memory():
    proc = run_script(["-c", SCRIPT], env={"TRITON_INTERPRET": "0"}, timeout=600)  # raises with its output
    lines = proc.stdout.splitlines()
    _, used, limit = next(line for line in lines if line.startswith("DEFAULT")).split()
    assert int(used) > int(limit)  # the narrow-head default really does not fit: the wide list is needed
    checked = [line for line in lines if line.startswith(("fwd", "dkdv", "dq"))]
    assert len(checked) == 9 and all(line.endswith("ok") for line in checked), proc.stdout
    # the narrow-head TMA twins compile for sm_90 through tensor descriptors, and their largest tiles still fit
    assert sum(" tma " in line for line in checked) == 3, proc.stdout
