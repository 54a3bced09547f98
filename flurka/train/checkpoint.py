"""Checkpoints: plain state dicts and JSON-able metadata, written atomically, loaded with weights_only=True.

A checkpoint holds the raw model state (no DDP/compile prefixes), optimizer, step, RNG states, the best
metric so far, and the W&B run id, so a resumed run continues the same W&B run. It is written to a temporary
file and renamed, and `latest.json` is updated only afterwards: a crash mid-save leaves the previous
checkpoint intact and pointed to. Each checkpoint records a sha256 of its tensors and metadata at save time;
a load recomputes it, so a flipped bit is refused with the file named instead of training on corrupt weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import torch

LATEST = "latest.json"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class CorruptCheckpointError(RuntimeError):
    """A checkpoint whose content no longer matches the checksum recorded when it was saved."""


def _update(h: Any, obj: Any) -> None:
    """Feed a nested state (dicts, lists, tensors, scalars) into hash `h`, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, no copy
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            h.update(f"K{key!s}".encode())
            _update(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _update(h, item)
    else:
        h.update(f"V{obj!r}".encode())


def state_checksum(payload: dict[str, Any]) -> str:
    """sha256 over everything a checkpoint holds except the checksum itself."""
    h = hashlib.sha256()
    _update(h, {k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, _, gauss = random.getstate()
    random.setstate((version, tuple(state["python"]), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path,
    *,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    meta: dict[str, Any],
    keep_last_k: int = 2,
    name: str | None = None,
) -> Path:
    """Write `ckpt-<step>.pt` (or `name`) atomically, point latest.json at it, prune to the last k."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / (name or f"ckpt-{step:08d}.pt")
    # meta travels as JSON text: plain, readable, and always loadable with weights_only=True
    payload = {
        "model": model_state,
        "optimizer": optimizer_state,
        "rng": rng_state(),
        "step": step,
        "meta": json.dumps(meta, default=str),
    }
    payload["checksum"] = state_checksum(payload)
    _atomic_save(payload, path)
    if name is None:
        _atomic_write_text(json.dumps({"path": path.name, "step": step}), ckpt_dir / LATEST)
        periodic = sorted(ckpt_dir.glob("ckpt-*.pt"))
        for old in periodic[:-keep_last_k] if keep_last_k > 0 else []:
            old.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    path = pointer.parent / json.loads(pointer.read_text())["path"]
    return path if path.exists() else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and why
        raise RuntimeError(f"cannot load checkpoint {path}: {err}") from err
    recorded = state.get("checksum")
    if recorded is not None and state_checksum(state) != recorded:  # checkpoints from before checksums: no check
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupt: its content does not match the sha256 recorded when it was saved "
            "(a flipped bit or a damaged copy). Resume from another checkpoint (init.path=...) or restore the file."
        )
    state["meta"] = json.loads(state["meta"]) if isinstance(state.get("meta"), str) else state.get("meta", {})
    return state
