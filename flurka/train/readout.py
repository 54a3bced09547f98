"""What the training loop reads back from the device, and when (issue 15).

A CUDA step is a queue of kernels that the host launches ahead of the device. Reading the loss (`.item()`) or
synchronising every step drains that queue: the device then idles while the host builds and launches the next
step, which is what held a 6×512 GPT to ~0.9M tokens/s on an H200. So the loop keeps each step's loss on the
device and drains the queue only at *read points* (`is_read_point`): log, eval and checkpoint steps, the final
step, the end of the warm-up steps, and every step of a time-budget run. There it reads the losses of all steps
since the last read in one copy (`PendingLosses`), checks them for NaN/inf, and charges the wall time since the
last read point to those steps (`WindowClock`).

The NaN stop still names the first non-finite step exactly, but it is noticed only at the next read point, so
up to `log_every - 1` further steps have run by then. Two things keep that safe:
- nothing that outlives the run (a checkpoint, best.pt, an eval) is made between read points, and every read
  point checks all pending losses before it evaluates or writes: a checkpoint only ever follows verified steps,
  the same guarantee as the per-step check (whose step was also stopped before `optimizer.step`);
- with a fused AdamW (CUDA, `build_optimizer`) a non-finite loss makes that step's update a no-op on the device
  (`skip_update_if_nonfinite`), so the steps until the read point run on the last good weights, as the old loop
  would have stopped on them, instead of on NaN weights (which could, e.g., become out-of-range indices in a
  hashing variant). Other optimizer implementations have no device-side skip: there the weights in memory may
  turn NaN before the stop, and are thrown away with the run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from flurka.train.config import TrainerConfig


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work; a no-op on the CPU, whose work is done when its call returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_read_point(done: int, *, start_step: int, t: TrainerConfig) -> bool:
    """Whether the loop drains the device after `done` steps (see the module docstring). Every rank computes the
    same answer from the config, so the collectives at read points (budget broadcast, eval, checkpoint) line up.

    A time budget reads every step: a budget run is a comparison of wall-clock time, and reading the clock only
    at log steps would let it overshoot by up to `log_every - 1` steps; exactness there is worth more than the
    host overhead the sync costs. The end of the warm-up (`throughput_skip_steps`) is a read point so that no
    timing window mixes the excluded warm-up steps with counted ones."""
    if t.time_budget_s or done == t.max_steps or done % t.log_every == 0:
        return True
    if (t.eval_every and done % t.eval_every == 0) or (t.checkpoint_every and done % t.checkpoint_every == 0):
        return True
    return done - start_step == t.throughput_skip_steps


@dataclass(frozen=True)
class NonFinite:
    """The first step since the last read whose loss was NaN or inf, with that loss and the step's lr."""

    step: int
    loss: float
    lr: float


class PendingLosses:
    """The train losses (0-d device tensors) of the steps since the last read point, with their steps and lrs."""

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._losses: list[torch.Tensor] = []
        self._lrs: list[float] = []

    def add(self, step: int, loss: torch.Tensor, lr: float) -> None:
        self._steps.append(step)
        self._losses.append(loss.detach())
        self._lrs.append(lr)

    def __len__(self) -> int:
        return len(self._steps)

    def read(self) -> tuple[float, NonFinite | None]:
        """(the latest step's loss, the first non-finite step or None), with one device-to-host copy for all
        pending steps (it waits for them to finish); then nothing is pending."""
        if not self._losses:
            raise RuntimeError("no pending losses to read")
        values = torch.stack(self._losses).tolist()
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        found = None if bad is None else NonFinite(self._steps[bad], values[bad], self._lrs[bad])
        self._steps, self._losses, self._lrs = [], [], []
        return values[-1], found


class WindowClock:
    """Wall time of the training steps between two read points. The device is drained at both ends, so a window's
    seconds are what its steps cost on the device, and work done between windows (logging, eval, checkpoints)
    is left out, as the per-step clock left it out."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._start = time.perf_counter()

    def start(self) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        return time.perf_counter() - self._start


def skip_update_if_nonfinite(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Make the coming `optimizer.step()` a no-op on the device when `loss` is not finite, without a sync.

    Fused Adam/AdamW take `found_inf` from the optimizer (the attribute GradScaler sets for them): where it is 1 the
    kernel leaves parameters, moments and step counts untouched. Set every step, so a finite step clears it.
    Other implementations reject `found_inf`; for them this does nothing (see the module docstring)."""
    if any(group.get("fused") for group in optimizer.param_groups):
        optimizer.found_inf = (~torch.isfinite(loss.detach())).float()


def device_batch(batch: dict[str, torch.Tensor], rows: slice, device: torch.device) -> dict[str, torch.Tensor]:
    """This rank's `rows` of the step's host batch on `device`, one copy per tensor for all its micro-batches.

    On CUDA the rows are staged in pinned memory and copied with non_blocking=True, so the host goes on
    launching the step while the bytes move. That is safe although the pinned tensor is a temporary: its block
    comes from torch's caching host allocator, which records the copy on its stream and does not reuse the block
    until the copy has run (what `DataLoader(pin_memory=True)` with non_blocking copies relies on too), and the
    copy is ordered before the step's kernels on the same (default) stream."""
    if device.type != "cuda":
        return {k: v[rows].to(device) for k, v in batch.items()}
    return {
        k: (v[rows].pin_memory() if v.device.type == "cpu" else v[rows]).to(device, non_blocking=True)
        for k, v in batch.items()
    }
