"""Every experiment file (one per table row) composes with the overrides its table adds, and builds its model.

Every row composes at the first scale it runs at. One row per (table, task) also composes at every other scale
(the per-scale overrides differ by task, not by variant), and one row per (table, variant) builds its model at
that scale and runs a forward/backward: building the same model again for every task would only cost time
(a Hydra compose of this tree takes ~0.2 s). At full scale (torchrun commands) the composition alone is checked:
the papers' models are large and their data absent here.
"""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
from hydra.utils import instantiate

from flurka.results.paper_tables import TABLES
from tests.helpers import CONF, compose, model_inputs

EXPERIMENTS = sorted(
    str(p.relative_to(Path(CONF) / "experiment").with_suffix("")) for p in Path(CONF, "experiment").rglob("*.yaml")
)


def table_overrides(table: str, row: str, scale: str) -> list[str] | None:
    """What run_table.py adds for this row at this scale, or None when the row does not run at that scale."""
    spec = TABLES[table]
    return spec.settings(row, scale) if spec.runs_at(row, scale) else None


def test_every_table_has_rows_and_every_row_a_table():
    tables = {e.split("/")[0] for e in EXPERIMENTS}
    assert tables == set(TABLES)
    for table in TABLES:
        assert any(
            table_overrides(table, e.split("/")[1], "mini") is not None for e in EXPERIMENTS if e.startswith(table)
        )


def task_and_variant(row: str) -> tuple[str, str]:
    """Rows are <variant>, <variant>-<upN|scratchN> (up-training), or <task>-<variant> (task × variant tables)."""
    head, _, tail = row.partition("-")
    return (head, tail) if tail and not tail.startswith(("up", "scratch")) else ("", head)


def first_of(key) -> set[str]:
    seen: dict = {}
    for e in EXPERIMENTS:
        seen.setdefault(key(e), e)
    return set(seen.values())


ALL_SCALES = first_of(lambda e: (e.split("/")[0], task_and_variant(e.split("/")[1])[0]))
BUILDS = first_of(lambda e: (e.split("/")[0], task_and_variant(e.split("/")[1])[1]))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment):
    table, row = experiment.split("/")
    scales = [s for s in ("smoke", "mini", "full") if table_overrides(table, row, s) is not None]
    for i, scale in enumerate(scales if experiment in ALL_SCALES else scales[:1]):
        cfg = compose([f"experiment={experiment}", *table_overrides(table, row, scale), "logger=none"])
        assert cfg.group == table and cfg.name == row
        if scale == "full" or i > 0 or experiment not in BUILDS:
            continue
        kwargs, batch = model_inputs(cfg.model._target_, cfg.task.seq_len or 16, cfg.model.get("patch_size"))
        model = instantiate(cfg.model, **kwargs, attention=instantiate(cfg.attention))
        assert hydra.utils.get_class(cfg.model._target_).causal == model.causal
        model(**batch)["loss"].backward()


def test_full_scale_swaps_in_the_papers_models_and_data():
    """A table's full-scale overrides beat the row file's choices: BERT-base (post-LN) for GLUE, ImageNet for ViT."""
    glue = compose(["experiment=table-glue/cola-eva", *table_overrides("table-glue", "cola-eva", "full")])
    assert (glue.model.norm, glue.model.n_layers, glue.task.task) == ("post", 12, "cola")
    imagenet = compose(["experiment=table-imagenet/eva", *table_overrides("table-imagenet", "eva", "full")])
    assert imagenet.task._target_.endswith("build_imagenet") and imagenet.model.patch_size == 16
