"""Feature maps φ for kernel (linear) attention — the PyTorch truth, computed in fp32.

All maps act on the last dimension of `[B, N, H, D]` tensors and return non-negative features, so the
linear-attention normaliser φ(q)·Σφ(k) stays positive.

FAVOR+ (Performer) uses positive random features φ(x) = exp(Wx − ‖x‖²/2 − c) with W orthogonal Gaussian rows.
A stabiliser c keeps exp finite in bf16/fp32. For queries c is a per-token max, which cancels exactly between
numerator and denominator. For keys c must be shared by every key a query sees, or it would bias the
weights: non-causally we use the max over the whole sequence (exact, standard); causally a max over the whole
sequence would let future tokens change past outputs (a large future key underflows every past feature), so
the causal Performer uses `favor_plus_causal_features`: a data-independent key shift instead, never this global
one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from flurka.ops._backend import without_autocast


def _math_dtype(x: torch.Tensor) -> torch.Tensor:
    """fp32 math for half-precision inputs; fp64 stays fp64 (tests compare in fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """Katharopoulos et al. (2020): φ(x) = elu(x) + 1 > 0."""
    return F.elu(_math_dtype(x)) + 1.0


def log_elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """log(elu(x) + 1) computed directly (x below 0, log1p(x) above): finite, with finite gradients, even
    where elu(x) + 1 = exp(x) underflows to 0."""
    xf = _math_dtype(x)
    return torch.where(xf < 0, xf, torch.log1p(xf.clamp(min=0.0)))


def relu_features(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = relu(x) (can be all-zero for a token; the normaliser's eps then keeps the output finite)."""
    return F.relu(_math_dtype(x))


def identity_features(x: torch.Tensor) -> torch.Tensor:
    """No feature map (Lightning / TransNormer style, used without the normaliser)."""
    return _math_dtype(x)


def orthogonal_gaussian_projection(
    n_features: int, dim: int, *, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """[n_features, dim] rows: blocks of orthogonal directions with Gaussian (chi-distributed) norms.

    Orthogonal random features reduce the variance of the FAVOR+ estimator (Choromanski et al., 2021, §4);
    the row norms are redrawn from chi(dim) so each row is marginally N(0, I).
    """
    # drawn where the generator lives (a CPU generator gives the same features on every machine), returned on
    # `device`, by default the current default device (a model built under `with torch.device("cuda")`)
    draw_device = generator.device if generator is not None else device
    blocks = []
    for _ in range(math.ceil(n_features / dim)):
        g = torch.randn(dim, dim, generator=generator, device=draw_device)
        q, r = torch.linalg.qr(g)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique QR: a Haar-distributed rotation
        blocks.append(q.T)
    w = torch.cat(blocks, dim=0)[:n_features]
    norms = torch.randn(n_features, dim, generator=generator, device=draw_device).norm(dim=1, keepdim=True)
    return (w * norms).to(device if device is not None else torch.get_default_device())


def favor_exponent(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """Wx − ‖x‖²/2 in fp32 for x of shape [B, N, H, D] and W of shape [m, D] (or [H, m, D] per head).

    The caller scales x by D^-¼ first so that φ(q)·φ(k) estimates exp(q·k/√D), the softmax kernel.
    """
    xf = _math_dtype(x)
    wf = projection.to(xf.dtype)
    with without_autocast(xf):  # the exponent feeds exp(): fp32 under bf16 autocast too
        if wf.dim() == 2:
            proj = torch.einsum("bnhd,md->bnhm", xf, wf)
        else:
            proj = torch.einsum("bnhd,hmd->bnhm", xf, wf)
    return proj - 0.5 * xf.pow(2).sum(-1, keepdim=True)


def favor_plus_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, eps: float = 0.0) -> torch.Tensor:
    """FAVOR+ positive features exp(Wx − ‖x‖²/2 − c) + eps, non-causal stabilisers (see module docstring).

    Queries: c = per-token max (cancels exactly). Keys: c = max over the sequence and features per (batch,
    head), detached (cancels exactly, as it is shared by every key). An optional eps is added to every
    feature (0 by default: the attention normaliser has its own eps); the 1/√m factor cancels and is dropped.
    """
    z = favor_exponent(x, projection)
    if z.numel() == 0:  # an empty sequence: no max to take, and nothing to stabilise
        return z + eps
    if is_query:
        c = z.amax(dim=-1, keepdim=True)
    else:
        c = z.amax(dim=(1, 3), keepdim=True)
    return torch.exp(z - c.detach()) + eps


def favor_key_shift(projection: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """c_m = ‖w_m‖²/2, the bound of every key's exponent (see `favor_plus_causal_features`): [m] or [H, m],
    which broadcasts against the [B, N, H, m] exponents."""
    return 0.5 * projection.to(dtype).pow(2).sum(-1)


def favor_plus_causal_features(
    x: torch.Tensor, projection: torch.Tensor, *, is_query: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal-safe FAVOR+ features: `(φ, None)` for keys, `(φ, a)` for queries, a [B, N, H] the query shift.

    Completing the square, w_m·k − ‖k‖²/2 = ‖w_m‖²/2 − ‖k − w_m‖²/2 ≤ c_m := ‖w_m‖²/2. So keys use
    exp(z_m − c_m) ≤ 1: a shift that depends on no data, so it never overflows and no key (no future key)
    changes another's rounding. The +c_m moves to the query side, exp(z_m + c_m − a) with a = the query's own
    max (detached): a per-query factor cancels between numerator and denominator, and the query's largest
    feature is exactly 1. φq·φk then equals the plain FAVOR+ product times exp(−a). Keys with ‖k − w_m‖² above
    ~2·87 for every m underflow to 0 in fp32 (inputs far outside the usual range).
    """
    z = favor_exponent(x, projection)
    c = favor_key_shift(projection, z.dtype)
    if not is_query:
        return torch.exp(z - c), None
    zq = z + c
    a = zq.amax(dim=-1).detach()
    return torch.exp(zq - a[..., None]), a


def cosformer_features(x: torch.Tensor, positions: torch.Tensor, max_len: int) -> torch.Tensor:
    """cosFormer (Qin et al., 2022): [relu(x)·cos(πi/2M), relu(x)·sin(πi/2M)], doubling the feature dim.

    The product φ(q_i)·φ(k_j) = relu(q_i)·relu(k_j)·cos(π(i−j)/2M) re-weights by distance (locality bias)
    while staying decomposable. `positions` is [N] (token indices); M = max_len.
    """
    r = F.relu(_math_dtype(x))
    angle = (math.pi / (2 * max_len)) * positions.to(r.dtype)
    cos = torch.cos(angle).view(1, -1, 1, 1)
    sin = torch.sin(angle).view(1, -1, 1, 1)
    return torch.cat([r * cos, r * sin], dim=-1)


FEATURE_MAPS = {"elu": elu_plus_one, "relu": relu_features, "identity": identity_features}
