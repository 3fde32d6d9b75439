"""The tutorial notebooks: stored without outputs, in sync with their sources, and they run.

Each ``notebooks/*.ipynb`` is executed top to bottom with nbclient on a
kernel started from the interpreter running the tests (``sys.executable``),
in a temporary working directory, so a run writes nothing into the checkout.
Any cell error fails the test; so does a notebook slower than its budget, a
cell that calls ``plt.show()`` without drawing a figure, or a file the run
leaves in the checkout. The executed outputs are discarded.
"""

import importlib.util
import json
import os
import pathlib
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
# Under 2 minutes per notebook on 2 otherwise idle CPU cores (CI). A shared,
# busy machine may raise it with FCN_TF_NOTEBOOK_BUDGET_S.
NOTEBOOK_BUDGET_S = float(os.environ.get("FCN_TF_NOTEBOOK_BUDGET_S", 120))
CELL_TIMEOUT_S = 300
KERNEL_NAME = "fcn-tf-test-python3"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOK_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_has_a_notebook():
    build = _load_build_module()
    sources = build.sources()
    assert sources, "no notebook sources in notebooks/src/"
    assert [build.notebook_path(s) for s in sources] == NOTEBOOKS


def test_notebooks_have_no_outputs_and_match_their_sources():
    problems = _load_build_module().check()
    assert not problems, (
        "Notebooks must be committed without outputs and built from notebooks/src/ "
        "(run `python notebooks/build.py`):\n" + "\n".join(problems)
    )


def test_readme_lists_every_notebook():
    readme = (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    missing = [nb.name for nb in NOTEBOOKS if f"({nb.name})" not in readme]
    assert not missing, f"notebooks/README.md does not link {missing}"


@pytest.fixture(scope="module")
def kernel_spec_dir(tmp_path_factory):
    """A kernelspec whose kernel is this interpreter (the test environment's Python)."""
    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fcn_tf tests",
        "language": "python",
        # Figures are rendered as in Jupyter, so the test can check that they appear.
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return kernels


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(path, kernel_spec_dir, tmp_path, capsys):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(path, as_version=4)
    specs = KernelSpecManager(kernel_dirs=[str(kernel_spec_dir)])
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = nbclient.NotebookClient(
        nb, km=km, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    before = _checkout_entries()
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[notebook] {path.name}: {seconds:.1f} s", flush=True)
    assert seconds < NOTEBOOK_BUDGET_S, (
        f"{path.name} took {seconds:.0f} s; notebooks must run in under "
        f"{NOTEBOOK_BUDGET_S} s on 2 CPU cores. Shorten its training or inputs."
    )
    no_figure = [index for index, cell in enumerate(nb.cells)
                 if cell.cell_type == "code" and "plt.show()" in cell.source
                 and not any("image/png" in out.get("data", {}) for out in cell.outputs)]
    assert not no_figure, f"{path.name}: cells {no_figure} call plt.show() but drew no figure"
    written = sorted(_checkout_entries() - before)
    assert not written, f"{path.name} wrote into the checkout: {written}"


def _checkout_entries():
    """Top-level entries of the checkout and of notebooks/ (what a stray run would create)."""
    entries = {p.name for p in ROOT.iterdir()}
    entries |= {f"notebooks/{p.name}" for p in NOTEBOOK_DIR.iterdir() if p.name != "__pycache__"}
    return entries
