"""Plain PyTorch formulations of the non-causal efficient-attention layers: the speed peers of FLuRKA's Fig. 3.

What a researcher would write from each paper's equations, in a few einsums in the inputs' dtype (tensor-core
GEMMs, fp32 accumulation), with nothing fused: three projections, the feature map or softmax as separate ops,
the normaliser as its own product. Each takes a built module and computes *its* function with its parameters
(E, F, W_q, …, the random features), so the plain time and ours are of the same math, and a test holds the two
outputs equal in fp64. Issue 15 measured ours no faster than such a formulation at the Fig. 3 shape; the
benchmark now times both in one run (`bench.py flurka --impls module,plain`).

Self-attention without padding, shared-across-heads E, F (the Fig. 3 setting); FLuRKA in its
`downsample="before_projection"` order, as the module is built by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from flurka.attention.base import Attention
from flurka.attention.kernel import NORMALIZER_EPS


def _heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    return t.unflatten(-1, (n_heads, -1))  # [B, N, d] -> [B, N, H, D]


def _linear_core(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1), per head."""
    kv = torch.einsum("bkhm,bkhd->bhmd", phi_k, v)
    z = phi_k.sum(1)  # [B, H, M]
    num = torch.einsum("bnhm,bhmd->bnhd", phi_q, kv)
    den = torch.einsum("bnhm,bhm->bnh", phi_q, z)
    return num / (den[..., None] + NORMALIZER_EPS)


def _favor(x: torch.Tensor, w: torch.Tensor, *, is_query: bool) -> torch.Tensor:
    """FAVOR+ features exp(Wx − ‖x‖²/2 − c), c the query's own max or the keys' global max, detached (a
    stabiliser, as in the Performer's code: the normaliser's eps would otherwise give it a tiny gradient)."""
    z = torch.einsum("bnhd,md->bnhm", x, w.to(x.dtype)) - 0.5 * x.pow(2).sum(-1, keepdim=True)
    c = z.amax(-1, keepdim=True) if is_query else z.amax(dim=(1, 3), keepdim=True)
    return torch.exp(z - c.detach())


def _elu1(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def _downsampled_kv(m: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FLuRKA's keys and values on d_k rows: (E X) W_kᵀ + (E 1) b_k, likewise with F and W_v."""
    n = x.shape[1]
    out = []
    for which, proj in (("k", m.k_proj), ("v", m.v_proj)):
        e = m.downsample.matrix(which, n).to(x.dtype)
        t = F.linear(torch.einsum("kn,bnd->bkd", e, x), proj.weight)
        if proj.bias is not None:
            t = t + e.sum(-1)[:, None] * proj.bias
        out.append(_heads(t, m.n_heads))
    return out[0], out[1]


def plain_linformer(m: Attention, x: torch.Tensor) -> torch.Tensor:
    H, n = m.n_heads, x.shape[1]
    q, k, v = (_heads(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    k = torch.einsum("kn,bnhd->bkhd", m.downsample.matrix("k", n).to(x.dtype), k)
    v = torch.einsum("kn,bnhd->bkhd", m.downsample.matrix("v", n).to(x.dtype), v)
    scores = torch.einsum("bnhd,bkhd->bhnk", q, k) * m.head_dim**-0.5
    out = torch.einsum("bhnk,bkhd->bnhd", scores.softmax(-1), v)
    return m.o_proj(out.flatten(2))


def plain_linear(m: Attention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = (_heads(p(x), m.n_heads) for p in (m.q_proj, m.k_proj, m.v_proj))
    return m.o_proj(_linear_core(_elu1(q), _elu1(k), v).flatten(2))


def plain_performer(m: Attention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = (_heads(p(x), m.n_heads) for p in (m.q_proj, m.k_proj, m.v_proj))
    s = m.head_dim**-0.25
    phi_q, phi_k = _favor(q * s, m.projection, is_query=True), _favor(k * s, m.projection, is_query=False)
    return m.o_proj(_linear_core(phi_q, phi_k, v).flatten(2))


def plain_flurka_rnn(m: Attention, x: torch.Tensor) -> torch.Tensor:
    q = _heads(m.q_proj(x), m.n_heads)
    k, v = _downsampled_kv(m, x)
    return m.o_proj(_linear_core(_elu1(q), _elu1(k), v).flatten(2))


def plain_flurka_performer(m: Attention, x: torch.Tensor) -> torch.Tensor:
    q = _heads(m.q_proj(x), m.n_heads)
    k, v = _downsampled_kv(m, x)
    s = m.head_dim**-0.25
    phi_q, phi_k = _favor(q * s, m.projection, is_query=True), _favor(k * s, m.projection, is_query=False)
    return m.o_proj(_linear_core(phi_q, phi_k, v).flatten(2))


#: variant name → its plain formulation f(module, x) -> y (non-causal self-attention, no padding)
PLAIN: dict[str, Callable[[Attention, torch.Tensor], torch.Tensor]] = {
    "linformer": plain_linformer,
    "linear": plain_linear,
    "performer": plain_performer,
    "flurka_rnn": plain_flurka_rnn,
    "flurka_performer": plain_flurka_performer,
}


def plain_forward(m: Attention, x: torch.Tensor) -> torch.Tensor:
    """The plain formulation of `m`'s function on x; a clear error where there is none or the setting differs."""
    if m.name not in PLAIN:
        raise ValueError(f"no plain formulation of '{m.name}'; there is one for: {', '.join(PLAIN)}")
    if m.causal or getattr(m, "downsample_order", "before_projection") != "before_projection":
        raise ValueError("the plain formulations are non-causal, FLuRKA in its before_projection order")
    if getattr(m, "feature_map", "elu") != "elu":
        raise ValueError(f"plain linear attention is the elu+1 feature map; got {m.feature_map!r}")
    downsample = getattr(m, "downsample", None)
    if downsample is not None and not downsample.share_heads:
        raise ValueError("the plain formulations share E, F across heads (share_heads=true)")
    return PLAIN[m.name](m, x)
