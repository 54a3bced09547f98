"""`make table-X SCALE=smoke` runs every row for a few CPU steps and builds the table (here: on fixtures)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import use_fixture_corpora


@pytest.mark.slow
def test_wikitext_table_at_smoke_scale(tmp_path, monkeypatch):
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    out = run_table.main(["table-wikitext103", "--scale", "smoke", "--runs-root", str(tmp_path / "runs"),
                          "trainer.max_steps=3", "task.seq_len=32"])  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    names = {r["name"] for r in data["rows"]}
    assert names == {"full", "flash", "performer", "linear", "eva", "flurka_performer", "flurka_rnn", "flurka_eva"}
    md = (out / "table.md").read_text()
    assert "Scale: smoke" in md and "flurka_rnn" in md and "vs linear" in md


def test_full_scale_prints_torchrun_commands(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    assert run_table.main(["table-scfa", "--scale", "full", "--gpus", "2"]) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and all(line.startswith("torchrun --nproc_per_node=2 scripts/train.py") for line in lines)


@pytest.mark.slow
def test_uptrain_table_starts_rows_from_the_base_checkpoint(tmp_path, monkeypatch):
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    rows = ["base", "flurka_rnn-up25", "flurka_rnn-scratch25"]
    runs = str(tmp_path / "runs")
    out = run_table.main(
        ["table-uptrain", "--scale", "smoke", "--runs-root", runs, "--rows", ",".join(rows), "task.seq_len=32"]
    )
    data = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(data) == set(rows)
    up = tmp_path / "runs" / "table-uptrain-smoke" / "flurka_rnn-up25" / "seed0"
    assert json.loads((up / "summary.json").read_text())["steps"] == 5  # 25% of the smoke base's 20 steps
    assert "from_checkpoint" in (up / "config.yaml").read_text()
    md = (out / "table.md").read_text()
    assert "flurka_rnn-up25" in md and "base: 20 steps" in md and "flurka_rnn-up25: 5 steps" in md


def load_run_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_table", "scripts/run_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_glue_table_fine_tunes_each_pretrained_encoder(tmp_path, monkeypatch):
    """Pre-training rows run first; each task row starts from its variant's MLM checkpoint; the table pivots
    to one line per variant with a column per GLUE task."""
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    rows = ["stsb-flurka_rnn", "cola-full", "pretrain-full", "pretrain-flurka_rnn", "stsb-full"]
    out = load_run_table().main(
        [
            "table-glue",
            "--scale",
            "smoke",
            "--runs-root",
            str(tmp_path / "runs"),
            "--rows",
            ",".join(rows),
            "task.seq_len=32",
            "trainer.max_steps=3",
        ]
    )
    runs = tmp_path / "runs" / "table-glue-smoke"
    cola = (runs / "cola-full" / "seed0" / "config.yaml").read_text()
    assert "from_checkpoint" in cola and "pretrain-full/seed0/checkpoints/best.pt" in cola
    data = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(data) == {"full", "flurka_rnn"}
    assert {"CoLA (MCC)", "STS-B (Spearman)", "MLM ppl (pre-training)", "avg"} <= set(data["full"])
    assert "CoLA (MCC)" not in data["flurka_rnn"] and "avg" not in data["flurka_rnn"]  # no CoLA row ran for it
    summary = json.loads((runs / "stsb-full" / "seed0" / "summary.json").read_text())
    assert summary["steps"] == 3  # the command line beats the table's per-row steps
    assert data["full"]["STS-B (Spearman)"] == pytest.approx(100 * summary["eval_spearman"])
    md = (out / "table.md").read_text()
    assert "| full |" in md and "QQP" not in md  # tasks that did not run get no column


def test_rows_per_scale_follow_the_data_at_hand():
    run_table = load_run_table()
    mini, full = run_table.rows_of("table-lra", "mini"), run_table.rows_of("table-lra", "full")
    assert {r.split("-")[0] for r in mini} == {"listops", "mnist_seq"}
    assert {r.split("-")[0] for r in full} == {"listops", "lra_text", "lra_retrieval", "lra_image", "pathfinder"}
    glue = run_table.rows_of("table-glue", "mini")
    assert glue[:8] == sorted(r for r in glue if r.startswith("pretrain-"))  # every pre-training run goes first
    assert {r.split("-")[0] for r in glue} == {"pretrain", "cola", "sst2", "mrpc", "rte", "stsb"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "rows", "line", "column"),  # line: the table's row that must hold a number in `column`
    [
        ("table-lra", ["listops-full", "mnist_seq-full", "listops-flurka_rnn"], "full", "ListOps"),
        ("table-wmt", ["multi30k_en_de-full", "multi30k_en_fr-linear"], "full", "Multi30k en-de (BLEU)"),
        ("table-imagenet", ["full", "flurka_performer"], "full", "eval_accuracy"),
        ("table-scfa-mnist", ["flash", "scfa_hash_nb8"], "scfa_hash_nb8", "eval_bpd"),
        ("table-scfa-shakespeare", ["flash", "scfa_qk_s0.5"], "scfa_qk_s0.5", "eval_bpc"),
    ],
)
def test_task_tables_at_smoke_scale(table, rows, line, column, tmp_path, monkeypatch):
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    out = load_run_table().main(
        [
            table,
            "--scale",
            "smoke",
            "--runs-root",
            str(tmp_path / "runs"),
            "--rows",
            ",".join(rows),
            "trainer.max_steps=3",
        ]
    )
    data = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert column in data[line] and 0 <= data[line][column] <= 100
    assert "Scale: smoke" in (out / "table.md").read_text()


@pytest.mark.slow
def test_a_table_built_over_several_calls_keeps_the_rows_run_before(tmp_path, monkeypatch):
    """--rows reruns only those rows: a table too long for one GPU call is built in parts."""
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    run_table = load_run_table()
    common = ["--scale", "smoke", "--runs-root", str(tmp_path / "runs"), "trainer.max_steps=2"]
    run_table.main(["table-imagenet", "--rows", "full", *common])
    out = run_table.main(["table-imagenet", "--rows", "linear", *common])
    names = {r["name"] for r in json.loads((out / "results.json").read_text())["rows"]}
    assert names == {"full", "linear"}


def crashing_train(real, bad_rows: set[str]):
    """train() that raises for the rows in `bad_rows`, as a real crash would (after the run folder exists)."""

    def train(cfg):
        if cfg.name in bad_rows:
            raise FloatingPointError(f"loss became nan at step 1 (row {cfg.name})")
        return real(cfg)

    return train


@pytest.mark.slow
def test_a_failing_row_is_recorded_and_the_table_goes_on(tmp_path, monkeypatch):
    """A row that raises is named, with its error, in results.json and table.md; the next rows still run, the
    rows run by earlier calls keep their runs, and the exit code counts the failed rows."""
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    run_table = load_run_table()
    common = ["--scale", "smoke", "--runs-root", str(tmp_path / "runs"), "trainer.max_steps=2"]
    run_table.main(["table-imagenet", "--rows", "full", *common])  # an earlier call's complete run
    monkeypatch.setattr(run_table, "train", crashing_train(run_table.train, {"linear"}))
    outcome = run_table.run(["table-imagenet", "--rows", "linear,performer", *common])
    assert [f["name"] for f in outcome.failed] == ["linear"] and run_table.exit_code(outcome) == 1
    data = json.loads((outcome.out / "results.json").read_text())
    assert {r["name"] for r in data["rows"]} == {"full", "performer"}  # the earlier run is kept
    assert data["failed"][0]["name"] == "linear" and "loss became nan" in data["failed"][0]["error"]
    assert {m["name"] for m in data["missing"]} == {"eva", "flurka_eva", "flurka_performer", "flurka_rnn", "linformer"}
    md = (outcome.out / "table.md").read_text()
    assert "| linear | 0 | failed: FloatingPointError: loss became nan" in md
    assert "| flurka_rnn | 0 | missing" in md
    failed_json = tmp_path / "runs" / "table-imagenet-smoke" / "linear" / "seed0" / "failed.json"
    assert "Traceback" in json.loads(failed_json.read_text())["traceback"]
    assert outcome.out == tmp_path / "runs" / "table-imagenet-smoke-table"  # never results/, which holds mini
    # a later call that reruns another row exits 0: its rows finished; the table still names the earlier failure
    again = run_table.run(["table-imagenet", "--rows", "eva", *common])
    assert run_table.exit_code(again) == 0
    assert "| linear | 0 | failed:" in (again.out / "table.md").read_text()


def test_rows_that_start_from_a_failed_row_are_not_run(tmp_path, monkeypatch):
    """GLUE fine-tuning starts from its variant's pre-training checkpoint: when that row failed, the fine-tuning
    row is marked failed with the reason, without a FileNotFoundError from deep inside the loop."""
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    run_table = load_run_table()
    ran: list[str] = []
    monkeypatch.setattr(
        run_table, "train", lambda cfg: ran.append(cfg.name) or (_ for _ in ()).throw(OSError("disk full"))
    )
    outcome = run_table.run(["table-glue", "--scale", "smoke", "--runs-root", str(tmp_path / "runs"),
                             "--rows", "cola-full,pretrain-full"])  # fmt: skip
    assert ran == ["pretrain-full"]  # dependencies first, and the dependent row never started
    errors = {f["name"]: f["error"] for f in outcome.failed}
    assert errors["pretrain-full"] == "OSError: disk full"
    assert "starts from row pretrain-full, which failed" in errors["cola-full"]
    assert run_table.exit_code(outcome) == 2


def test_seeds_run_outermost_and_a_failure_blocks_only_its_own_seed(tmp_path, monkeypatch):
    """Every row at seed 0 runs before any row at seed 1, so a call cut short loses a seed, not whole rows; a
    pre-training that fails at seed 0 keeps seed 0's fine-tuning from running, not seed 1's."""
    use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    run_table = load_run_table()
    ran: list[tuple[str, int]] = []

    def train(cfg):
        ran.append((cfg.name, cfg.seed))
        if cfg.name == "pretrain-full":
            if cfg.seed == 0:
                raise OSError("disk full")
            return None  # seed 1's pre-training "finishes" (only the order and the blocking are under test)
        raise FloatingPointError("stop here")

    monkeypatch.setattr(run_table, "train", train)
    outcome = run_table.run(["table-glue", "--scale", "smoke", "--runs-root", str(tmp_path / "runs"),
                             "--rows", "cola-full,pretrain-full", "--seeds", "0", "1"])  # fmt: skip
    assert ran == [("pretrain-full", 0), ("pretrain-full", 1), ("cola-full", 1)]
    errors = {(f["name"], f["seed"]): f["error"] for f in outcome.failed}
    assert "starts from row pretrain-full, which failed" in errors[("cola-full", 0)]
    assert "stop here" in errors[("cola-full", 1)]


@pytest.mark.slow
def test_a_smoke_table_says_where_it_went_and_which_data_its_rows_read(tmp_path, monkeypatch, capsys):
    """The console ends with the paths of table.md and the plot; the data label is what the runs loaded (here
    the MNIST fixture: its training images less the 1/12 held out for validation), not a fixed string."""
    import gzip

    fixtures = use_fixture_corpora(monkeypatch)
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))
    out = load_run_table().main(["table-imagenet", "--scale", "smoke", "--runs-root", str(tmp_path / "runs"),
                                 "--rows", "full", "trainer.max_steps=2"])  # fmt: skip
    tail = capsys.readouterr().out.strip().splitlines()[-2:]
    assert tail == [f"table: {out / 'table.md'}", f"plot:  {out / 'table.png'}"]
    assert (out / "table.md").is_file() and (out / "table.png").is_file()
    with gzip.open(fixtures / "mnist" / "train-labels-idx1-ubyte.gz") as f:
        images = int.from_bytes(f.read(8)[4:8], "big")  # the idx header's item count
    label = f"read: mnist_image ({images - images // 12:,} training examples) from {fixtures}"
    assert label in (out / "table.md").read_text()


def test_stream_groups_keep_each_row_with_its_base_and_balance_the_rest():
    run_table = load_run_table()
    costs = {"pretrain-full": 10.0, "pretrain-linear": 10.0, "cola-full": 1.0, "cola-linear": 1.0, "sst2-full": 1.0}
    base_of = {"cola-full": "pretrain-full", "sst2-full": "pretrain-full", "cola-linear": "pretrain-linear"}
    groups = run_table.stream_groups(costs, base_of, 2)
    assert sorted(map(sorted, groups)) == [
        ["cola-full", "pretrain-full", "sst2-full"],
        ["cola-linear", "pretrain-linear"],
    ]
    assert all(g[0].startswith("pretrain-") for g in groups)  # the base runs before the rows that load it
    assert run_table.stream_groups({"a": 3.0, "b": 2.0, "c": 1.0}, {}, 2) == [["a"], ["b", "c"]]
    assert run_table.stream_groups({"a": 1.0}, {}, 4) == [["a"]]  # never more streams than rows


def test_streams_split_the_cpu_cores_unless_the_user_set_a_thread_count(monkeypatch):
    run_table = load_run_table()
    monkeypatch.setattr(run_table.os, "cpu_count", lambda: 16)
    env = run_table.stream_env({"PATH": "/bin"}, 4)
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "4", "FLURKA_CONCURRENT_RUNS": "4"}
    assert run_table.stream_env({}, 32)["OMP_NUM_THREADS"] == "1"  # never zero threads
    assert run_table.stream_env({"OMP_NUM_THREADS": "8"}, 4)["OMP_NUM_THREADS"] == "8"


@pytest.mark.slow
def test_rows_run_in_parallel_streams_build_one_table_that_says_so(tmp_path, monkeypatch, capsys):
    """--streams 2: two child processes run the rows at once; one table is built from both, and its notes say
    the runs shared the device (their tokens/s are not solo speeds) and give each column's chance level."""
    monkeypatch.setenv("FLURKA_CACHE", str(tmp_path / "cache"))  # ListOps is generated: no data files to read
    runs = tmp_path / "runs"
    out = load_run_table().main(
        [
            "table-lra",
            "--scale",
            "smoke",
            "--runs-root",
            str(runs),
            "--rows",
            "listops-full,listops-linear",
            "--streams",
            "2",
            "trainer.max_steps=3",
            "task.seq_len=32",
            "task.max_length=30",
        ]
    )
    for variant in ("full", "linear"):
        summary = json.loads((runs / "table-lra-smoke" / f"listops-{variant}" / "seed0" / "summary.json").read_text())
        assert summary["concurrent_runs"] == 2 and summary["steps"] == 3
        assert 0 < summary["test_majority_accuracy"] < 1
    assert {r["name"] for r in json.loads((out / "results.json").read_text())["rows"]} == {"full", "linear"}
    md = (out / "table.md").read_text()
    assert (
        "2 of 2 runs shared the device" in md and "Chance level (always predicting the commonest training label" in md
    )
    assert capsys.readouterr().out.count("[table-lra] prepared task listops") == 1  # built once, before the streams
