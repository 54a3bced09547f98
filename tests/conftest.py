"""Test-wide setup.

Tests run tiny tensors under `pytest -n 2` on a 2-core machine: one intra-op thread per worker is as fast, and it
stops OpenMP threads spinning against the other worker (measured: a 150-step tiny training loop takes 2 s with one
thread and 80 s with two while another test process runs).

Without a GPU, Triton kernels run in the Triton interpreter on CPU tensors. The interpreter is chosen by an
environment variable read when kernels are defined, so it is set here, before any test imports triton.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

if not torch.cuda.is_available():
    torch.set_num_threads(1)

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run through the device tool)"
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
