"""Up-training from Hugging Face weights through the loop: `init.mode=from_pretrained init.path=<local folder>`.

A tiny GPT-2 is built and saved locally (never downloaded). With lr = 0 the run's final checkpoint must hold
exactly the converted Hugging Face tensors (so they were loaded, not re-initialised), with the new variant's
own parameters listed as new; a run whose model config would compute another function is refused by name."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from flurka.models.hf import gpt2_from_hf  # noqa: E402
from flurka.train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from flurka.train.loop import train  # noqa: E402
from tests.helpers import compose  # noqa: E402

# byte-level Shakespeare: vocabulary 256; the checkpoint has more positions (128) than the run uses (64)
HF = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=128, activation_function="gelu_new")
RUN = ["scale=smoke", "logger=none", "trainer.progress=false", "trainer.max_steps=2", "trainer.lr=0.0",
       "trainer.eval_every=0", "model.activation=gelu_tanh", "init.mode=from_pretrained"]  # fmt: skip


@pytest.fixture
def gpt2_folder(tmp_path):
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**HF)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2", model


@pytest.mark.parametrize("attention", ["full", "flurka_rnn"])
def test_gpt2_weights_start_the_run(gpt2_folder, tmp_path, attention, capsys):
    folder, hf_model = gpt2_folder
    run_dir = tmp_path / "run"
    train(compose([*RUN, f"attention={attention}", f"init.path={folder}", f"run_dir={run_dir}"]))
    saved = load_checkpoint(latest_checkpoint(run_dir))["model"]
    expected = gpt2_from_hf(hf_model.state_dict(), hf_model.config)
    expected["pos_emb.weight"] = expected["pos_emb.weight"][:64]  # the run's 64 positions
    for key, value in expected.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0, msg=key)
    out = capsys.readouterr().out
    assert "up-training from" in out and ("downsample.E" in out) == (attention == "flurka_rnn")


def test_a_model_config_that_computes_another_function_is_refused(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    overrides = [*RUN, "model.activation=gelu", f"init.path={folder}", f"run_dir={tmp_path / 'run'}"]
    with pytest.raises(ValueError, match=r"model.activation: 'gelu' vs the checkpoint's 'gelu_tanh'"):
        train(compose(overrides))
