"""Every file under conf/ composes (Hydra compose API) and instantiates — no dangling _target_s, no typos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from flurka.attention import VARIANTS
from flurka.train.config import InitConfig, TrainerConfig, from_mapping
from tests.helpers import CONF, compose, use_fixture_corpora

GROUPS = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in Path(CONF).iterdir() if p.is_dir()}


def test_every_variant_has_a_config_and_every_config_a_variant():
    assert set(GROUPS["attention"]) == set(VARIANTS)


@pytest.mark.parametrize("attention", GROUPS["attention"])
@pytest.mark.parametrize("model", GROUPS["model"])
def test_attention_x_model_composes_and_runs(attention, model):
    cfg = compose([f"attention={attention}", f"model={model}", "scale=smoke", "logger=none"])
    factory = instantiate(cfg.attention)
    assert factory.func.name == attention
    causal_model = model == "gpt"
    if causal_model and not VARIANTS[attention].supports_causal:
        with pytest.raises(Exception, match="cannot be causal"):  # the refusal names the causal variants
            instantiate(cfg.model, vocab_size=32, max_len=cfg.task.seq_len, attention=factory)
        return
    net = instantiate(cfg.model, vocab_size=32, max_len=cfg.task.seq_len, attention=factory)
    ids = torch.randint(0, 32, (2, cfg.task.seq_len))
    out = net(ids, labels=ids)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("task", GROUPS["task"])
def test_every_task_composes_and_loads(task, monkeypatch):
    use_fixture_corpora(monkeypatch)
    overrides = [
        f"task={task}",
        "scale=smoke",
        "task.seq_len=16",
        "data.root=" + str(Path(CONF).parent / "tests/fixtures/data"),
    ]
    if task == "wikitext2":
        overrides.append("task.vocab_size=300")  # the fixture is a few KB: a small vocabulary fits it
    cfg = compose(overrides)
    t = instantiate(cfg.task)
    batch = t.train_batch(0, 2, seed=0)
    assert batch["input_ids"].shape == (2, 16) and batch["input_ids"].max() < t.vocab_size


@pytest.mark.parametrize("scale", GROUPS["scale"])
def test_every_scale_composes_with_valid_trainer_keys(scale):
    cfg = compose([f"scale={scale}"])
    from omegaconf import OmegaConf

    trainer = from_mapping(TrainerConfig, OmegaConf.to_container(cfg.trainer), "trainer")
    from_mapping(InitConfig, OmegaConf.to_container(cfg.init), "init")
    assert trainer.max_steps > 0 and cfg.model.d_model % cfg.model.n_heads == 0


@pytest.mark.parametrize("logger", GROUPS["logger"])
def test_every_logger_composes(logger):
    assert compose([f"logger={logger}"]).logger.backend in ("wandb", "none")


def test_unknown_attention_override_lists_the_options():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose(["attention=softmaxx"])
    assert "flurka_performer" in str(err.value)
