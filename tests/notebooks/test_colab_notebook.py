"""Executes notebooks/jaxdiff_colab.ipynb top to bottom (nbclient, a python3 kernel of this
interpreter) with JAXDIFF_NOTEBOOK_SMOKE=1, from a temporary working directory, and checks that no
cell errored, that every cell tagged "figure" drew a PNG, that the cells that check numbers ran,
and that the training run left its checkpoint and samples in its workdir."""

import os
import pathlib
import sys

import nbformat
import numpy as np
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "jaxdiff_colab.ipynb"
TIMEOUT_PER_CELL_S = 240


def kernel_manager():
    """A python3 kernel started by this test's interpreter (the project's virtual environment),
    whatever other python3 kernels the machine has registered."""
    manager = KernelManager(kernel_name="python3")
    manager.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"]
    return manager


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after a smoke run (executed once for every test of this module)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cwd = tmp_path_factory.mktemp("notebook_cwd")
    # PYTHONPATH: the kernel imports this checkout's jaxdiff even where it is not pip-installed.
    python_path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, JAXDIFF_NOTEBOOK_SMOKE="1", PYTHONPATH=python_path,
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    client = NotebookClient(notebook, timeout=TIMEOUT_PER_CELL_S, km=kernel_manager(),
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return notebook, cwd


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_every_cell_ran_without_error(executed):
    notebook, _ = executed
    cells = code_cells(notebook)
    assert cells and all(cell.execution_count is not None for cell in cells)
    errors = [output for cell in cells for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []


def test_every_figure_cell_drew_a_png(executed):
    notebook, _ = executed
    figure_cells = [cell for cell in code_cells(notebook)
                    if "figure" in cell.metadata.get("tags", [])]
    assert len(figure_cells) >= 8
    for cell in figure_cells:
        pngs = [output for output in cell.outputs
                if output.output_type == "display_data" and "image/png" in output.data]
        assert pngs, f"no figure from the cell starting {cell.source[:80]!r}"


def test_checks_inside_the_notebook_ran(executed):
    notebook, _ = executed
    printed = "".join(output.get("text", "") for cell in code_cells(notebook)
                      for output in cell.outputs if output.output_type == "stream")
    assert "jaxdiff is already installed" in printed  # the install cell is a no-op here
    assert "alpha^2 = 0.05882 (1/17 = 0.05882)" in printed
    assert "every sampler reproduces N(m, s^2) at 1000 steps" in printed
    assert "restored step 4 from" in printed
    assert "the checkpoint holds the trained EMA parameters" in printed


def test_the_run_left_a_checkpoint_and_samples_in_its_workdir(executed):
    _, cwd = executed
    run_dir = cwd / "runs" / "colab_ddpm"
    assert (run_dir / "config.json").is_file()
    assert [path.name for path in (run_dir / "checkpoints").iterdir()] == ["4"]  # smoke: 4 steps
    with np.load(run_dir / "samples" / "samples_00000004.npz") as written:
        images = written["images"]
    assert images.shape == (16, 16, 16, 3) and images.dtype == np.uint8  # 16 samples, 16 px
    assert (run_dir / "samples" / "samples_00000004.png").is_file()
