"""Execute the notebooks top to bottom and print how long each took.

    python notebooks/run.py                 # every notebook
    python notebooks/run.py 05 06           # those whose name starts so

Each notebook runs with nbclient on a kernel started from this interpreter
(so it sees the same ``fcn_tf``), in a fresh temporary working directory, with
figures rendered as in Jupyter; the executed outputs are discarded. The table
compares each time with the two-minute budget every notebook is written to
(2 CPU cores); the exit status is 1 when a notebook fails, 2 when one is over
budget. ``tests/test_notebooks.py`` executes them the same way (through
:func:`execute`) and fails on a cell error, but does not time them: speed is
measured here, not asserted in a test.
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
BUDGET_S = 120.0
CELL_TIMEOUT_S = 300
KERNEL_NAME = "fcn-tf-notebooks-python3"


def notebooks(prefixes=()):
    """The ``NN_name.ipynb`` files, optionally only those starting with one of ``prefixes``."""
    found = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        found = [nb for nb in found if nb.name.startswith(tuple(prefixes))]
    return found


def write_kernel_spec(directory):
    """Write a kernelspec whose kernel is this interpreter into ``directory``; return its name."""
    spec_dir = pathlib.Path(directory) / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fcn_tf (this interpreter)",
        "language": "python",
        # Figures are rendered as in Jupyter, so a caller can check that they appear.
        "env": {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KERNEL_NAME


def execute(path, workdir, kernel_dirs):
    """Run the notebook at ``path`` in ``workdir``; return ``(executed notebook, seconds)``.

    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell.
    """
    import nbclient
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(str(path), as_version=4)
    specs = KernelSpecManager(kernel_dirs=[str(d) for d in kernel_dirs])
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = nbclient.NotebookClient(
        nb, km=km, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose name starts so (e.g. 05)")
    args = parser.parse_args(argv)
    import nbclient

    paths = notebooks(args.prefixes)
    if not paths:
        parser.error(f"no notebook in {HERE} starts with {args.prefixes}; "
                     f"choose from {[nb.name for nb in notebooks()]}")
    rows = []  # (name, seconds or None when it failed, verdict)
    with tempfile.TemporaryDirectory(prefix="fcn_tf_kernels_") as kernels:
        write_kernel_spec(kernels)
        for path in paths:
            # A fresh folder per notebook, removed as soon as it has run.
            with tempfile.TemporaryDirectory(prefix="fcn_tf_nb_") as workdir:
                try:
                    _, seconds = execute(path, workdir, [kernels])
                except nbclient.exceptions.CellExecutionError as error:
                    print(f"{path.name} failed:\n{error}", file=sys.stderr)
                    rows.append((path.name, None, "FAILED"))
                    continue
            verdict = "ok" if seconds < BUDGET_S else f"over the {BUDGET_S:.0f} s budget"
            rows.append((path.name, seconds, verdict))
            print(f"{path.name}: {seconds:.1f} s ({verdict})", flush=True)
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'notebook':<{width}}  seconds  (budget {BUDGET_S:.0f} s on 2 CPU cores)")
    for name, seconds, verdict in rows:
        shown = "-" if seconds is None else f"{seconds:.1f}"
        print(f"{name:<{width}}  {shown:>7}  {verdict}")
    timed = [seconds for _, seconds, _ in rows if seconds is not None]
    print(f"{'total':<{width}}  {sum(timed):7.1f}")
    if len(timed) < len(rows):
        return 1
    return 2 if max(timed) >= BUDGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
