"""List the functions of ``fcn_tf`` longer than N lines, longest first (read with ``ast``).

A function's length is its span in the file, from its ``def`` line to its
last line (its docstring and comments included, its decorators not); the
second column is that span less the docstring's lines, the code a reader
follows.
Methods and nested functions are listed on their own, named
``Class.method`` and ``outer.<locals>.inner``; a nested function's lines
count in its parent's span too. Nothing is imported, so any checkout can be
measured, whatever its dependencies.

Usage, from a checkout's root::

    python tools/long_functions.py [--lines 60] [--top 10] [--root .]
"""

import argparse
import ast
import pathlib
import sys


def functions(package_dir):
    """``[(lines, code lines, path, line, qualified name)]`` of every function in ``package_dir``.

    ``code lines`` is ``lines`` less the docstring's.
    """
    found = []
    root = pathlib.Path(package_dir)
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        relative = path.relative_to(root.parent).as_posix()
        found.extend((lines, code, relative, line, name)
                     for lines, code, line, name in _walk(tree, ""))
    return found


def _walk(node, prefix):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            lines = child.end_lineno - child.lineno + 1
            yield lines, lines - _docstring_lines(child), child.lineno, name
            yield from _walk(child, f"{name}.<locals>.")
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, f"{prefix}{child.name}.")
        else:
            yield from _walk(child, prefix)


def _docstring_lines(function):
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def report(found, min_lines, top):
    """The printed list: functions over ``min_lines``, then the ``top`` longest if more."""
    ranked = sorted(found, key=lambda f: (-f[0], f[2], f[3]))
    over = [f for f in ranked if f[0] > min_lines]
    shown = ranked[:max(len(over), top)]
    lines = [f"{len(over)} of {len(found)} functions are over {min_lines} lines"
             + (f"; the {len(shown)} longest (lines, code lines):" if shown else ".")]
    lines += [f"{n:5d} {code:5d}  {path}:{line}  {name}" for n, code, path, line, name in shown]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="the checkout to measure (default: here)")
    parser.add_argument("--package", default="fcn_tf", help="the package folder in it")
    parser.add_argument("--lines", type=int, default=60,
                        help="list functions longer than this many lines (default 60)")
    parser.add_argument("--top", type=int, default=0,
                        help="list at least this many of the longest functions")
    args = parser.parse_args(argv)
    package_dir = pathlib.Path(args.root) / args.package
    if not package_dir.is_dir():
        parser.error(f"--root {args.root}: expected a checkout with a {args.package}/ folder, "
                     f"found no {package_dir}.")
    print(report(functions(package_dir), args.lines, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
