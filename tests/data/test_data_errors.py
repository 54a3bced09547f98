"""Issue 13, items 7 and 10: the checksum stamp notices in-place edits, and data problems name the file."""

from __future__ import annotations

import errno
import hashlib
import os
import traceback
from pathlib import Path

import pytest

from flurka.data import files, sources, text
from flurka.data.sources import DataError, data_root
from tests.helpers import compose


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    sources.set_verify_mode("stamp")


def _edit_in_place_keeping_mtime(path: Path) -> None:
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x20  # same size, one letter's case flipped
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r`, rsync -t or a restore do
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def _checkers(tmp_path: Path, monkeypatch):
    """Both stamped checks: sources.verified_file (text corpora) and files.checked (PUBLISHED digests)."""
    path = tmp_path / "data" / "corpus" / "train.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"the quick brown fox jumps over the lazy dog\n" * 200)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(files.PUBLISHED, "corpus/train.txt", ("sha256", sha))
    return path, {
        "verified_file": lambda: sources.verified_file(path, sha, hint="test"),
        "checked": lambda: files.checked(tmp_path / "data", "corpus/train.txt", hint="test"),
    }


@pytest.mark.parametrize("which", ["verified_file", "checked"])
def test_a_file_changed_in_place_with_its_mtime_restored_is_hashed_again(tmp_path, monkeypatch, cache, which):
    path, checkers = _checkers(tmp_path, monkeypatch)
    check = checkers[which]
    assert check() == path  # hashed once and stamped
    _edit_in_place_keeping_mtime(path)
    with pytest.raises(DataError, match=f"checksum mismatch for {path}"):
        check()


def test_verify_full_rehashes_every_time_and_stamp_only_when_changed(tmp_path, monkeypatch, cache):
    _, checkers = _checkers(tmp_path, monkeypatch)
    calls = []
    real = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        checkers["verified_file"]()
    assert len(calls) == 1  # stamped: one hash for an unchanged file
    sources.set_verify_mode("full")
    for _ in range(2):
        checkers["verified_file"]()
    assert len(calls) == 3
    assert compose(["data.verify=full"]).data.verify == "full"  # the config key train() passes on


def test_a_non_utf8_corpus_names_the_file_and_not_its_content(tmp_path, cache):
    body = b"Sing, goddess, the anger of Peleus' son Achilles. " * 400
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_bytes(body[:9000] + b"\xff\xfe" + body[9000:])
    valid.write_bytes(body[:2000])
    with pytest.raises(DataError) as err:
        text.build_lm_task("mine", seq_len=16, tokenizer="spm_bpe", vocab_size=64,
                           files={"train": str(train), "valid": str(valid)})  # fmt: skip
    assert f"{train} is not UTF-8 text: bytes b'\\xff' at byte 9000 (line 1)" in str(err.value)
    printed = "".join(traceback.format_exception(err.value))
    assert len(printed) < 3000 and "Peleus" not in printed  # the traceback no longer carries the file


def test_an_unwritable_cache_names_the_folder_and_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FLURKA_CACHE", str(blocker / "cache"))
    with pytest.raises(
        DataError, match=f"cannot write the flurka cache folder {blocker}/cache/shakespeare .*FLURKA_CACHE"
    ):
        text.build_lm_task("shakespeare", seq_len=16)


def test_a_read_only_cache_filesystem_names_the_folder(tmp_path, monkeypatch):
    """EROFS from the write itself carries no path (the issue's `OSError 30`): the DataError adds it."""
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(text.np, "save", read_only)
    with pytest.raises(DataError, match=f"cache folder {tmp_path}/cache/shakespeare \\(Read-only file system\\)"):
        text.build_lm_task("shakespeare", seq_len=16)


def test_an_empty_flurka_data_means_the_documented_default(monkeypatch):
    monkeypatch.setenv("FLURKA_DATA", "")
    monkeypatch.setenv("FLURKA_CACHE", "")
    default = Path("~/.cache/flurka").expanduser()
    assert data_root() == default and data_root(compose([]).data.root) == default
    assert sources.cache_root() == default / "derived"
