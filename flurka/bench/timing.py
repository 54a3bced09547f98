"""Timing on the GPU, the one way every benchmark here does it.

Medians from `triton.testing.do_bench` (CUDA events, warm-up first, L2 flushed between runs); inputs are built
by the caller outside the timed function. Benchmarks are scripts that print and write numbers, never tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def bench_ms(fn: Callable[[], object], *, warmup_ms: int = 25, rep_ms: int = 100) -> float:
    """Median wall time of `fn()` on the current CUDA device, in milliseconds."""
    if not torch.cuda.is_available():
        raise RuntimeError("bench_ms times GPU work; no CUDA device here")
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def fwd_bwd_fn(fwd: Callable[[], torch.Tensor], grad: torch.Tensor | None = None) -> Callable[[], None]:
    """A closure running forward then backward; gradients of the leaf inputs are dropped by the caller."""

    def run() -> None:
        out = fwd()
        out.backward(grad if grad is not None else torch.ones_like(out))

    return run


def step_times_ms(
    step: Callable[[], object], device: torch.device, *, warmup: int, steps: int, max_seconds: float | None = None
) -> list[float]:
    """Milliseconds of each of `steps` calls of `step()`, after `warmup` untimed calls (compiles, autotuning,
    the allocator's first growth). For a training step, where `bench_ms` does not fit: every call mutates the
    model and optimizer, so the sweep wants a fixed, small number of them, and a slow variant must not run for
    minutes (`max_seconds` stops the timed calls early, keeping at least one). On a GPU each call is bracketed
    by CUDA events and synchronised; on the CPU (dry runs) a wall clock times it, which is not a result."""
    for _ in range(warmup):
        step()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    start_all = time.perf_counter()
    for _ in range(steps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and time.perf_counter() - start_all > max_seconds:
            break
    return times


def peak_memory_mib(fn: Callable[[], object]) -> float:
    """Peak CUDA memory allocated while running `fn()` once, in MiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def attention_tflops(ms: float, *, B: int, H: int, Nq: int, Nk: int, D: int, causal: bool, mode: str) -> float:
    """FlashAttention's convention: 4·B·H·Nq·Nk·D forward, half when causal, backward 2.5× forward."""
    flops = 4.0 * B * H * Nq * Nk * D * (0.5 if causal else 1.0)
    flops *= {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}[mode]
    return flops / (ms * 1e-3) / 1e12


def bench_device(dry_run: bool) -> torch.device:
    """The GPU for a measurement; the CPU only for `--dry-run` (a check that the script runs, never a number)."""
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("the speed benchmark needs a GPU (use --dry-run to check it on CPU)")
    return torch.device("cuda")


def profile_step(step: Callable[[], object], device: torch.device, *, steps: int = 2, top: int = 20) -> dict:
    """Where a (warmed-up) step's time goes, from `torch.profiler` over `steps` calls: the wall time per step,
    the device's busy time per step (the sum of every kernel's own time: busy well below wall means the host's
    launches, not the GPU, set the pace) and the `top` operations by their own device time (CPU time on the
    CPU, where dry runs check the script), each per step with its number of calls. A diagnosis, not a result:
    the profiler's own overhead makes its wall time longer than the timed steps'."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        wall_ms = (time.perf_counter() - t0) * 1e3 / steps
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    if cuda:  # the kernels (and copies) themselves: an operator's row repeats its kernels' time
        from torch.autograd import DeviceType

        events = [e for e in events if e.device_type == DeviceType.CUDA]
    busy_ms = sum(getattr(e, key) for e in events) / 1e3 / steps  # microseconds in the profiler's totals
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    ops = [{"name": e.key[:120], "ms": round(getattr(e, key) / 1e3 / steps, 3), "calls": e.count // steps}
           for e in events[:top]]  # fmt: skip
    return {"steps": steps, "wall_ms": round(wall_ms, 3), "busy_ms": round(busy_ms, 3),
            "time": "device" if cuda else "cpu", "top": ops}  # fmt: skip


def profiles_markdown(
    rows: list[dict], label: Callable[[dict], str] = lambda r: r["variant"], top: int = 12
) -> list[str]:
    """For each profiled point (a row with a `profile_step` dict under "profile"): wall vs busy time (how much
    of the step the device computes) and its top operations, each with its share of the busy time."""
    profiled = [r for r in rows if r.get("profile")]
    if not profiled:
        return []
    out = ["### where the time goes (torch.profiler, 2 steps after the timed ones)", ""]
    for r in profiled:
        prof = r["profile"]
        busy, wall = prof["busy_ms"], prof["wall_ms"]
        out += [f"**{label(r)} at N={r['N']}**: {wall:.1f} ms a step under the profiler, {prof['time']} busy "
                f"{busy:.1f} ms ({100 * busy / wall:.0f}%)", "",
                "| operation | ms / step | calls / step | share of busy |", "|---|---:|---:|---:|"]  # fmt: skip
        out += [f"| `{op['name'][:90]}` | {op['ms']:.3f} | {op['calls']} | {100 * op['ms'] / busy:.1f}% |"
                for op in prof["top"][:top]]  # fmt: skip
        out.append("")
    return out


def profile_filter(specs: list[str] | None, variants: list[str]) -> Callable[[str, int], bool]:
    """`--profile full flurka_rnn@1024`: a variant at every length, or at one; a name not in the sweep is an
    error that lists the variants."""
    wanted: dict[str, set[int] | None] = {}
    for spec in specs or []:
        name, _, n = spec.partition("@")
        if name not in variants:
            raise SystemExit(f"--profile {spec}: '{name}' is not a variant of this sweep ({', '.join(variants)})")
        if n and not n.isdigit():
            raise SystemExit(f"--profile {spec}: the length after '@' must be a number of tokens")
        if not n:
            wanted[name] = None
        elif wanted.get(name, set()) is not None:
            wanted.setdefault(name, set()).add(int(n))
    return lambda name, n: name in wanted and (wanted[name] is None or n in wanted[name])
