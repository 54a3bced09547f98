"""Execute a notebook in place, outputs saved: `python scripts/execute_notebook.py notebooks/results.ipynb`.

The results notebook is committed with its outputs (tables and plots of every results file) so that it reads on
GitHub; rerun this after new results land. It runs from the repository root, as the notebook expects.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout_s: int = 600) -> Path:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:  # never save a notebook whose cells failed: the committed one would read as if it were fine
        raise SystemExit(f"{path}: a cell failed: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    nbformat.write(nb, path)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = p.parse_args(argv)
    print(f"executed, outputs saved: {execute(args.notebook, args.timeout)}")


if __name__ == "__main__":
    main()
