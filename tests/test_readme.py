"""The README a newcomer reads first: every make target, a resume example that shows its run, the data setup;
and `make help` readable when piped."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
HELP_LINE = re.compile(r"^([a-zA-Z0-9_-]+):.*## ", re.M)  # the lines `make help` lists (its awk pattern)


def test_the_readme_lists_every_target_make_help_shows():
    targets = set(HELP_LINE.findall((ROOT / "Makefile").read_text()))
    rows = [line for line in README.splitlines() if line.startswith("|")]
    in_tables = {name for row in rows for name in re.findall(r"`([^`]+)`", row)}
    assert {"table-scfa-mnist", "table-scfa-shakespeare", "smoke", "lint", "clean"} <= targets
    assert sorted(targets - in_tables) == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make on PATH")
def test_make_help_piped_prints_no_escape_codes():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "\x1b" not in out and "\\033" not in out
    assert [line.split()[0] for line in out.splitlines()] == HELP_LINE.findall((ROOT / "Makefile").read_text())


def test_every_resume_example_follows_the_command_that_made_its_run():
    lines = [line.strip() for line in README.splitlines()]
    resumes = [i for i, line in enumerate(lines) if line.startswith("python") and "init.mode=resume" in line]
    assert resumes
    for i in resumes:
        made = lines[i].replace(" init.mode=resume", "")
        assert made in [line.split("  #")[0].strip() for line in lines[:i]], lines[i]


def test_the_data_section_says_where_datasets_go_and_that_checksums_ship_with_the_package():
    data = README[README.index("## Data") : README.index("## Runs, resume")]
    assert "FLURKA_DATA" in data and "~/.cache/flurka" in data and "recorded in the package" in data
    assert "shared/" not in README


def test_a_missing_dataset_points_at_the_readme_not_outside_the_clone(tmp_path):
    from flurka.data.images import load_mnist
    from flurka.data.sources import DataError

    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    assert "README" in str(err.value) and "shared/" not in str(err.value)
