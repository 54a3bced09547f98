"""Every variant trains in every model family that can use it under bf16 autocast on the CPU
(`trainer.precision=bf16`, i.e. `torch.autocast("cpu", dtype=torch.bfloat16)`): the dtype mix a GPU run sees
(bf16 matmul outputs beside fp32 parameters, buffers and biases), caught here instead of on the GPU. The first
full GPU run died this way (non-causal FLuRKA's downsampled values stayed fp32 while its queries were bf16).

Each run goes through Hydra and the real loop for a few steps; every loss must be finite, and every parameter
must receive a finite gradient in every step (a parameter the graph never reaches would also break DDP)."""

from __future__ import annotations

import math

import pytest
import torch

import flurka.train.loop as loop
from flurka.attention import VARIANTS
from tests.helpers import FIXTURE_DATA, compose, logged_losses, use_fixture_corpora
from tests.train.test_model_families import COMMON, FAMILIES

STEPS = 3
CAUSAL = [n for n, v in VARIANTS.items() if v.supports_causal]
NONCAUSAL = [n for n, v in VARIANTS.items() if v.supports_noncausal]
CROSS = [n for n, v in VARIANTS.items() if v.supports_cross and v.supports_padding_mask]


def seq2seq_roles(name: str) -> list[str]:
    """One seq2seq run per variant puts it in every role it can serve: encoder (non-causal), decoder self-attention
    (causal) and cross-attention; the other roles keep full attention."""
    roles = [f"attention={name}" if name in NONCAUSAL else "attention=full"]
    if name in CAUSAL:
        roles.append(f"model.decoder_attention={name}")
    if name in CROSS:
        roles.append(f"model.cross_attention={name}")
    return roles


CASES = [("gpt", n, [f"attention={n}"]) for n in CAUSAL]
CASES += [(family, n, [f"attention={n}"]) for family in ("bert", "vit") for n in NONCAUSAL]
CASES += [("seq2seq", n, seq2seq_roles(n)) for n in VARIANTS]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # tokenizers trained once for all runs of a family


@pytest.mark.parametrize(("family", "variant", "choice"), CASES, ids=[f"{f}-{n}" for f, n, _ in CASES])
def test_every_variant_trains_under_bf16_autocast(family, variant, choice, tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("FLURKA_CACHE", str(shared_cache))
    use_fixture_corpora(monkeypatch)
    finite_grads: dict[str, int] = {}  # parameter -> steps in which it received a finite gradient
    bad: set[str] = set()
    names: list[str] = []
    real = loop.build_optimizer

    def watching_optimizer(model, t, new_params):
        for name, p in model.named_parameters():
            names.append(name)

            def seen(param, name=name):
                if torch.isfinite(param.grad).all():
                    finite_grads[name] = finite_grads.get(name, 0) + 1
                else:
                    bad.add(name)

            p.register_post_accumulate_grad_hook(seen)
        return real(model, t, new_params)

    monkeypatch.setattr(loop, "build_optimizer", watching_optimizer)
    overrides, _ = FAMILIES[family]
    cfg = compose([*COMMON, *overrides, *choice, "trainer.precision=bf16", f"trainer.max_steps={STEPS}",
                   "task.seq_len=64", f"data.root={FIXTURE_DATA}", f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    summary = loop.train(cfg)

    losses = [loss for _, loss in logged_losses(tmp_path / "run")]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses), losses
    assert math.isfinite(summary["eval_loss"]), summary  # evaluation runs under the same autocast
    assert not bad, f"non-finite gradients: {sorted(bad)}"
    missing = [n for n in names if finite_grads.get(n, 0) < STEPS]
    assert not missing, f"parameters without a gradient in some step: {missing}"
