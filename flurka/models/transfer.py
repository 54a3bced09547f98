"""Loading weights across attention variants — what makes up-training work.

Every variant owns q_proj/k_proj/v_proj/o_proj with the same names and shapes, so a checkpoint trained with one
variant loads into a model built with another. `transfer_weights` is strict on everything they share and
reports the rest: parameters only the new variant has (Linformer/FLuRKA E, F; EVA's proposal networks;
random-feature buffers) are left as initialised and listed, and the old variant's own extras are listed as
dropped. The same holds for a model's task head (`task_head_prefixes`, e.g. BERT's MLM head vs its classifier),
so a pre-trained encoder loads into a fine-tuning model. Anything else missing, unexpected or of another shape
is an error, never a silent partial load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

SHARED_ATTENTION_PARTS = ("q_proj.", "k_proj.", "v_proj.", "o_proj.")


def is_variant_specific(key: str) -> bool:
    """True for a key inside an attention module that is not one of the shared projections."""
    for marker in (".attn.", ".cross."):
        if marker in key:
            rest = key.split(marker, 1)[1]
            return not rest.startswith(SHARED_ATTENTION_PARTS)
    return False


def strip_wrappers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the prefixes torch.compile ('_orig_mod.') and DDP ('module.') add (nanoGPT #325)."""
    out = {}
    for k, v in state_dict.items():
        for prefix in ("_orig_mod.", "module."):
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


@dataclass
class TransferReport:
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # in the model only: initialised fresh
    dropped: list[str] = field(default_factory=list)  # in the checkpoint only: the old variant's extras

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; new (initialised fresh): {self.new or 'none'}; "
            f"dropped from the checkpoint: {self.dropped or 'none'}"
        )


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> TransferReport:
    """Load `state_dict` into `model` across attention variants and task heads (see the module docstring)."""
    state_dict = strip_wrappers(state_dict)
    own = model.state_dict()
    heads = tuple(getattr(model, "task_head_prefixes", ()))

    def replaceable(key: str) -> bool:
        return is_variant_specific(key) or (bool(heads) and key.startswith(heads))

    report = TransferReport()
    errors = []
    for key, value in state_dict.items():
        if key not in own:
            (report.dropped if replaceable(key) else errors).append(key)
            continue
        if own[key].shape != value.shape:
            errors.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
            continue
        report.loaded.append(key)
    missing = [k for k in own if k not in state_dict]
    report.new = [k for k in missing if replaceable(k)]
    errors += [f"missing from the checkpoint: {k}" for k in missing if not replaceable(k)]
    if errors:
        raise ValueError("checkpoint does not fit this model:\n  " + "\n  ".join(map(str, errors)))
    model.load_state_dict({k: state_dict[k] for k in report.loaded}, strict=False)
    return report
