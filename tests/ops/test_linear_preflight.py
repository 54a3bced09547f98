"""The linear-attention launches compile for a Hopper GPU and fit its shared memory, checked without a GPU:
the op wrappers run on CPU tensors with each launch replaced by compilation for sm_90 (flurka.ops.linear.preflight).
Here a training step in fp32 — whose two-stage configs asked 240 KB (limit 227 KB) before fp32 launches got a
single-stage default — and one in bf16 with the normaliser (the fp32-numerator path). In a subprocess: this test
session defines the kernels for the Triton interpreter."""

from __future__ import annotations

import pytest

from tests.helpers import run_script

SCRIPT = """
import torch
from flurka.ops.linear import preflight as P, triton_linear
for dtype in (torch.float32, torch.bfloat16):
    q, k, v = (torch.rand(1, 130, 2, 128, dtype=dtype, requires_grad=True) for _ in range(3))
    with P.compiling_launches(every_config=False) as launches:
        o, _ = triton_linear.linear_attention_triton(q, k, v, causal=True, decay=torch.tensor([0.9, 0.99]),
                                                     normalize=True, scale=None, initial_state=None,
                                                     output_final_state=False, eps=1e-6)
        o.float().sum().backward()
    for (x,) in launches:
        print("LAUNCH", str(dtype)[6:], x.kernel, x.num_stages, x.shared, x.error)
# the old fp32 default (two stages), to show the check can fail: the dv kernel then asks too much
two_stage = lambda tune, kw: triton_linear.triton.Config({m: c[0] for m, c in tune.items()}, num_warps=4, num_stages=2)
triton_linear.default_config = two_stage
q, k, v = (torch.rand(1, 130, 2, 128, requires_grad=True) for _ in range(3))
with P.compiling_launches(every_config=False) as launches:
    triton_linear.linear_attention_triton(q, k, v, causal=True, decay=None, normalize=False, scale=None,
                                          initial_state=None, output_final_state=False, eps=1e-6)[0].sum().backward()
print("TWO_STAGE", max(x.shared for (x,) in launches))
"""


@pytest.mark.slow
def test_training_launches_compile_for_hopper_and_fit():
    proc = run_script(["-c", SCRIPT], env={"TRITON_INTERPRET": "0"}, timeout=900)  # raises with its output
    launches = [line.split() for line in proc.stdout.splitlines() if line.startswith("LAUNCH")]
    kernels = {(dtype, kernel) for _, dtype, kernel, *_ in launches}
    for dtype in ("float32", "bfloat16"):
        assert {k for d, k in kernels if d == dtype} == {
            "causal_fwd_kernel", "causal_bwd_dq_kernel", "causal_bwd_dk_kernel", "causal_bwd_dv_kernel"
        }  # fmt: skip
    for _, dtype, kernel, stages, shared, error in launches:
        assert error == "None", (dtype, kernel, error)
        assert int(shared) <= 227 * 1024, (dtype, kernel, shared)
        assert stages == ("1" if dtype == "float32" else "2")
    two_stage = next(line for line in proc.stdout.splitlines() if line.startswith("TWO_STAGE"))
    assert int(two_stage.split()[1]) > 227 * 1024  # without the single-stage fp32 default it would not fit
