"""The classroom notebook runs top to bottom (under a minute) and its cells print what the text promises."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import PATIENCE_S

NB = Path(__file__).resolve().parents[1] / "experiments" / "classroom.ipynb"


@pytest.mark.slow
def test_classroom_notebook_executes():
    nb = nbformat.read(NB, as_version=4)
    # iopub_timeout: on a loaded machine a cell's printed output can arrive seconds after its execute reply;
    # nbclient's default (4 s) would drop it silently
    NotebookClient(nb, timeout=PATIENCE_S, iopub_timeout=PATIENCE_S, raise_on_iopub_timeout=True, kernel_name="python3",
                   resources={"metadata": {"path": str(NB.parent)}}).execute()
    # "".join: a print can reach the notebook as several stream chunks (ipykernel flushes on a timer)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "V^mu = 0.58" in text
    assert "one arm left at V = V^mu: [0. 1. 0.]" in text
    # section 1: autograd and the closed-form drift print the same vector
    lines = [l for l in text.splitlines() if "autograd" in l or "closed form" in l]
    assert lines[0].split(":")[1].strip() == lines[1].split(":")[1].strip()
