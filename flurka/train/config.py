"""Typed configuration: trainer and init settings as dataclasses, model and task nodes typed by the signature of
the `_target_` they build. Every value is checked against its type and its valid range before any work starts:
a typo in a key, `trainer.lr=abc`, `trainer.compile=no` or `task.seq_len=0` is an error that names the key and
what would be valid, never a raw TypeError deep in the run or a silent default.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal


@dataclass
class TrainerConfig:
    max_steps: int = 200
    time_budget_s: float | None = None  # stop after this much training time (eval, warm-up steps excluded)
    batch_size: int = 16  # global batch, in sequences (× seq_len tokens)
    micro_batch_size: int | None = None  # per device; None = the whole per-device share in one pass
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 20  # periodic evaluations (curves, best.pt) read the split's first eval_batches batches
    final_eval_batches: int | None = None  # the final/test evaluation (the summary's numbers): None = whole split
    eval_batch_size: int | None = None
    test_at_end: bool = False  # also evaluate the final model on the task's test split (summary: test_*)
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    keep_last_k: int = 2
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU (no fp16)
    device: str = "auto"
    compile: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: ddp (replicated) or fsdp (sharded parameters, FSDP2)
    throughput_skip_steps: int = 5  # compilation and autotuning happen here; kept out of summary tokens/s
    progress: bool = True
    deterministic: bool = False


@dataclass
class InitConfig:
    mode: Literal["scratch", "resume", "from_checkpoint", "from_pretrained"] = "scratch"  # (a local HF folder)
    path: str | None = None  # resume: a checkpoint (default: the run's latest); the other two: required
    freeze_steps: int = 0  # up-training: train only the new attention parameters for this many steps
    overwrite: bool = False  # scratch into a folder that holds an earlier run: delete that run first


# Valid ranges by key name, shared by the trainer and the model/task signatures (a size is a size anywhere).
POSITIVE = {
    "max_steps", "batch_size", "micro_batch_size", "eval_batch_size", "log_every", "time_budget_s",
    "n_layers", "n_heads", "d_model", "d_ff", "seq_len", "max_len", "vocab_size", "src_vocab_size",
    "tgt_vocab_size", "patch_size", "image_size", "channels", "num_classes", "num_labels", "levels", "resolution",
    "beam_size", "min_length", "max_length", "max_depth", "max_args", "num_train", "num_valid", "layer_norm_eps",
}  # fmt: skip
# lr may be 0: a run that must keep its loaded weights still (tests of up-training do that)
NON_NEGATIVE = {"lr", "warmup_steps", "eval_every", "checkpoint_every", "throughput_skip_steps", "weight_decay",
                "grad_clip", "freeze_steps", "seed"}  # fmt: skip
UNIT_INTERVAL = {"dropout": (0.0, 1.0), "mask_prob": (0.0, 1.0), "min_lr_ratio": (0.0, 1.0), "betas": (0.0, 1.0)}


def _describe(annotation: Any) -> str:
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    """(ok, value converted to `annotation`) for the types configs use; unknown annotations accept anything."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:  # None first, then the others in order
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if annotation is type(None):
        return value is None, value
    if origin is Literal:
        return value in args, value
    if annotation is bool:  # not "no", not 1: YAML/Hydra give real booleans for true/false
        return isinstance(value, bool), value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return (True, int(value)) if float(value).is_integer() else (False, value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return True, float(value)
    if annotation is str:
        return isinstance(value, str), value
    if origin is tuple and args and args[-1] is not Ellipsis:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            return False, value
        pairs = [_coerce(v, a) for v, a in zip(value, args)]
        return all(ok for ok, _ in pairs), tuple(v for _, v in pairs)
    return True, value  # dicts, paths, tensors...: the callee checks them


def _range_error(key: str, value: Any) -> str | None:
    name = key.rsplit(".", 1)[-1]
    values = value if isinstance(value, tuple) else (value,)
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers:
        return None
    if any(not math.isfinite(v) for v in numbers):
        return f"{key} must be finite; got {value!r}"
    if name in POSITIVE and any(v <= 0 for v in numbers):
        return f"{key} must be > 0; got {value!r}"
    if name in NON_NEGATIVE and any(v < 0 for v in numbers):
        return f"{key} must be >= 0; got {value!r}"
    if name in UNIT_INTERVAL:
        lo, hi = UNIT_INTERVAL[name]
        if any(not lo <= v <= hi for v in numbers) or (name in ("dropout", "betas") and any(v >= hi for v in numbers)):
            return f"{key} must be in [{lo}, {hi}{']' if name not in ('dropout', 'betas') else ')'}; got {value!r}"
    return None


def checked_value(key: str, value: Any, annotation: Any) -> Any:
    """`value` converted to `annotation`, or a ValueError naming `key`, the type and the valid range."""
    ok, out = _coerce(value, annotation)
    if not ok:
        raise ValueError(f"{key} must be {_describe(annotation)}; got {value!r}")
    problem = _range_error(key, out)
    if problem:
        raise ValueError(problem)
    return out


def from_mapping(cls: type, values: dict[str, Any] | None, where: str):
    """An instance of the dataclass `cls` from a config mapping, every key known and every value checked."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {where} keys {unknown}; valid: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: checked_value(f"{where}.{k}", v, hints[k]) for k, v in values.items()})


def check_target_node(node: dict[str, Any] | None, where: str) -> None:
    """Check a Hydra `_target_` node (model, task) against the signature of what it builds: unknown keys
    (unless it takes **kwargs), types and ranges, before anything is built or loaded."""
    if not node or "_target_" not in node:
        return
    from hydra.utils import get_object

    target = get_object(node["_target_"])
    fn = target.__init__ if inspect.isclass(target) else target
    params = inspect.signature(fn).parameters
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if key not in params and not takes_any:
            raise ValueError(f"unknown {where} key {key!r} for {node['_target_']}; valid: {', '.join(valid)}")
        checked_value(f"{where}.{key}", value, hints.get(key, Any))
