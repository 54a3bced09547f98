"""Every attention variant behind one interface, and the registry that names them.

    from flurka.attention import build_attention
    attn = build_attention("flurka_performer", d_model=256, n_heads=4, causal=False, max_len=1024)
    y = attn(x)                                   # x, y: [B, N, 256]

Hydra configs (`conf/attention/<name>.yaml`) point `_target_` at the classes below.
"""

from __future__ import annotations

from collections.abc import Callable

from flurka.attention.base import Attention
from flurka.attention.eva import EVAAttention
from flurka.attention.flurka import FLuRKAEVA, FLuRKAPerformer, FLuRKARNN
from flurka.attention.full import FlashAttention, FullAttention
from flurka.attention.kernel import LinearAttention, PerformerAttention
from flurka.attention.lightning import LightningAttention
from flurka.attention.linformer import LinformerAttention
from flurka.attention.scfa import SCFAHashAttention, SCFAQKAttention

VARIANTS: dict[str, type[Attention]] = {
    cls.name: cls
    for cls in (
        FullAttention,
        FlashAttention,
        LinformerAttention,
        PerformerAttention,
        LinearAttention,
        EVAAttention,
        FLuRKAPerformer,
        FLuRKARNN,
        FLuRKAEVA,
        SCFAQKAttention,
        SCFAHashAttention,
        LightningAttention,
    )
}

CAPABILITIES = {
    "causal": "supports_causal",
    "noncausal": "supports_noncausal",
    "cross": "supports_cross",
    "padding_mask": "supports_padding_mask",
    "rope": "supports_rope",
    "alibi": "supports_alibi",
}


def variants_supporting(capability: str) -> list[str]:
    """Names of the variants that have a capability (causal, noncausal, cross, padding_mask, rope, alibi)."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; valid: {', '.join(CAPABILITIES)}")
    return [name for name, cls in VARIANTS.items() if getattr(cls, CAPABILITIES[capability])]


def get_attention_class(name: str) -> type[Attention]:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown attention variant {name!r}; valid: {', '.join(VARIANTS)}") from None


def build_attention(name: str, d_model: int, n_heads: int, **options) -> Attention:
    """Construct a variant by name: `causal`, `max_len`, `positional`, `backend` and its own options."""
    return get_attention_class(name)(d_model, n_heads, **options)


__all__ = [
    "CAPABILITIES",
    "VARIANTS",
    "Attention",
    "build_attention",
    "get_attention_class",
    "variants_supporting",
]


def attention_factory(spec) -> Callable[..., Attention]:
    """Normalise an attention spec to a factory `(d_model, n_heads, **model_options) -> Attention`.

    Accepts a variant name ("flurka_rnn"), a mapping {"name": ..., **options}, or a callable (what Hydra's
    `_partial_: true` instantiation of `conf/attention/<name>.yaml` gives).
    """
    import functools
    from collections.abc import Mapping

    if callable(spec):
        return spec
    if isinstance(spec, str):
        return functools.partial(get_attention_class(spec))
    if isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
        if name is None:
            raise ValueError(f"an attention mapping needs a 'name' (one of {', '.join(VARIANTS)}); got {spec}")
        return functools.partial(get_attention_class(name), **options)
    raise TypeError(f"attention must be a variant name, a mapping or a callable; got {type(spec).__name__}")


def factory_name(factory) -> str:
    """The variant name behind a factory (a class or a functools.partial of one)."""
    cls = getattr(factory, "func", factory)
    return getattr(cls, "name", getattr(cls, "__name__", str(cls)))


__all__ += ["attention_factory", "factory_name"]
