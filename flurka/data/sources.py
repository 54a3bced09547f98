"""Where data comes from: the data root, local copies with checksums, and clear errors when data is missing.

Data root (DESIGN.md): `data.root` in the config, else `$FLURKA_DATA`, else `~/.cache/flurka`. Offline, each
dataset lives under the root in the layout of the README's Data section (e.g. `wikitext-2/train.txt`);
with internet the loaders can use the canonical Hugging Face names instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class DataError(RuntimeError):
    """Missing, corrupt or unexpected data: the run stops with this message."""


def data_root(root: str | Path | None = None) -> Path:
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("FLURKA_DATA", "~/.cache/flurka")).expanduser()


def cache_root() -> Path:
    """Where derived data (token arrays, trained tokenizers, checksum stamps) goes: `$FLURKA_CACHE`, else
    `~/.cache/flurka/derived`. Kept apart from the data root, which may be read-only."""
    return Path(os.environ.get("FLURKA_CACHE", "~/.cache/flurka/derived")).expanduser()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_file(path: Path, sha256: str | None, *, hint: str) -> Path:
    """Return `path` after checking it exists and (once per file version) matches its recorded sha256.

    The check result is remembered beside the file's size and mtime in a small stamp, so a second run does
    not re-hash; a changed file is hashed again.
    """
    if not path.is_file():
        raise DataError(f"missing data file {path}. {hint}")
    if sha256 is None:
        return path
    st = path.stat()
    stamp_dir = cache_root() / "verified"
    stamp = stamp_dir / (hashlib.sha1(str(path.resolve()).encode()).hexdigest() + ".json")
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    try:
        if json.loads(stamp.read_text()) == key:
            return path
    except (OSError, ValueError):
        pass
    actual = sha256_file(path)
    if actual != sha256:
        raise DataError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {sha256}. The file is corrupt or not the "
            f"published version; replace it ({hint})."
        )
    try:
        stamp_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(key))
    except OSError:
        pass  # a read-only data root still works; it just re-hashes next time
    return path
