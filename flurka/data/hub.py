"""Opt-in downloads through Hugging Face `datasets`, written into the same local layout the loaders read.

Used only when a dataset is absent from the data root *and* the task was built with `allow_download=True`
(never in tests, never implicitly). The copy goes under `hub_root()` (`<cache root>/hub`), not into the data
root, which may be read-only or shared. Hub copies are re-serialised from the Hub's tables, so they are not
byte-identical to the original releases: the release checksums in `files.PUBLISHED` do not apply to them
(`files.checked` skips them under `hub_root()`); the Hub verifies its own downloads.

| loader | Hugging Face dataset (config) | written as |
|---|---|---|
| GLUE (9 tasks) | nyu-mll/glue (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli) | glue/<Folder>/<split>.tsv |
| WikiText-103 | Salesforce/wikitext (wikitext-103-v1) | wikitext-103/{train,valid,test}.txt |
| WMT14 | wmt/wmt14 (de-en, fr-en) | wmt14/<src>-<tgt>/{train,newstest2013,newstest2014}.<lang> |
| LRA Text | stanfordnlp/imdb | aclImdb/{train,test}/{neg,pos}/<n>_0.txt |
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from flurka.data.sources import cache_root

RowLoader = Callable[[str, str | None, str], Iterable[dict]]


def _hf_rows(name: str, config: str | None, split: str) -> Iterable[dict]:
    import datasets

    return datasets.load_dataset(name, config, split=split)


LOADER: RowLoader = _hf_rows  # (name, config, split) -> rows; replaceable so the conversion can be tested offline


def hub_root() -> Path:
    return cache_root() / "hub"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # each file appears whole or not at all


def _one_line(text: str) -> str:
    """Tabs and newlines would break the one-example-per-line formats; GLUE's own files contain none."""
    return " ".join(str(text).replace("\t", " ").splitlines())


def _note(folder: Path, name: str, config: str | None) -> None:
    _write(folder / "SOURCE.json", json.dumps({"hugging_face": name, "config": config}) + "\n")


def fetch_glue(task: str) -> Path:
    """Write GLUE `task` in GLUE's tsv layout (the header names the loader reads) and return the hub root."""
    from flurka.data.glue import GLUE

    spec = GLUE[task]
    hf_splits = {"train": "train", "valid": "validation", "test": "test"}
    if task == "mnli":
        hf_splits = {
            "train": "train",
            "valid": "validation_matched",
            "valid_mismatched": "validation_mismatched",
            "test": "test_matched",
            "test_mismatched": "test_mismatched",
        }
    hf_text = {"mnli": ("premise", "hypothesis"), "mrpc": ("sentence1", "sentence2")}.get(task, spec.text)
    folder = hub_root() / "glue" / spec.folder
    for split, stem in spec.files.items():
        rows = list(LOADER("nyu-mll/glue", task, hf_splits[split]))
        labelled = bool(rows) and rows[0]["label"] is not None and float(rows[0]["label"]) >= 0
        lines = []
        if task == "cola" and split != "test":  # CoLA train/dev have no header: source, label, mark, sentence
            lines = [f"hf\t{r['label']}\t\t{_one_line(r['sentence'])}" for r in rows]
        else:
            header = ["index", *spec.text] + ([spec.label] if labelled else [])
            lines.append("\t".join(header))
            for i, r in enumerate(rows):
                fields = [str(i), *(_one_line(r[c]) for c in hf_text)]
                if labelled:
                    fields.append(f"{float(r['label']):.3f}" if spec.labels is None else spec.labels[int(r["label"])])
                lines.append("\t".join(fields))
        _write(folder / f"{stem}.tsv", "\n".join(lines) + "\n")
    _note(folder, "nyu-mll/glue", task)
    return hub_root()


def fetch_wikitext103() -> Path:
    """WikiText-103 v1: the Hub's rows are the lines of wiki.*.tokens (with their newlines)."""
    folder = hub_root() / "wikitext-103"
    for split, hf_split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        rows = LOADER("Salesforce/wikitext", "wikitext-103-v1", hf_split)
        _write(folder / f"{split}.txt", "".join(r["text"] for r in rows))
    _note(folder, "Salesforce/wikitext", "wikitext-103-v1")
    return hub_root()


def fetch_wmt14(src: str, tgt: str) -> Path:
    """WMT14 as line-aligned text files; the Hub's validation/test splits are newstest2013/newstest2014."""
    config = f"{tgt if tgt != 'en' else src}-en"
    folder = hub_root() / "wmt14" / f"{src}-{tgt}"
    for stem, hf_split in (("train", "train"), ("newstest2013", "validation"), ("newstest2014", "test")):
        rows = list(LOADER("wmt/wmt14", config, hf_split))
        for lang in (src, tgt):
            _write(folder / f"{stem}.{lang}", "".join(_one_line(r["translation"][lang]) + "\n" for r in rows))
    _note(folder, "wmt/wmt14", config)
    return hub_root()


def fetch_imdb() -> Path:
    """IMDB reviews into the aclImdb folder layout (label 0 = neg, 1 = pos)."""
    folder = hub_root() / "aclImdb"
    for split in ("train", "test"):
        for i, r in enumerate(LOADER("stanfordnlp/imdb", None, split)):
            _write(folder / split / ("pos" if int(r["label"]) == 1 else "neg") / f"{i}_0.txt", r["text"])
    _note(folder, "stanfordnlp/imdb", None)
    return hub_root()
