"""Notebooks must run: code cells are executed in order, in one namespace, as a kernel would."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(path: Path) -> dict:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}[cell {i}]", "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace


def test_explore_store_notebook_runs_on_the_demo_stream(monkeypatch):
    monkeypatch.delenv("NOTEBOOK_DB_URL", raising=False)
    ns = run_notebook(NOTEBOOKS / "explore_store.ipynb")
    assert sum(ns["labels"].values()) > 1000
    assert ns["brokers"].most_common(1)[0][0] == "楽天証券"
    assert ns["busiest"][0][0].startswith("03-19")  # the incident day of the demo stream
