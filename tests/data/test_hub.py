"""The opt-in Hugging Face path, offline: `hub.LOADER` is replaced by rows in the Hub's schema built from the
real fixtures, and the copy written into the local layout must give the same examples as the local files."""

from __future__ import annotations

import gzip
import shutil
import zipfile

import numpy as np
import pytest

from flurka.data import glue, hub, lra, text, translation
from tests.helpers import FIXTURE_DATA, use_fixture_corpora


@pytest.fixture(autouse=True)
def _fixture_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    use_fixture_corpora(monkeypatch)


def tsv_rows(raw: str, header: bool) -> list[list[str]]:
    lines = raw.lstrip("\ufeff").splitlines()
    return [line.split("\t") for line in lines[1 if header else 0 :]]


def fake_glue(task: str):
    """Rows as nyu-mll/glue serves them (sentence columns, integer or float `label`, -1 on test)."""
    if task == "stsb":
        with zipfile.ZipFile(FIXTURE_DATA / "glue/STS-B/STS-B.zip") as z:
            files = {s: z.read(f"STS-B/{s}.tsv").decode() for s in ("train", "dev", "test")}
    else:
        folder = {"cola": "CoLA", "mrpc": "MRPC", "rte": "RTE"}[task]
        files = {
            s: (FIXTURE_DATA / f"glue/{folder}/{s}.tsv").read_text(encoding="utf-8-sig")
            for s in ("train", "dev", "test")
        }

    def loader(name, config, split):
        assert (name, config) == ("nyu-mll/glue", task)
        stem = {"train": "train", "validation": "dev", "test": "test"}[split]
        rows = tsv_rows(files[stem], header=not (task == "cola" and stem != "test"))
        if task == "cola":
            return [{"sentence": r[-1], "label": -1 if stem == "test" else int(r[1])} for r in rows]
        if task == "mrpc":
            return [{"sentence1": r[3], "sentence2": r[4], "label": -1 if stem == "test" else int(r[0])} for r in rows]
        if task == "rte":
            labels = {"entailment": 0, "not_entailment": 1}
            return [
                {"sentence1": r[1], "sentence2": r[2], "label": labels[r[3]] if stem != "test" else -1} for r in rows
            ]
        return [{"sentence1": r[7], "sentence2": r[8], "label": float(r[9]) if stem != "test" else -1.0} for r in rows]

    return loader


@pytest.mark.parametrize("task", ["cola", "mrpc", "rte", "stsb"])
def test_glue_from_the_hub_matches_the_local_files(task, tmp_path, monkeypatch):
    local = glue.build_glue_task(task, vocab_size=300, max_len=48)
    monkeypatch.setattr(hub, "LOADER", fake_glue(task))
    shutil.copytree(FIXTURE_DATA / "wikitext-2", tmp_path / "root/wikitext-2")  # the tokenizer's corpus only
    fetched = glue.build_glue_task(task, vocab_size=300, max_len=48, root=str(tmp_path / "root"), allow_download=True)
    assert (hub.hub_root() / "glue").is_dir() and not (tmp_path / "root/glue").exists()
    for split in local.splits:
        for key in ("input_ids", "token_type_ids", "lengths", "labels"):
            assert np.array_equal(np.asarray(local.splits[split][key]), np.asarray(fetched.splits[split][key])), (
                split,
                key,
            )


def test_without_permission_nothing_is_downloaded(tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("downloaded without allow_download")

    monkeypatch.setattr(hub, "LOADER", refuse)
    with pytest.raises(glue.DataError, match="glue/QNLI/train.tsv"):
        glue.build_glue_task("qnli", vocab_size=300)


def test_wmt14_imdb_and_wikitext103_from_the_hub(tmp_path, monkeypatch):
    raw = FIXTURE_DATA / "multi30k/task1/raw"
    en, de = (gzip.decompress((raw / f"train.{lang}.gz").read_bytes()).decode().splitlines() for lang in ("en", "de"))
    wiki = (FIXTURE_DATA / "wikitext-2/train.txt").read_text().splitlines(keepends=True)
    reviews = [line.strip() for line in wiki if len(line.strip()) > 40]

    def loader(name, config, split):
        if name == "wmt/wmt14":
            assert config == "de-en"
            part = {"train": slice(0, 40), "validation": slice(40, 50), "test": slice(50, 60)}[split]
            return [{"translation": {"en": a, "de": b}} for a, b in zip(en[part], de[part], strict=True)]
        if name == "stanfordnlp/imdb":
            part = reviews[:6] if split == "train" else reviews[6:10]
            return [{"text": t, "label": i % 2} for i, t in enumerate(part)]
        assert (name, config) == ("Salesforce/wikitext", "wikitext-103-v1")
        return [{"text": t} for t in {"train": wiki, "validation": wiki[:30], "test": wiki[30:60]}[split]]

    monkeypatch.setattr(hub, "LOADER", loader)
    task = translation.build_translation_task(
        "wmt14", src="en", tgt="de", vocab_size=200, max_len=96, root=str(tmp_path), allow_download=True
    )
    assert {s: task.num_examples(s) for s in task.splits} == {"train": 40, "valid": 10, "test": 10}
    assert task.references["test"] == de[50:60]
    imdb = lra.build_lra_text(str(tmp_path), seq_len=64, allow_download=True)
    assert imdb.num_examples("train") == 6 and sorted(np.asarray(imdb.splits["train"]["labels"]).tolist()) == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]
    lm = text.build_lm_task("wikitext-103", seq_len=16, root=str(tmp_path), allow_download=True)
    train = (FIXTURE_DATA / "wikitext-2/train.txt").read_bytes()
    assert bytes(np.asarray(lm.splits["train"], dtype=np.uint8)) == train  # the Hub's lines joined = the file
