"""Default run names and the errors a user fixes by changing the command line.

A run's default name is `<task>-<model>-<attention>-<hash>`, where the hash covers everything in the resolved
config that changes what is trained (model, attention, task, trainer, init.freeze_steps). Two commands that
train different things therefore never share a folder, while the same command again (or with
`init.mode=resume` added) finds the same folder. Keys that only say where files go or how progress is shown
are left out, so moving the data, switching W&B off or resuming on another device keeps the name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Top-level keys that never change what is trained: where it is written and logged. `seed` has its own
# folder level (seed<seed>/), so it is not part of the name either.
_IGNORED_TOP = frozenset({"name", "group", "runs_root", "run_dir", "seed", "data", "logger", "hydra"})
# Per-section keys that change how a run is shown, stored or resumed, not the model it produces.
_IGNORED_IN = {
    "init": frozenset({"mode", "path"}),  # resume must find the folder its scratch run wrote
    "trainer": frozenset({"progress", "device", "compile", "log_every", "checkpoint_every", "keep_last_k"}),
}
_IGNORED_ANYWHERE = frozenset({"root"})  # a task's data root (a path on this machine), not its data

HASH_CHARS = 8


class RunError(Exception):
    """A mistake in the command, not in the code: scripts print the message as one line, without a traceback."""


class RunExistsError(RunError, FileExistsError):
    """A scratch run was asked for in a folder that already holds a run of the same name."""


class NothingToResumeError(RunError, FileNotFoundError):
    """init.mode=resume was asked for, but the run folder holds no checkpoint."""


def _strip(node: Any, ignored: frozenset[str] = frozenset()) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip(v, _IGNORED_IN.get(k, frozenset()))
            for k, v in sorted(node.items())
            if k not in ignored and k not in _IGNORED_ANYWHERE
        }
    if isinstance(node, list | tuple):
        return [_strip(v) for v in node]
    return node


def config_hash(cfg: dict[str, Any]) -> str:
    """A short, stable digest of what `cfg` trains (see the module docstring for what is left out)."""
    kept = {k: _strip(v, _IGNORED_IN.get(k, frozenset())) for k, v in cfg.items() if k not in _IGNORED_TOP}
    blob = json.dumps(kept, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:HASH_CHARS]


def default_name(cfg: dict[str, Any], attention: str, model: str, task: str) -> str:
    """`<task>-<model>-<attention>-<hash of the config>`: readable, and distinct for distinct configurations."""
    return f"{task}-{model}-{attention}-{config_hash(cfg)}"


def run_exists_message(run_dir: str, found: str = "") -> str:
    """The one line a user sees when the same command runs twice (`found`: what of the earlier run is there)."""
    return (
        f"{run_dir} already holds a run{f' ({found})' if found else ''}. To continue it, add init.mode=resume; to "
        "replace it, init.overwrite=true; to start another, add name=<new name> (or seed=<n>)."
    )
