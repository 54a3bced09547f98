"""Where data comes from: the data root, local copies with checksums, and clear errors when data is missing.

Data root (DESIGN.md): `data.root` in the config, else `$FLURKA_DATA`, else `~/.cache/flurka`. Offline, each
dataset lives under the root in the layout of the README's Data section (e.g. `wikitext-2/train.txt`);
with internet the loaders can use the canonical Hugging Face names instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


class DataError(RuntimeError):
    """Missing, corrupt or unexpected data: the run stops with this message."""


def data_root(root: str | Path | None = None) -> Path:
    """`root`, else `$FLURKA_DATA`, else `~/.cache/flurka`; an empty value counts as unset (never the cwd)."""
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("FLURKA_DATA") or "~/.cache/flurka").expanduser()


def cache_root() -> Path:
    """Where derived data (token arrays, trained tokenizers, checksum stamps) goes: `$FLURKA_CACHE`, else
    `~/.cache/flurka/derived` (also when it is set but empty). Kept apart from the data root, which may be
    read-only."""
    return Path(os.environ.get("FLURKA_CACHE") or "~/.cache/flurka/derived").expanduser()


@contextlib.contextmanager
def cache_write(folder: Path) -> Iterator[None]:
    """Writes under the cache: an OSError (read-only, full, not a folder) becomes a DataError naming the folder
    and the fix, not `OSError 30` without a path."""
    try:
        yield
    except OSError as err:
        raise DataError(
            f"cannot write the flurka cache folder {folder} ({err.strerror or err}). Derived data (token arrays, "
            "tokenizers, checksum stamps) goes there: set FLURKA_CACHE to a writable folder."
        ) from None


def writable_cache(*parts: str) -> Path:
    """cache_root()/parts, created, after checking that it can be written (see `cache_write`)."""
    folder = cache_root().joinpath(*parts)
    with cache_write(folder):
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test{os.getpid()}"
        probe.touch()
        probe.unlink()
    return folder


def read_utf8(path: Path) -> str:
    """The text of `path`; a DataError that names the file and the first bad bytes when it is not UTF-8 (the
    UnicodeDecodeError itself carries the whole file, which tracebacks then print)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path} is not UTF-8 text: bytes {raw[err.start : err.end]!r} at byte {err.start} (line {line}). "
            "Re-encode it (e.g. iconv -f latin1 -t utf-8), or use tokenizer=byte, which reads any bytes."
        ) from None


# ---- "verified" stamps: a file's checksum is checked once per version of the file, not on every run
VERIFY_MODES = ("stamp", "full")
_verify = {"mode": "stamp"}


def set_verify_mode(mode: str) -> None:
    """`data.verify`: "stamp" (re-hash a file only when it changed) or "full" (re-hash every file every run)."""
    if mode not in VERIFY_MODES:
        raise ValueError(f"data.verify must be one of {', '.join(VERIFY_MODES)}; got {mode!r}")
    _verify["mode"] = mode


def _stamp_path(path: Path) -> Path:
    return cache_root() / "verified" / (hashlib.sha1(str(path.resolve()).encode()).hexdigest() + ".json")


def stamp_key(path: Path, expected: dict[str, str]) -> dict[str, object]:
    """What a stamp records about a file. The inode change time moves on every write and every utime(), so a
    file changed in place with its mtime put back no longer matches its stamp."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, **expected}


def already_verified(path: Path, key: dict[str, object]) -> bool:
    if _verify["mode"] == "full":
        return False
    try:
        return json.loads(_stamp_path(path).read_text()) == key
    except (OSError, ValueError):
        return False


def remember_verified(path: Path, key: dict[str, object]) -> None:
    stamp = _stamp_path(path)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(key))
    except OSError:
        pass  # a read-only cache still works; it just re-hashes next time


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_file(path: Path, sha256: str | None, *, hint: str) -> Path:
    """Return `path` after checking it exists and (once per file version) matches its recorded sha256.

    The check result is remembered in a small stamp (see `stamp_key`), so a second run does not re-hash; a
    changed file is hashed again, and `data.verify=full` re-hashes every time.
    """
    if not path.is_file():
        raise DataError(f"missing data file {path}. {hint}")
    if sha256 is None:
        return path
    key = stamp_key(path, {"sha256": sha256})
    if already_verified(path, key):
        return path
    actual = sha256_file(path)
    if actual != sha256:
        raise DataError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {sha256}. The file is corrupt or not the "
            f"published version; replace it ({hint})."
        )
    remember_verified(path, key)
    return path
