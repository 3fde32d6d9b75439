"""tools/long_functions.py measures every function of a package with ``ast``."""

import importlib.util
import pathlib
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("long_functions",
                                               ROOT / "tools" / "long_functions.py")
long_functions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(long_functions)


def test_spans_names_and_the_report(tmp_path, capsys):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text(textwrap.dedent('''
        import functools


        @functools.cache
        def short():
            return 1


        class Box:
            async def long(self):
                """Five lines."""
                def inner():
                    return 2
                return inner()
    '''))
    found = sorted(long_functions.functions(package))
    assert found == [(2, 2, "pkg/sub/mod.py", 6, "short"),
                     (2, 2, "pkg/sub/mod.py", 13, "Box.long.<locals>.inner"),
                     (5, 4, "pkg/sub/mod.py", 11, "Box.long")]
    assert long_functions.main(["--root", str(tmp_path), "--package", "pkg", "--lines", "4"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "1 of 3 functions are over 4 lines; the 1 longest (lines, code lines):",
        "    5     4  pkg/sub/mod.py:11  Box.long"]
    long_functions.main(["--root", str(tmp_path), "--package", "pkg", "--lines", "9",
                         "--top", "2"])
    assert capsys.readouterr().out.splitlines()[0] == (
        "0 of 3 functions are over 9 lines; the 2 longest (lines, code lines):")
