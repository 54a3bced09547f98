"""Issue 13, item 6: checkpoints carry a checksum; a flipped bit is refused with the file named, and a NaN loss
after resuming blames the saved weights, not the data."""

from __future__ import annotations

import math

import pytest
import torch

from flurka.train.checkpoint import CorruptCheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from flurka.train.loop import train
from tests.helpers import compose

SMOKE = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.eval_every=0"]


def flip_one_bit_in(path, tensor: torch.Tensor) -> None:
    """Flip the lowest bit of one byte inside `tensor`'s stored bytes (the file is an uncompressed zip)."""
    raw = bytearray(path.read_bytes())
    data = tensor.contiguous().numpy().tobytes()
    at = raw.find(data[:256])
    assert at > 0 and raw.find(data[:256], at + 1) < 0  # found, once
    raw[at + 101] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_flipped_bit_is_refused_naming_the_file(tmp_path):
    train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=2", "trainer.checkpoint_every=2"]))
    ckpt = latest_checkpoint(tmp_path)
    good = load_checkpoint(ckpt)["model"]["tok_emb.weight"].clone()
    flip_one_bit_in(ckpt, good)
    # the damage is real but silent to torch: the file still loads, one weight differs in its last bit
    raw = torch.load(ckpt, weights_only=True)["model"]["tok_emb.weight"]
    assert (raw != good).sum() == 1 and torch.isfinite(raw).all()
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {ckpt} is corrupt"):
        load_checkpoint(ckpt)
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {ckpt} is corrupt"):
        train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=4", "init.mode=resume"]))


def test_nan_after_resuming_blames_the_saved_weights_not_the_data(tmp_path):
    """Weights that were already NaN when saved pass the checksum; the message says where they came from."""
    train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=2", "trainer.checkpoint_every=2"]))
    state = load_checkpoint(latest_checkpoint(tmp_path))
    state["model"]["tok_emb.weight"][:] = math.nan
    nan_ckpt = save_checkpoint(tmp_path, step=2, model_state=state["model"], optimizer_state=state["optimizer"],
                               meta=state["meta"])  # fmt: skip
    with pytest.raises(FloatingPointError, match=f"first step after resuming from {nan_ckpt}") as err:
        train(compose([*SMOKE, f"run_dir={tmp_path}", "trainer.max_steps=4", "init.mode=resume"]))
    assert "check the data" not in str(err.value)
