"""notebooks/results.ipynb runs headless on the committed results (and on none)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_results_notebook_executes():
    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("results files under" in o.get("text", "") for o in outputs)


def test_a_notebook_whose_cell_fails_is_not_saved(tmp_path):
    """`make notebook` saves outputs in place; a failing cell stops it before the file is overwritten."""
    import importlib.util

    import pytest

    spec = importlib.util.spec_from_file_location("execute_notebook", ROOT / "scripts" / "execute_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    path = tmp_path / "broken.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    before = path.read_text()
    with pytest.raises(Exception, match="ZeroDivisionError"):
        module.execute(path)
    assert path.read_text() == before
