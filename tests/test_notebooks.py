"""The research notebook runs in a real Jupyter kernel (nbclient + ipykernel, the `research` extra) against
the demo stream, draws its plots and exports its subset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
REPO = NOTEBOOKS.parent


def test_explore_store_notebook_runs_on_the_demo_stream(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("NOTEBOOK_DB_URL", raising=False)
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "notebook-test-key")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # the kernel imports this checkout, whichever install the interpreter has
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOKS / "explore_store.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) >= 3  # label mix, top tickers, daily reports per broker
    summary = json.loads(notebook.cells[-1].outputs[-1].text)
    assert sum(summary["labels"].values()) > 1000
    assert summary["top_broker"] == "楽天証券"
    assert summary["busiest_hour"].startswith("03-19")  # the incident day of the demo stream
    assert summary["exported"] > 5
