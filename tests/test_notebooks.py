"""The tutorial notebooks: stored without outputs, in sync with their sources, and they run.

Each ``notebooks/*.ipynb`` is executed top to bottom with nbclient on a
kernel started from the interpreter running the tests (``sys.executable``),
in a temporary working directory, so a run writes nothing into the checkout.
Any cell error fails the test; so does a cell that calls ``plt.show()``
without drawing a figure, or a file the run leaves in the checkout. The
executed outputs are discarded. Each run time is printed, not asserted (speed
is measured by ``python notebooks/run.py``, which prints every notebook's time
against the two-minute budget).
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


def _load_notebook_module(name):
    spec = importlib.util.spec_from_file_location(f"notebooks_{name}", NOTEBOOK_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _load_notebook_module("run")
NOTEBOOKS = RUNNER.notebooks()


def _load_build_module():
    return _load_notebook_module("build")


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
    RUNNER.write_kernel_spec(kernels)
    return kernels


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(path, kernel_spec_dir, tmp_path, capsys):
    pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    before = _checkout_entries()
    try:
        nb, seconds = RUNNER.execute(path, tmp_path, [kernel_spec_dir])
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    with capsys.disabled():
        print(f"\n[notebook] {path.name}: {seconds:.1f} s", flush=True)
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
