"""The LM corpora added for issue 6: enwik8 (byte level), WikiText-103, OpenWebText2 (GPT-2 BPE)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math

import numpy as np
import pytest

from flurka.data import text
from flurka.data.sources import DataError, sha256_file
from flurka.data.tokenizers import ByteTokenizer, GPT2BPETokenizer, WordPieceTokenizer
from tests.helpers import FIXTURE_DATA

ENWIK8_SHA = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))


def test_missing_enwik8_names_the_file_and_its_sha256(tmp_path):
    with pytest.raises(DataError, match=rf"(?s)missing data file {tmp_path}/enwik8/enwik8\..*{ENWIK8_SHA}"):
        text.build_lm_task("enwik8", seq_len=16, root=str(tmp_path))


def test_enwik8_is_byte_level_split_90_5_5_with_bits_per_character(tmp_path, monkeypatch):
    """A stand-in file (the real enwik8 is not staged): real Shakespeare text plus bytes that are not UTF-8."""
    (tmp_path / "enwik8").mkdir()
    data = (FIXTURE_DATA / "tiny_shakespeare/input.txt").read_bytes()[:3998] + b"\xff\xfe"
    (tmp_path / "enwik8/enwik8").write_bytes(data)
    with pytest.raises(DataError, match=f"checksum mismatch .*expected {ENWIK8_SHA}"):
        text.build_lm_task("enwik8", seq_len=16, root=str(tmp_path))
    spec = dataclasses.replace(text.CORPORA["enwik8"], sha256={"all": sha256_file(tmp_path / "enwik8/enwik8")})
    monkeypatch.setitem(text.CORPORA, "enwik8", spec)
    task = text.build_lm_task("enwik8", seq_len=16, root=str(tmp_path))
    assert task.metric == "bpc" and task.vocab_size == 256
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 3600, "valid": 200, "test": 200}
    stream = np.concatenate([task.splits[s] for s in ("train", "valid", "test")])
    assert (stream == np.frombuffer(data, np.uint8)).all()  # every byte, including the non-UTF-8 tail
    assert task.eval_metrics(math.log(2))["bpc"] == pytest.approx(1.0)


def test_missing_wikitext103_names_the_files(tmp_path):
    with pytest.raises(DataError, match=r"(?s)wikitext-103/train.txt.*wiki.train.tokens"):
        text.build_lm_task("wikitext-103", seq_len=16, tokenizer="spm_bpe", root=str(tmp_path))


def _shards(root):
    lines = [t for t in (FIXTURE_DATA / "wikitext-2/train.txt").read_text().splitlines() if t.strip()]
    train, valid = root / "openwebtext2/train", root / "openwebtext2/valid"
    train.mkdir(parents=True)
    valid.mkdir(parents=True)
    (train / "00.jsonl").write_text("".join(json.dumps({"text": t, "meta": {}}) + "\n" for t in lines[:3]))
    (train / "01.jsonl.gz").write_bytes(gzip.compress(json.dumps({"text": lines[3]}).encode() + b"\n"))
    (valid / "00.txt").write_text(lines[4])
    return lines


def test_openwebtext2_documents_stream_with_eos(tmp_path):
    lines = _shards(tmp_path)
    shards = text._owt2_shards(tmp_path / "openwebtext2/train")
    assert [p.name for p in shards] == ["00.jsonl", "01.jsonl.gz"]
    stream = text.tokenize_documents_cached(shards, ByteTokenizer(), 0, tmp_path / "cache/owt2-train.bin")
    expected = b"".join(t.encode() + b"\x00" for t in lines[:4])
    assert bytes(np.asarray(stream, dtype=np.uint8)) == expected
    again = text.tokenize_documents_cached(shards, ByteTokenizer(), 0, tmp_path / "cache/owt2-train.bin")
    assert isinstance(again, np.memmap) and (again == stream).all()


def test_openwebtext2_errors_are_explicit(tmp_path):
    with pytest.raises(DataError, match=r"OpenWebText2 is not in .*openwebtext2/train/\*.jsonl"):
        text.build_openwebtext2(seq_len=16, root=str(tmp_path))
    _shards(tmp_path)
    with pytest.raises(DataError, match="GPT-2 tokenizer files .*tokenizer_path"):
        text.build_openwebtext2(seq_len=16, root=str(tmp_path))
    with pytest.raises(DataError, match="GPT-2 BPE tokenizer files not found at"):
        text.build_openwebtext2(seq_len=16, root=str(tmp_path), tokenizer_path=str(tmp_path / "gpt2"))
    bad = tmp_path / "openwebtext2/train/02.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "no text field"}\n')
    with pytest.raises(DataError, match="02.jsonl line 2: not a JSON object with a 'text' field"):
        list(text._owt2_documents(bad))


def test_transformers_tokenizers_need_local_files(tmp_path):
    with pytest.raises(DataError, match="BERT WordPiece tokenizer files not found"):
        WordPieceTokenizer(tmp_path / "bert")
    with pytest.raises(DataError, match="GPT-2 BPE tokenizer files not found"):
        GPT2BPETokenizer(tmp_path / "gpt2")


def gpt2_byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes map to themselves, the rest to 256+n."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def test_wordpiece_and_gpt2_load_from_local_files(tmp_path):
    """Tiny vocabularies in the real file formats (the published BERT/GPT-2 files are not staged here)."""
    words = ["the", "game", "was", "released", "in", "japan"]
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert/vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    wp = WordPieceTokenizer(tmp_path / "bert")
    assert (wp.pad_id, wp.cls_id, wp.sep_id, wp.mask_id, wp.first_normal_id) == (0, 2, 3, 4, 5)
    assert wp.encode("The game was released in Japan") == [5, 6, 7, 8, 9, 10]  # lower-cased, no specials
    (tmp_path / "gpt2").mkdir()
    vocab = {ch: i for i, ch in enumerate(gpt2_byte_alphabet())} | {"<|endoftext|>": 256}
    (tmp_path / "gpt2/vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "gpt2/merges.txt").write_text("#version: 0.2\n")
    gpt2 = GPT2BPETokenizer(tmp_path / "gpt2")
    assert gpt2.vocab_size == 257 and gpt2.eos_id == 256
    assert gpt2.decode(gpt2.encode("Thou art ça")) == "Thou art ça"
    _shards(tmp_path)
    task = text.build_openwebtext2(seq_len=16, root=str(tmp_path), tokenizer_path=str(tmp_path / "gpt2"))
    assert task.metric == "ppl" and task.vocab_size == 257 and (np.asarray(task.splits["valid"])[-1] == 256)
