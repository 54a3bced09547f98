"""Plain-PyTorch linear attention: the truth every faster path is tested against.

Layout `[B, N, H, D]`; q and k are already feature-mapped (non-negative when `normalize=True`).

- Non-causal: `o = φq (φkᵀ v) / (φq · Σ_j φk_j + eps)`; keys/values may be longer or shorter than the queries.
- Causal (Nq == Nk), per head h with decay λ_h ∈ (0, 1] (λ = 1 without `decay`):
  `S_t = λ S_{t−1} + k_tᵀ v_t`, `z_t = λ z_{t−1} + k_t`, `o_t = q_t S_t / (q_t · z_t + eps)`.
- State: `[B, H, Dk, Dv + 1]` with the normaliser z as the last column when `normalize=True`
  (z is the state of an extra all-ones value column), `[B, H, Dk, Dv]` otherwise.
- Eps policy: `+ eps` on the denominator (never a clamp), denominator in fp32.
- Math runs in fp32 (fp64 for fp64 inputs); the output comes back in the input dtype, the state in the math dtype.

`linear_attention_parallel` is the O(N²) masked form; `linear_attention_recurrent` the token-by-token loop.
Both are for tests and tiny inputs only.
"""

from __future__ import annotations

import torch

from flurka.ops.linear._common import DEFAULT_EPS, augment_values, check_args, split_output


def _to_bhnd(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).transpose(1, 2)


def linear_attention_parallel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    decay: torch.Tensor | None = None,
    normalize: bool = True,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    eps: float = DEFAULT_EPS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """O(N²) masked form. Returns `(o [B, Nq, H, Dv] in q.dtype, final state or None)`."""
    a = check_args(q, k, v, causal=causal, decay=decay, normalize=normalize, scale=scale, initial_state=initial_state)
    dt = a.compute_dtype
    qh = _to_bhnd(q, dt) * a.scale
    kh = _to_bhnd(k, dt)
    vh = _to_bhnd(augment_values(v.to(dt), normalize), dt)  # [B, H, Nk, Dv(+1)]
    if not causal:
        state = kh.transpose(-1, -2) @ vh  # [B, H, Dk, Dv(+1)]
        o_aug = qh @ state
        o = split_output(o_aug, normalize, eps).transpose(1, 2).to(q.dtype)
        return o, (state if output_final_state else None)

    N = a.Nq
    pos = torch.arange(N, device=q.device)
    diff = pos[:, None] - pos[None, :]  # i - j
    causal_mask = diff >= 0
    if decay is None:
        log_lam = torch.zeros(a.H, dtype=dt, device=q.device)
    else:
        log_lam = decay.to(dt).log()
    # M_ij = λ^{i−j} below the diagonal; the exponent is clamped first so no inf·0 appears above it.
    M = torch.exp(diff.clamp(min=0).to(dt)[None] * log_lam[:, None, None]) * causal_mask  # [H, N, N]
    scores = (qh @ kh.transpose(-1, -2)) * M
    o_aug = scores @ vh
    # Decay from the start of the sequence: λ^{i+1} for query i, λ^{N−1−j} for key j into the final state.
    q_decay = torch.exp((pos + 1).to(dt)[None, :] * log_lam[:, None])  # [H, N]
    k_decay = torch.exp((N - 1 - pos).to(dt)[None, :] * log_lam[:, None])  # [H, N]
    if initial_state is not None:
        s0 = initial_state.to(dt)
        o_aug = o_aug + (qh * q_decay[None, :, :, None]) @ s0
    o = split_output(o_aug, normalize, eps).transpose(1, 2).to(q.dtype)
    final = None
    if output_final_state:
        final = (kh * k_decay[None, :, :, None]).transpose(-1, -2) @ vh
        if initial_state is not None:
            final = final + torch.exp(N * log_lam)[None, :, None, None] * initial_state.to(dt)
    return o, final


def linear_attention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    decay: torch.Tensor | None = None,
    normalize: bool = True,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    eps: float = DEFAULT_EPS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token state recurrence (the RNN view). Non-causal: accumulate every key first, then read."""
    a = check_args(q, k, v, causal=causal, decay=decay, normalize=normalize, scale=scale, initial_state=initial_state)
    dt = a.compute_dtype
    qh = _to_bhnd(q, dt) * a.scale
    kh = _to_bhnd(k, dt)
    vh = _to_bhnd(augment_values(v.to(dt), normalize), dt)
    state = q.new_zeros((a.B, a.H, a.Dk, a.state_cols), dtype=dt)
    if initial_state is not None:
        state = state + initial_state.to(dt)
    lam = (torch.ones(a.H, dtype=dt, device=q.device) if decay is None else decay.to(dt)) if causal else None
    outs = []
    if causal:
        for t in range(a.Nq):
            state = lam[None, :, None, None] * state + kh[:, :, t, :, None] * vh[:, :, t, None, :]
            outs.append(torch.einsum("bhd,bhde->bhe", qh[:, :, t], state))
    else:
        for t in range(a.Nk):
            state = state + kh[:, :, t, :, None] * vh[:, :, t, None, :]
        outs = [torch.einsum("bhd,bhde->bhe", qh[:, :, t], state) for t in range(a.Nq)]
    if outs:
        o_aug = torch.stack(outs, dim=2)
    else:
        o_aug = q.new_zeros((a.B, a.H, 0, a.state_cols), dtype=dt)
    o = split_output(o_aug, normalize, eps).transpose(1, 2).to(q.dtype)
    return o, (state if output_final_state else None)
