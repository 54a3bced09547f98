"""Tokens per second and model FLOPs utilisation (MFU) against a table of peak dense bf16 rates."""

from __future__ import annotations

import torch

# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' datasheets, matched by substring of the GPU name
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "A10G": 125.0,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "V100": 125.0,
}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def mfu(flops_per_token: float, tokens_per_s: float, device: torch.device, world_size: int = 1) -> float | None:
    """Achieved model FLOP/s (training = 3× forward) over the peak of all devices in use."""
    peak = peak_tflops(device)
    if peak is None or tokens_per_s <= 0:
        return None
    return 3.0 * flops_per_token * tokens_per_s / (peak * 1e12 * world_size)
