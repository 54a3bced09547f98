"""GPU tier for training: every variant trains a few steps under bf16 autocast on its GPU path (our Triton
kernels), in the model family that uses it, through Hydra and the real loop; the loss stays finite and falls.
This is what the mini tables run, checked before they spend GPU time."""

from __future__ import annotations

import math

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("GPU tier: needs a CUDA GPU (run through the device tool)", allow_module_level=True)

from flurka.attention import VARIANTS
from flurka.train.loop import train
from tests.helpers import compose, logged_losses, use_fixture_corpora

pytestmark = pytest.mark.gpu
COMMON = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.log_every=1", "trainer.eval_every=0",
          "trainer.max_steps=40", "trainer.lr=3e-3", "task.seq_len=256"]  # fmt: skip
CASES = [("gpt", "shakespeare", n) for n, v in VARIANTS.items() if v.supports_causal]
CASES += [("bert", "glue_mlm_wikitext2", n) for n, v in VARIANTS.items() if v.supports_noncausal]


@pytest.mark.parametrize(("model", "task", "attention"), CASES)
def test_a_variant_trains_on_the_gpu(model, task, attention, tmp_path, monkeypatch):
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    root = use_fixture_corpora(monkeypatch)
    extra = ["task.vocab_size=300"] if task.startswith("glue") else []
    cfg = compose([*COMMON, *extra, f"model={model}", f"task={task}", f"attention={attention}",
                   f"data.root={root}", f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    train(cfg)
    losses = [loss for _, loss in logged_losses(tmp_path / "run")]
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
