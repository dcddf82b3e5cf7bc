"""Write a notebook from a list of cells and execute it in place (how the tutorial notebooks are refreshed).

    python scripts/nbtools.py run notebooks/00_tour.ipynb    # re-execute a stored notebook top to bottom

Outputs are stored so the notebooks read well on GitHub; `pytest --nbval-lax` re-runs them. Live widgets are not
stored: a stored widget view points at a widget model that no longer exists once the kernel is gone, and JupyterLab
then reports "widget model not found". Each widget cell keeps its one-line text instead, and the cell after it stores
the widget's `preview()` picture.
"""

import os
import sys
import time

import nbformat
from nbclient import NotebookClient


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def build(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        source = source.strip("\n")
        nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


def run(path, timeout=600):
    # the kernel inherits this process's environment: a non-inline MPLBACKEND (e.g. Agg, as CI sets) would
    # store every figure as nothing
    os.environ.pop("MPLBACKEND", None)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # stable ids keep diffs small
        cell.get("metadata", {}).pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print(f"{path}: executed in {seconds:.0f} s")
    return seconds


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        for p in sys.argv[2:]:
            run(p)
    else:
        print(__doc__)
