"""Hugging Face GPT-2 / BERT / ViT weights → our models, so up-training can start from public checkpoints.

    model = load_pretrained("gpt2", "/data/hf/gpt2")          # a local folder; never downloads
    report = transfer_weights(GPT(**kw, attention="flurka_rnn"), model.state_dict())

Each `*_from_hf(hf_state_dict, config)` maps a Hugging Face state dict (with or without the base-model prefix,
`transformer.` / `bert.` / `vit.`) to our parameter names; `*_kwargs(config)` gives the constructor arguments
that make our model compute the same function (activation, LayerNorm eps, post-LN for BERT). A key no rule
knows is an error, never silently dropped; the keys a rule drops on purpose are listed in `IGNORED`.

GPT-2 stores its linear layers as `Conv1D` ([in, out], the transpose of nn.Linear) and fuses q, k, v into one
`c_attn`; we transpose and split. HF ViT checkpoints exist under two naming schemes (files on the Hub:
`encoder.layer.i.attention.attention.query`; transformers ≥ 5 in memory: `layers.i.attention.q_proj`); both
are accepted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

Rule = tuple[str, Callable[[re.Match, torch.Tensor], dict[str, torch.Tensor]]]

# buffers and heads that have no counterpart in our models, dropped on purpose
IGNORED = (
    r".*\.attn\.(bias|masked_bias)",  # GPT-2's causal-mask buffers (old checkpoints)
    r"embeddings\.position_ids",  # BERT's position-index buffer (old checkpoints)
    r"cls\.seq_relationship\..*",  # BERT's next-sentence-prediction head (BertForPreTraining)
    r"pooler\.dense\..*",  # ViT's pooler: ViTForImageClassification classifies the class token directly
)

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def _to(template: str, transpose: bool = False):
    def rule(m: re.Match, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {m.expand(template): t.t().contiguous() if transpose else t}

    return rule


def _split_qkv(template: str):
    """GPT-2's fused Conv1D c_attn ([d, 3d] weight or [3d] bias) → q_proj, k_proj, v_proj in nn.Linear layout."""

    def rule(m: re.Match, t: torch.Tensor) -> dict[str, torch.Tensor]:
        t = t.t() if t.dim() == 2 else t
        return {m.expand(template.format(name)): part.contiguous() for name, part in zip("qkv", t.chunk(3, dim=0))}

    return rule


def _squeeze_batch(template: str):
    def rule(m: re.Match, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {m.expand(template): t.reshape(t.shape[-2], t.shape[-1])}

    return rule


def _convert(sd: dict[str, torch.Tensor], rules: list[Rule], prefix: str, family: str) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in sd.items():
        key = key.removeprefix(prefix)
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        for pattern, rule in rules:
            m = re.fullmatch(pattern, key)
            if m:
                out.update(rule(m, value))
                break
        else:
            if not any(re.fullmatch(p, key) for p in IGNORED):
                unknown.append(key)
    if unknown:
        raise ValueError(f"{family} state dict has keys no conversion rule knows: {unknown[:10]}")
    return out


def _activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported Hugging Face activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# ---------------------------------------------------------------------------------------------- GPT-2
GPT2_RULES: list[Rule] = [
    (r"wte\.weight", lambda m, t: {"tok_emb.weight": t, "lm_head.weight": t}),
    (r"lm_head\.weight", lambda m, t: {"lm_head.weight": t}),
    (r"wpe\.weight", _to("pos_emb.weight")),
    (r"h\.(\d+)\.ln_1\.(weight|bias)", _to(r"blocks.\1.ln_attn.\2")),
    (r"h\.(\d+)\.ln_2\.(weight|bias)", _to(r"blocks.\1.ln_mlp.\2")),
    (r"h\.(\d+)\.attn\.c_attn\.(weight|bias)", _split_qkv(r"blocks.\1.attn.{}_proj.\2")),
    (r"h\.(\d+)\.attn\.c_proj\.weight", _to(r"blocks.\1.attn.o_proj.weight", transpose=True)),
    (r"h\.(\d+)\.attn\.c_proj\.bias", _to(r"blocks.\1.attn.o_proj.bias")),
    (r"h\.(\d+)\.mlp\.c_fc\.weight", _to(r"blocks.\1.mlp.fc.weight", transpose=True)),
    (r"h\.(\d+)\.mlp\.c_fc\.bias", _to(r"blocks.\1.mlp.fc.bias")),
    (r"h\.(\d+)\.mlp\.c_proj\.weight", _to(r"blocks.\1.mlp.proj.weight", transpose=True)),
    (r"h\.(\d+)\.mlp\.c_proj\.bias", _to(r"blocks.\1.mlp.proj.bias")),
    (r"ln_f\.(weight|bias)", _to(r"ln_f.\1")),
]


def gpt2_kwargs(config: Any) -> dict[str, Any]:
    """`GPT(...)` arguments that reproduce a Hugging Face GPT2Config (GPT-2's LayerNorm eps is our default)."""
    if config.layer_norm_epsilon != 1e-5 or config.scale_attn_by_inverse_layer_idx or not config.scale_attn_weights:
        raise ValueError("only GPT-2 configs with eps=1e-5 and 1/√d attention scaling are supported")
    return dict(
        vocab_size=config.vocab_size,
        max_len=config.n_positions,
        n_layers=config.n_layer,
        n_heads=config.n_head,
        d_model=config.n_embd,
        d_ff=config.n_inner,
        positional="learned",
        bias=True,
        activation=_activation(config.activation_function),
    )


def gpt2_from_hf(hf_state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A GPT2Model / GPT2LMHeadModel state dict → our GPT's (the LM head is tied to the token embeddings)."""
    out = _convert(hf_state_dict, GPT2_RULES, "transformer.", "GPT-2")
    out.setdefault("lm_head.weight", out["tok_emb.weight"])
    return out


# ---------------------------------------------------------------------------------------------- BERT
_BERT_LAYER = r"encoder\.layer\.(\d+)\."
BERT_RULES: list[Rule] = [
    (r"embeddings\.word_embeddings\.weight", _to("tok_emb.weight")),
    (r"embeddings\.position_embeddings\.weight", _to("pos_emb.weight")),
    (r"embeddings\.token_type_embeddings\.weight", _to("seg_emb.weight")),
    (r"embeddings\.LayerNorm\.(weight|bias)", _to(r"emb_ln.\1")),
    (_BERT_LAYER + r"attention\.self\.query\.(weight|bias)", _to(r"blocks.\1.attn.q_proj.\2")),
    (_BERT_LAYER + r"attention\.self\.key\.(weight|bias)", _to(r"blocks.\1.attn.k_proj.\2")),
    (_BERT_LAYER + r"attention\.self\.value\.(weight|bias)", _to(r"blocks.\1.attn.v_proj.\2")),
    (_BERT_LAYER + r"attention\.output\.dense\.(weight|bias)", _to(r"blocks.\1.attn.o_proj.\2")),
    (_BERT_LAYER + r"attention\.output\.LayerNorm\.(weight|bias)", _to(r"blocks.\1.ln_attn.\2")),
    (_BERT_LAYER + r"intermediate\.dense\.(weight|bias)", _to(r"blocks.\1.mlp.fc.\2")),
    (_BERT_LAYER + r"output\.dense\.(weight|bias)", _to(r"blocks.\1.mlp.proj.\2")),
    (_BERT_LAYER + r"output\.LayerNorm\.(weight|bias)", _to(r"blocks.\1.ln_mlp.\2")),
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", _to(r"mlm_dense.\1")),
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", _to(r"mlm_ln.\1")),
    (r"cls\.predictions\.(?:decoder\.)?bias", _to("mlm_head.bias")),
    (r"cls\.predictions\.decoder\.weight", _to("mlm_head.weight")),
    (r"pooler\.dense\.(weight|bias)", _to(r"pooler.\1")),
    (r"classifier\.(weight|bias)", _to(r"classifier.\1")),
]


def bert_kwargs(config: Any, head: str | None = None) -> dict[str, Any]:
    """`BERT(...)` arguments that reproduce a Hugging Face BertConfig: post-LN, its eps, its activation. The
    head defaults to what the checkpoint's architecture has (MLM unless it is a sequence classifier)."""
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"only absolute BERT positions are supported; got {config.position_embedding_type!r}")
    if head is None:
        classifier = "BertForSequenceClassification" in (config.architectures or [])
        head = ("regression" if config.num_labels == 1 else "classification") if classifier else "mlm"
    return dict(
        vocab_size=config.vocab_size,
        max_len=config.max_position_embeddings,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        d_model=config.hidden_size,
        d_ff=config.intermediate_size,
        type_vocab_size=config.type_vocab_size,
        positional="learned",
        bias=True,
        head=head,
        num_labels=config.num_labels,
        norm="post",
        activation=_activation(config.hidden_act),
        layer_norm_eps=config.layer_norm_eps,
    )


def bert_from_hf(hf_state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A BertModel / BertForMaskedLM / BertForPreTraining / BertForSequenceClassification state dict → ours."""
    out = _convert(hf_state_dict, BERT_RULES, "bert.", "BERT")
    if "mlm_head.bias" in out:
        out.setdefault("mlm_head.weight", out["tok_emb.weight"])  # the decoder is tied to the embeddings
    return out


# ---------------------------------------------------------------------------------------------- ViT
_VIT_OLD = r"encoder\.layer\.(\d+)\."
_VIT_NEW = r"layers\.(\d+)\."
VIT_RULES: list[Rule] = [
    (r"embeddings\.cls_token", _to("cls_token")),
    (r"embeddings\.position_embeddings", _squeeze_batch("pos_emb.weight")),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", _to(r"patch_emb.\1")),
    (rf"(?:{_VIT_OLD}|{_VIT_NEW})layernorm_before\.(weight|bias)", _to(r"blocks.\1\2.ln_attn.\3")),
    (rf"(?:{_VIT_OLD}|{_VIT_NEW})layernorm_after\.(weight|bias)", _to(r"blocks.\1\2.ln_mlp.\3")),
    (_VIT_OLD + r"attention\.attention\.query\.(weight|bias)", _to(r"blocks.\1.attn.q_proj.\2")),
    (_VIT_OLD + r"attention\.attention\.key\.(weight|bias)", _to(r"blocks.\1.attn.k_proj.\2")),
    (_VIT_OLD + r"attention\.attention\.value\.(weight|bias)", _to(r"blocks.\1.attn.v_proj.\2")),
    (_VIT_OLD + r"attention\.output\.dense\.(weight|bias)", _to(r"blocks.\1.attn.o_proj.\2")),
    (_VIT_OLD + r"intermediate\.dense\.(weight|bias)", _to(r"blocks.\1.mlp.fc.\2")),
    (_VIT_OLD + r"output\.dense\.(weight|bias)", _to(r"blocks.\1.mlp.proj.\2")),
    (_VIT_NEW + r"attention\.([qkvo])_proj\.(weight|bias)", _to(r"blocks.\1.attn.\2_proj.\3")),
    (_VIT_NEW + r"mlp\.fc1\.(weight|bias)", _to(r"blocks.\1.mlp.fc.\2")),
    (_VIT_NEW + r"mlp\.fc2\.(weight|bias)", _to(r"blocks.\1.mlp.proj.\2")),
    (r"layernorm\.(weight|bias)", _to(r"ln_f.\1")),
    (r"classifier\.(weight|bias)", _to(r"head.\1")),
]


def vit_kwargs(config: Any) -> dict[str, Any]:
    """`ViT(...)` arguments that reproduce a Hugging Face ViTConfig (class-token pooling, its eps)."""
    if not config.qkv_bias:
        raise ValueError("ViT configs without q/k/v biases are not supported (our `bias` covers every layer)")
    return dict(
        image_size=config.image_size,
        channels=config.num_channels,
        num_classes=config.num_labels,
        patch_size=config.patch_size,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        d_model=config.hidden_size,
        d_ff=config.intermediate_size,
        bias=True,
        pool="cls",
        activation=_activation(config.hidden_act),
        layer_norm_eps=config.layer_norm_eps,
    )


def vit_from_hf(hf_state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A ViTModel / ViTForImageClassification state dict (either naming scheme) → ours."""
    return _convert(hf_state_dict, VIT_RULES, "vit.", "ViT")


# ---------------------------------------------------------------------------------------------- loading
FAMILIES = ("gpt2", "bert", "vit")
KWARGS = {"gpt2": gpt2_kwargs, "bert": bert_kwargs, "vit": vit_kwargs}
CONVERT = {"gpt2": gpt2_from_hf, "bert": bert_from_hf, "vit": vit_from_hf}


def pretrained_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A local Hugging Face GPT-2 / BERT / ViT folder -> (its weights in our names, the constructor arguments
    of ours that compute the same function). For up-training (`init.mode=from_pretrained`): the training loop
    builds the model from its own config, checks it against these arguments and loads the weights with
    `transfer_weights` (a new attention variant's own parameters and a new task head start fresh)."""
    _, state, kwargs = _read_checkpoint(path)
    return state, kwargs


def _read_checkpoint(path: str | Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(model family, weights in our names, our constructor arguments) of a local Hugging Face folder."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    family = {"gpt2": "gpt2", "bert": "bert", "vit": "vit"}.get(config.model_type)
    if family is None:
        raise ValueError(f"{path}: model_type {config.model_type!r} is not one of {', '.join(FAMILIES)}")
    hf_model = _hf_class(family, config).from_pretrained(path, local_files_only=True)
    return family, CONVERT[family](hf_model.state_dict(), config), KWARGS[family](config)


# set by the task (shapes are checked when the weights load) or by the task head, not by the checkpoint
TASK_KWARGS = ("vocab_size", "max_len", "head", "num_labels", "num_classes", "image_size", "channels")


def config_mismatches(model_cfg: dict[str, Any], pretrained_kwargs: dict[str, Any]) -> list[str]:
    """Where the run's model config would compute another function than the checkpoint (heads, activation,
    LayerNorm order or eps, widths...), as `key: ours vs checkpoint's` lines. Shapes alone would miss most."""
    d_model = model_cfg.get("d_model")
    ours = {**model_cfg, "d_ff": model_cfg.get("d_ff") or (4 * d_model if d_model else None)}
    theirs = {**pretrained_kwargs}
    if theirs.get("d_ff") is None and theirs.get("d_model"):
        theirs["d_ff"] = 4 * theirs["d_model"]  # GPT-2's n_inner=None means 4 × width
    defaults = {"norm": "pre", "activation": "gelu", "layer_norm_eps": 1e-5, "positional": "learned", "bias": True}
    out = []
    for key, value in theirs.items():
        if key in TASK_KWARGS:
            continue
        mine = ours.get(key, defaults.get(key))
        if mine != value and not (isinstance(mine, float) and isinstance(value, float) and abs(mine - value) < 1e-15):
            out.append(f"model.{key}: {mine!r} vs the checkpoint's {value!r}")
    return out


def fit_positions(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint with more learned positions than the run uses (GPT-2: 1024) keeps the first max_len rows;
    positions past them would never be read. Fewer positions than the run needs stay an error (shape check)."""
    key = "pos_emb.weight"
    if key in state and key in own and state[key].shape[0] > own[key].shape[0]:
        state = {**state, key: state[key][: own[key].shape[0]]}
    return state


def _hf_class(family: str, config: Any) -> type:
    """The transformers class that holds all of a checkpoint's tensors (its head too, where we have one)."""
    import transformers

    arch = (config.architectures or [""])[0]
    if family == "gpt2":
        return transformers.GPT2Model if arch == "GPT2Model" else transformers.GPT2LMHeadModel
    if family == "bert":
        known = ("BertForMaskedLM", "BertForPreTraining", "BertForSequenceClassification")
        return getattr(transformers, arch) if arch in known else transformers.BertModel
    return transformers.ViTForImageClassification if arch == "ViTForImageClassification" else transformers.ViTModel


def load_pretrained(model_family: str, path: str | Path, **overrides: Any) -> nn.Module:
    """Our model (full attention) with the weights of a Hugging Face checkpoint in a local folder.

    `overrides` change constructor arguments that do not touch the checkpoint's tensors (e.g. `dropout`, or
    `head="classification", num_labels=3` for a GLUE task on an MLM checkpoint). Parameters the checkpoint
    lacks may only be the task head's; they keep their fresh initialisation. Anything else missing is an error.
    """
    from flurka.models.bert import BERT
    from flurka.models.gpt import GPT
    from flurka.models.vit import ViT

    if model_family not in FAMILIES:
        raise ValueError(f"unknown model family {model_family!r}; valid: {', '.join(FAMILIES)}")
    family, state, kwargs = _read_checkpoint(path)
    if family != model_family:
        raise ValueError(f"{path} holds a {family} checkpoint, not {model_family}")
    build = {"gpt2": GPT, "bert": BERT, "vit": ViT}[model_family]
    head_keys = tuple(getattr(build, "task_head_prefixes", ()))  # the task head may differ from the checkpoint's
    model = build(**{**kwargs, **overrides})
    own = model.state_dict()
    # head tensors the built model has no place for (another head, another label count) stay behind, reported
    unused = [k for k in state if k.startswith(head_keys) and (k not in own or state[k].shape != own[k].shape)]
    if unused:
        log.info("%s: not loading the checkpoint's head tensors %s (this model's head is new)", path, unused)
    state = {k: v for k, v in state.items() if k not in unused}
    bad = [f"missing: {k}" for k in own if k not in state and not k.startswith(head_keys)]
    bad += [f"unexpected: {k}" for k in state if k not in own]
    bad += [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        raise ValueError(f"{path} does not fit {build.__name__}({kwargs}):\n  " + "\n  ".join(bad))
    model.load_state_dict(state, strict=False)
    return model
