"""FLuRKA: fused low-rank and kernel attention (Gupta et al., 2023) — FLuRKA-Performer, -RNN and -EVA.

Non-causal (the paper's construction, DESIGN.md "FLuRKA, precisely"):

    y = Σ_h φ(X W_q^h) · [φ((E X) W_k^h)ᵀ ((F X) W_v^h)] ⊘ φ(X W_q^h) · φ((E X) W_k^h)ᵀ 1,   then o_proj,

with E, F ∈ R^{d_k×N} on the sequence axis. `downsample="before_projection"` (FLuRKA) multiplies X by E first,
so the K/V projections and the key feature map run on d_k rows; `"after_projection"` (Linformer's order)
projects first. With E, F shared across heads the two are the same function (biases included: a bias b
becomes (E 1)·b after downsampling) and differ only in FLOPs. Per-head E, F need the after-projection order.

Causal (our construction; the paper's E, F mix future tokens into every row). The sequence is cut into chunks
of `chunk_size` tokens. A query sees (1) the keys of its own chunk up to itself, exactly, through the kernel
φ, and (2) for every *completed earlier* chunk, `rows_per_chunk` summary rows E_c K_c and F_c V_c
(E_c, F_c ∈ R^{rows×chunk}, learned, shared by all chunks), feature-mapped like keys. A summary depends only
on its own chunk, which lies wholly in the past, so no future token reaches any output (tested by perturbing
future tokens). With rows_per_chunk = chunk_size and E_c = F_c = I it is exactly the causal kernel method.
`causal_kernel_attention` runs both parts as one causal linear-attention call (chunks folded into the batch,
the summaries' prefix sums as initial states). The summaries are taken from the K and V the intra-chunk keys
need anyway: E_c K_c = (E_c X_c) W_k + (E_c 1) b exactly, so the two downsampling orders are the same
function here too, and neither re-projects the chunk. FLuRKA-EVA's summaries feed EVA's chunk summaries
instead.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention.causal_kernel import causal_kernel_attention, fold_chunks
from flurka.attention.eva import EVAAttention
from flurka.attention.kernel import NORMALIZER_EPS, LinearAttention, PerformerAttention, kernel_core_flops
from flurka.attention.linformer import SequenceDownsampling
from flurka.ops.features import elu_plus_one

DOWNSAMPLE_ORDERS = ("before_projection", "after_projection")


class FLuRKAMixin:
    """Downsampling in front of a kernel method's `kernel_attend(q, k, v, *, padding_mask, summary_kv)`."""

    supports_rope = False
    needs_fixed_length = True  # non-causal; the causal construction is chunk-local (set per instance)

    def _init_flurka(
        self,
        *,
        downsample_len: int,
        downsample: str,
        share_heads: bool,
        share_kv: bool,
        chunk_size: int,
        rows_per_chunk: int,
    ) -> None:
        if downsample not in DOWNSAMPLE_ORDERS:
            raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLE_ORDERS)}; got {downsample!r}")
        if downsample == "before_projection" and not share_heads:
            raise ValueError("per-head E, F (share_heads=false) need downsample='after_projection'")
        self.downsample_order = downsample
        if self.causal:
            if not 0 < rows_per_chunk <= chunk_size:
                raise ValueError(f"rows_per_chunk must be in [1, chunk_size={chunk_size}]; got {rows_per_chunk}")
            self.needs_fixed_length = False
            self.flurka_chunk = chunk_size
            self.downsample = SequenceDownsampling(
                rows_per_chunk, chunk_size, n_heads=self.n_heads, share_heads=True, share_kv=share_kv
            )
        else:
            self.downsample = SequenceDownsampling(
                downsample_len, self.max_len, n_heads=self.n_heads, share_heads=share_heads, share_kv=share_kv
            )

    def _project_down(self, src: torch.Tensor, keep: torch.Tensor | None, which: str) -> torch.Tensor:
        """Downsampled keys ('k') or values ('v') in [B, d_k, H, D], in the configured order."""
        proj: nn.Linear = self.k_proj if which == "k" else self.v_proj
        if self.downsample_order == "after_projection":
            return self.downsample(self.split_heads(proj(src)), keep, which)
        x_low = self.downsample(src, keep, which)  # [B, d_k, d_model]: the projection now runs on d_k rows
        out = nn.functional.linear(x_low, proj.weight)  # under autocast: the dtype proj(src) would have
        if proj.bias is not None:
            # (E 1)·b is fp32 (parameters are), so it must take out's dtype: adding it as is would promote the
            # downsampled keys/values to fp32 under bf16 autocast while the queries stay bf16
            bias = self.downsample.row_sums(which, src.shape[1], keep, src.shape[0])[..., None] * proj.bias
            out = out + bias.to(out.dtype)
        return self.split_heads(out)

    def _chunk_summaries(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summary keys and values of every chunk, E_c K_c and F_c V_c: [B, C, rows, H, D] each (causal).

        From the projected K and V (E, F are shared across heads, so this equals downsampling X first and
        projecting, bias included). The last chunk's zero padding stands where X's padding would give the
        bias; that chunk's summary reaches no query, so the outputs are the same."""
        B = k.shape[0]
        c = self.flurka_chunk
        sk = self.downsample(fold_chunks(k, c), None, "k")  # [B·C, rows, H, D]
        sv = self.downsample(fold_chunks(v, c), None, "v")
        return sk.view(B, -1, *sk.shape[1:]), sv.view(B, -1, *sv.shape[1:])

    def forward(self, x, *, context=None, padding_mask=None):
        self.check_inputs(x, context, padding_mask)
        if self.causal:
            if padding_mask is None:
                q, k, v = self.project_qkv(x, None)  # one GEMM (FLuRKA has no RoPE)
            else:
                q = self.split_heads(self.q_proj(x))
                x = x * padding_mask[..., None].to(x.dtype)  # padded tokens feed no chunk summary
                k = self.split_heads(self.k_proj(x))
                v = self.split_heads(self.v_proj(x))
            summary_k, summary_v = self._chunk_summaries(k, v)
            y = self.kernel_attend(q, k, v, padding_mask=padding_mask, summary_kv=(summary_k, summary_v))
            if summary_k.shape[1] == 1:
                # One chunk: no query sees a completed chunk, so E and F take no part in the output. DDP needs
                # every parameter in every backward; a zero-weighted term keeps them in the graph (gradient 0).
                y = y + 0.0 * (summary_k.sum() + summary_v.sum())
        else:
            q = self.split_heads(self.q_proj(x))
            src = x if context is None else context
            k_low = self._project_down(src, padding_mask, "k")
            v_low = self._project_down(src, padding_mask, "v")
            y = self.kernel_attend(q, k_low, v_low, padding_mask=None)
        return self.o_proj(y.reshape(x.shape[0], x.shape[1], self.d_model))

    def downsampling_flops(self, n: int, d: int) -> int:
        """Non-causal: E·X and F·X plus the K/V projections, in the configured order."""
        k = self.downsample.downsample_len
        if self.causal:  # the K/V projections, then per chunk rows×chunk downsampling of K and V
            return 2 * 2 * n * k * d + 2 * 2 * n * d * d
        if self.downsample_order == "before_projection":
            return 2 * 2 * k * n * d + 2 * 2 * k * d * d
        return 2 * 2 * n * d * d + 2 * 2 * k * n * d


def _flurka_kwargs(kwargs: dict) -> dict:
    keys = ("downsample_len", "downsample", "share_heads", "share_kv", "chunk_size", "rows_per_chunk")
    defaults = {
        "downsample_len": 64,
        "downsample": "before_projection",
        "share_heads": True,
        "share_kv": False,
        "chunk_size": 64,
        "rows_per_chunk": 8,
    }
    return {key: kwargs.pop(key, defaults[key]) for key in keys}


class FLuRKAPerformer(FLuRKAMixin, PerformerAttention):
    name = "flurka_performer"

    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        opts = _flurka_kwargs(kwargs)
        super().__init__(d_model, n_heads, chunk_size=opts["chunk_size"], **kwargs)
        self._init_flurka(**opts)

    def kernel_attend(self, q, k, v, *, padding_mask, summary_kv=None):
        self.maybe_redraw()
        return super().kernel_attend(q, k, v, padding_mask=padding_mask, summary_kv=summary_kv)

    def flops(self, n, d_model=None, n_heads=None):
        d, h = d_model or self.d_model, n_heads or self.n_heads
        n_k = n if self.causal else self.downsample.downsample_len
        features = 2 * (n + n_k) * h * self.n_features * (d // h)
        return (
            2 * 2 * n * d * d  # q and o projections
            + self.downsampling_flops(n, d)
            + features
            + kernel_core_flops(n, n_k, h, self.n_features, d // h)
        )


class FLuRKARNN(FLuRKAMixin, LinearAttention):
    """FLuRKA over "Transformers are RNNs" linear attention (elu+1 features)."""

    name = "flurka_rnn"

    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        opts = _flurka_kwargs(kwargs)
        kwargs.setdefault("feature_map", "elu")
        super().__init__(d_model, n_heads, **kwargs)
        self._init_flurka(**opts)

    def kernel_attend(self, q, k, v, *, padding_mask, summary_kv=None):
        if summary_kv is None:
            return LinearAttention.attend(self, q, k, v, padding_mask=padding_mask)
        if self.feature_map != "elu":
            raise ValueError("causal FLuRKA-RNN is defined for elu+1 features")
        sk, sv = summary_kv
        # elu+1 is finite and positive everywhere: no stabiliser, the plain normaliser. Query and key features
        # in v's dtype, the one causal_kernel_attention computes in; the summaries' in fp32, as their states
        out = causal_kernel_attention(
            elu_plus_one(q, dtype=v.dtype, backend=self.backend),
            elu_plus_one(k, dtype=v.dtype, backend=self.backend),
            v,
            chunk_size=self.flurka_chunk,
            summary_phi=elu_plus_one(sk, backend=self.backend),
            summary_v=sv,
            key_keep=padding_mask,
            eps=NORMALIZER_EPS,
            backend=self.backend,
        )
        return out.to(q.dtype)

    def flops(self, n, d_model=None, n_heads=None):
        d, h = d_model or self.d_model, n_heads or self.n_heads
        n_k = n if self.causal else self.downsample.downsample_len
        return 2 * 2 * n * d * d + self.downsampling_flops(n, d) + kernel_core_flops(n, n_k, h, d // h, d // h)


class FLuRKAEVA(FLuRKAMixin, EVAAttention):
    """FLuRKA over EVA: EVA's local windows and control-variate summaries, on the downsampled rows."""

    name = "flurka_eva"

    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        opts = _flurka_kwargs(kwargs)
        eva_chunk = kwargs.pop("eva_chunk_size", None)
        super().__init__(d_model, n_heads, chunk_size=eva_chunk or opts["chunk_size"], **kwargs)
        self._init_flurka(**opts)
        if self.causal:
            self.chunk_size = self.flurka_chunk  # EVA's window is FLuRKA's chunk in the causal construction

    def flops(self, n, d_model=None, n_heads=None):
        d, h = d_model or self.d_model, n_heads or self.n_heads
        n_k = n if self.causal else self.downsample.downsample_len
        return 2 * 2 * n * d * d + self.downsampling_flops(n, d) + self.eva_core_flops(n, n_k, d, h)
