"""Build the notebooks from their percent-format sources, without outputs.

The ``.py`` files in ``notebooks/src/`` are the source of truth (keras-io's
tutobooks habit): ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown
cell whose lines are comments. This script writes ``notebooks/NN_name.ipynb``
for each ``notebooks/src/NN_name.py``; the notebooks carry no outputs and
deterministic cell ids, so the same source always gives the same file.

    python notebooks/build.py            # write every notebook
    python notebooks/build.py --check    # exit 1 if a notebook is stale or has outputs

``tests/test_notebooks.py`` runs the same check, so a notebook committed with
outputs, or edited without its source, fails CI.
"""

import argparse
import pathlib
import re
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCE_DIR = HERE / "src"
_MARKER = re.compile(r"^# %%(?P<rest>.*)$")

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def parse_percent(text, name="<source>"):
    """Split percent-format ``text`` into ``[(kind, source), ...]``, kind ``code``/``markdown``."""
    cells = []
    kind, lines = None, []

    def close():
        if kind is None:
            if any(line.strip() for line in lines):
                raise ValueError(f"{name}: text before the first '# %%' cell marker.")
            return
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        cells.append((kind, "\n".join(lines)))

    for number, line in enumerate(text.splitlines(), start=1):
        match = _MARKER.match(line)
        if match:
            close()
            rest = match.group("rest").strip()
            if rest == "[markdown]":
                kind = "markdown"
            elif rest == "" or not rest.startswith("["):
                kind = "code"
            else:
                raise ValueError(
                    f"{name}:{number}: unknown cell type {rest!r}; use '# %%' or '# %% [markdown]'."
                )
            lines = []
            continue
        if kind == "markdown":
            if line.startswith("# "):
                line = line[2:]
            elif line.strip() == "#":
                line = ""
            elif line.strip():
                raise ValueError(
                    f"{name}:{number}: markdown lines must start with '# ', received {line!r}."
                )
        lines.append(line)
    close()
    return cells


def build_notebook(source_path):
    """The output-free notebook (a ``NotebookNode``) for one percent-format source."""
    source_path = pathlib.Path(source_path)
    cells = parse_percent(source_path.read_text(encoding="utf-8"), source_path.name)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
    }
    for index, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.id = f"{source_path.stem[:40]}-{index:03d}".replace(".", "-")
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text(source_path):
    """The exact file contents the notebook of ``source_path`` should have."""
    return nbformat.writes(build_notebook(source_path)) + "\n"


def sources():
    return sorted(SOURCE_DIR.glob("[0-9][0-9]_*.py"))


def notebook_path(source_path):
    return HERE / (pathlib.Path(source_path).stem + ".ipynb")


def outputs_in(notebook_path):
    """Descriptions of the outputs and execution counts stored in a notebook file."""
    nb = nbformat.read(notebook_path, as_version=4)
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell.execution_count}")
    return found


def check():
    """Problems: stale or missing notebooks, notebooks without a source, stored outputs."""
    problems = []
    expected = {notebook_path(src): src for src in sources()}
    for path, src in expected.items():
        if not path.exists():
            problems.append(f"{path.name}: missing; run python notebooks/build.py")
            continue
        problems.extend(f"{path.name}: {p}" for p in outputs_in(path))
        if path.read_text(encoding="utf-8") != notebook_text(src):
            problems.append(
                f"{path.name}: differs from src/{src.name}; edit the source and run "
                "python notebooks/build.py"
            )
    for path in sorted(HERE.glob("*.ipynb")):
        if path not in expected:
            problems.append(f"{path.name}: no source src/{path.stem}.py")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="report stale notebooks and stored outputs instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    for src in sources():
        path = notebook_path(src)
        text = notebook_text(src)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
