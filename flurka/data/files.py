"""Shared plumbing for the dataset loaders: published checksums, missing-data messages, atomic array caches.

`PUBLISHED` maps a path relative to the data root to its published digest as `(algorithm, hexdigest)`:

- `"sha256"`: of the file as stored (MANIFEST.md's list);
- `"md5"`: of the file as stored (e.g. CIFAR-10 batches, as torchvision records them);
- `"md5_gunzip"`: of the *decompressed* content of a .gz file. MNIST's train-images .gz staged here was
  re-compressed, so only the content md5 (the official raw-file md5) can identify it.

Loaders call `checked(root, rel, hint=...)`; copies written by `flurka.data.hub` (opt-in Hugging Face
downloads, re-serialised, so never byte-identical to a release) are exempt. Tests swap the digests for their
fixtures' own (see `tests/helpers.py:use_fixture_checksums`) and check that the published digests reject them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flurka.data.sources import (
    DataError,
    already_verified,
    cache_write,
    data_root,
    remember_verified,
    stamp_key,
    writable_cache,
)

PUBLISHED: dict[str, tuple[str, str]] = {}


def register(digests: dict[str, tuple[str, str]]) -> None:
    PUBLISHED.update(digests)


def digest(path: Path, algorithm: str) -> str:
    """The hexdigest of `path` under one of the PUBLISHED algorithms; DataError when a .gz is truncated."""
    if algorithm not in ("sha256", "md5", "md5_gunzip"):
        raise ValueError(f"unknown digest algorithm {algorithm!r}; valid: sha256, md5, md5_gunzip")
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.md5()
    opener = gzip.open if algorithm == "md5_gunzip" else open
    try:
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); replace it") from err
    return h.hexdigest()


def checked(root: str | Path | None, rel: str, *, hint: str) -> Path:
    """`root/rel` after checking it exists and matches its PUBLISHED digest (if any), remembered per version.

    The stamp (`sources.stamp_key`: size, mtime, inode change time, expected digest) means a second run does
    not re-hash an unchanged file; `data.verify=full` re-hashes anyway.
    """
    path = data_root(root) / rel
    if not path.is_file():
        raise DataError(f"missing data file {path}. {hint}")
    if rel not in PUBLISHED or is_hub_copy(path):
        return path
    algorithm, expected = PUBLISHED[rel]
    key = stamp_key(path, {algorithm: expected})
    if already_verified(path, key):
        return path
    actual = digest(path, algorithm)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: {algorithm} {actual}, expected {expected}. The file is corrupt or not "
            f"the published version; replace it. {hint}"
        )
    remember_verified(path, key)
    return path


def is_hub_copy(path: Path) -> bool:
    """True for files written by flurka.data.hub: re-serialised from the Hub, so release checksums don't apply."""
    from flurka.data.hub import hub_root

    return path.resolve().is_relative_to(hub_root().resolve())


def source_key(paths: list[Path], *extra: object) -> str:
    """A cache key for data derived from `paths`: their size, mtime and inode change time plus any options
    (tokenizer id...).

    Content hashes are checked by `checked()` (stamped on the same fields), so keying on them here identifies
    the same verified content without hashing large files again; the change time catches an in-place edit
    whose mtime was put back.
    """
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|".encode())
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()[:16]


def save_atomic(path: Path, array: np.ndarray) -> None:
    with cache_write(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, array)
        os.replace(tmp, path)  # a crash never leaves a half-written cache that a later run would trust


def cached_arrays(
    folder: str, key: str, names: list[str], build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Arrays `names` cached as .npy under cache_root()/folder/<key>-<name>.npy, memory-mapped on reuse."""
    base = writable_cache(folder)
    paths = {n: base / f"{key}-{n}.npy" for n in names}
    if all(p.exists() for p in paths.values()):
        return {n: np.load(p, mmap_mode="r") for n, p in paths.items()}
    arrays = build()
    if set(arrays) != set(names):
        raise RuntimeError(f"cache builder returned {sorted(arrays)}, expected {sorted(names)}")
    for n, p in paths.items():
        save_atomic(p, np.ascontiguousarray(arrays[n]))
    return {n: np.load(p, mmap_mode="r") for n, p in paths.items()}


def missing_dataset(name: str, root: str | Path | None, files: list[str], *, hf_name: str | None, extra: str = ""):
    """The DataError for an absent dataset: which files to put where (and the canonical HF name)."""
    base = data_root(root)
    listing = "\n".join(f"  {base / f}" for f in files)
    hf = f"With internet, the canonical source is the Hugging Face dataset {hf_name!r}." if hf_name else ""
    return DataError(
        f"{name} is not in the data root {base}. Put these files there (or set FLURKA_DATA / data.root):\n"
        f"{listing}\n{extra}{hf}".rstrip()
    )
