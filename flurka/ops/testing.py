"""Error metrics shared by op tests and GPU checks (kept in the package so device scripts can use them)."""

from __future__ import annotations

import torch


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64 (0 when both are zero)."""
    a, e = actual.detach().double(), expected.detach().double()
    denom = e.norm().item()
    diff = (a - e).norm().item()
    return diff if denom == 0 else diff / denom


def rms_ratio(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """fla's metric: RMS of the difference over RMS of the reference."""
    a, e = actual.detach().double(), expected.detach().double()
    rms_e = e.pow(2).mean().sqrt().item()
    rms_d = (a - e).pow(2).mean().sqrt().item()
    return rms_d if rms_e == 0 else rms_d / rms_e


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = "") -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = rel_err(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"
