"""The walkthrough notebook runs end to end (at a tiny budget) and is committed without outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.ipynb"
PARAMETERS = re.compile(r"^MAX_ITER\s*=\s*\d+", re.MULTILINE)


def _read():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    assert cells[0].cell_type == "code" and PARAMETERS.search(cells[0].source)
    return cells[0]


def test_notebook_is_committed_clean():
    nb = _read()
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "MAX_ITER = 200" in _parameters_cell(nb).source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], "clear the outputs before committing the notebook"
            assert cell.execution_count is None


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    nb = _read()
    cell = _parameters_cell(nb)
    cell.source = PARAMETERS.sub("MAX_ITER = 5", cell.source)
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the notebook's working folder
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the plotting cells displayed no figures"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for expected in (
        "max |D(M) - D(A)|",
        "max |closed - jacfwd|",
        "max |g - g_reference|",
        "test R^2",
        "3-NN test accuracy",
        "identical embeddings: True",
    ):
        assert expected in text, f"missing output {expected!r}"
    assert list(tmp_path.iterdir()) == [], "the notebook should not write files"
