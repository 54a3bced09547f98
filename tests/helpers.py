"""Helpers shared by tests: fixture data roots and config composition."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DATA = ROOT / "tests" / "fixtures" / "data"
CONF = str(ROOT / "conf")


def use_fixture_corpora(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the data root at tests/fixtures/data and register the fixtures' own checksums."""
    from flurka.data import text
    from flurka.data.sources import sha256_file

    for name, corpus in list(text.CORPORA.items()):
        files = {split: FIXTURE_DATA / rel for split, rel in corpus.files.items() if not Path(rel).is_absolute()}
        if files and all(p.exists() for p in files.values()):
            shas = {split: sha256_file(p) for split, p in files.items()}
            monkeypatch.setitem(text.CORPORA, name, dataclasses.replace(corpus, sha256=shas))
    use_fixture_checksums(monkeypatch)
    monkeypatch.setenv("FLURKA_DATA", str(FIXTURE_DATA))
    return FIXTURE_DATA


def use_fixture_checksums(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Register the fixtures' own digests in place of the published ones (flurka.data.files.PUBLISHED, the
    STS-B zip members and the text corpora added for issue 6), for every file that has a fixture."""
    import hashlib
    import zipfile

    import flurka.data.glue as glue
    import flurka.data.images
    import flurka.data.lra
    import flurka.data.translation  # noqa: F401 - importing registers their published checksums
    from flurka.data import files

    for rel, (algorithm, _) in list(files.PUBLISHED.items()):
        if (FIXTURE_DATA / rel).is_file():
            monkeypatch.setitem(files.PUBLISHED, rel, (algorithm, files.digest(FIXTURE_DATA / rel, algorithm)))
    stsb = FIXTURE_DATA / "glue" / "STS-B" / "STS-B.zip"
    if stsb.is_file():
        with zipfile.ZipFile(stsb) as z:
            for member in list(glue.STSB_MEMBERS):
                if member in z.namelist():
                    monkeypatch.setitem(glue.STSB_MEMBERS, member, hashlib.sha256(z.read(member)).hexdigest())
    monkeypatch.setenv("FLURKA_DATA", str(FIXTURE_DATA))
    return FIXTURE_DATA


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def logged_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train loss) of every train record in a run's metrics.jsonl, in order (one per step: a resume
    first cuts the file back to its checkpoint's step)."""
    records = (json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]


def losses(run_dir: Path) -> dict[int, float]:
    """Train loss per step (the last record wins)."""
    return dict(logged_losses(run_dir))


def run_script(args: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: int = 300):
    """Run a project script in a fresh process (what a user's shell does)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return proc


def model_inputs(target: str, seq_len: int, patch_size: int | None) -> tuple[dict, dict]:
    """(what the task would give the constructor, a batch) for each model family, at smoke size."""
    ids = torch.randint(3, 32, (2, seq_len))
    family = target.rsplit(".", 1)[1]
    if family == "GPT":
        return dict(vocab_size=32, max_len=seq_len), dict(input_ids=ids, labels=ids)
    if family == "BERT":
        mask = torch.ones(2, seq_len, dtype=torch.bool)
        mask[0, seq_len // 2 :] = False
        return dict(vocab_size=32, max_len=seq_len), dict(input_ids=ids, padding_mask=mask, labels=ids)
    if family == "ViT":
        side = 2 * patch_size
        kwargs = dict(image_size=side, channels=3, num_classes=5)
        return kwargs, dict(pixels=torch.randn(2, 3, side, side), labels=torch.tensor([0, 4]))
    if family == "Seq2Seq":
        kwargs = dict(src_vocab_size=32, tgt_vocab_size=32, max_len=seq_len, pad_id=0, bos_id=1, eos_id=2)
        return kwargs, dict(src_ids=ids, tgt_ids=ids, src_mask=torch.ones_like(ids, dtype=torch.bool), labels=ids)
    raise AssertionError(f"no test inputs for model family {family} ({target}): add them here")
