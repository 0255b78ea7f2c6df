"""examples/mining.ipynb runs top to bottom, in a real Jupyter kernel, on a demo-like lake."""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager

from flywheel.lake import Lake
from ingest import ingest
from sim import generate

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "mining.ipynb"
SELECTION = "notebook-diverse-rare"  # the name the notebook saves its batch under


@pytest.fixture
def demo_lake(tmp_path) -> Path:
    """What `flywheel demo` builds: 4 generated logs of 120 s, ingested into `lake`."""
    source = tmp_path / "_demo" / "logs"
    generate(source, logs=4, seconds=120.0, seed=0, camera=True)
    lake = tmp_path / "lake"
    assert ingest([source], lake).exit_code == 0
    return lake


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """The `python3` kernel, pinned to this interpreter (the venv), whatever else is installed.

    JUPYTER_PATH is searched before the user's and the system's kernelspecs, so a `python3`
    kernelspec of another Python elsewhere cannot shadow this one.
    """
    kernels = tmp_path / "jupyter" / "kernels"
    write_kernel_spec(kernels / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    return "python3"


@pytest.mark.slow
@pytest.mark.filterwarnings(
    # some jupyter_core 5.x releases warn about their move to platformdirs
    "ignore:Jupyter is migrating its paths to use standard platformdirs:DeprecationWarning",
)
def test_notebook_runs_on_the_demo_lake(demo_lake, kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_LAKE", str(demo_lake))  # before the kernel starts: it inherits
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells), "commit the notebook without outputs"
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}}
    )

    client.execute()  # raises CellExecutionError if a cell raises

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell ran"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    frames = [o for o in outputs if "scene_id" in o.get("data", {}).get("text/html", "")]
    assert frames, "no cell showed a DataFrame of scenes"

    con = Lake(demo_lake).connect()
    saved = con.execute(
        "SELECT count(*) FROM selections WHERE selection = ?", [SELECTION]
    ).fetchone()[0]
    assert saved > 0
