"""Every experiment file (one per table row) composes, and its model and attention build."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.helpers import CONF, compose

EXPERIMENTS = sorted(
    str(p.relative_to(Path(CONF) / "experiment").with_suffix("")) for p in Path(CONF, "experiment").rglob("*.yaml")
)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment):
    cfg = compose([f"experiment={experiment}", "scale=smoke", "logger=none"])
    table, row = experiment.split("/")
    assert cfg.group == table and cfg.name == row
    model = instantiate(cfg.model, vocab_size=64, max_len=cfg.task.seq_len, attention=instantiate(cfg.attention))
    assert model.num_params() > 0
