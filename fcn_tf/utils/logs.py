"""What the command-line tools print besides their own output: one home.

TensorFlow's C++ code writes to file descriptor 2 itself, and some of what it
writes says nothing about the user's run:

- while its libraries load, before it has read ``TF_CPP_MIN_LOG_LEVEL``,
  absl's "All log messages before absl::InitializeLog() is called ..." and
  the INFO notice "oneDNN custom operations are on ..." (once per library
  that carries a copy: twice), which no setting hides;
- INFO lines after that ("This TensorFlow binary is optimized to use
  available CPU instructions ..."), which ``TF_CPP_MIN_LOG_LEVEL=1`` hides;
- warnings of the TFLite converter about flags TensorFlow's own converter
  passes it ("Ignored output_format.", "Ignored drop_control_dependency.").

:func:`quiet_tensorflow`, which the package face calls for ``python -m
fcn_tf.<tool>``, sets ``TF_CPP_MIN_LOG_LEVEL=1`` unless the user set it, and
drops the first kind while TensorFlow is imported; :func:`notices_dropped`
drops given lines from fd 2 while a block runs. TensorFlow's warnings and
errors still reach the user, and ``TF_CPP_MIN_LOG_LEVEL=0`` shows everything.

Python's own logging: :func:`log_to_stderr` gives the package's loggers a
handler, not the root logger, which would print every TensorFlow warning a
second time (TensorFlow's logger has its own handler and passes its records
on to the root).

This module imports neither TensorFlow nor the rest of the package: it also
runs as a script, the forwarder of :func:`notices_dropped`.
"""

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import subprocess
import sys

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "1"  # INFO hidden; warnings and errors shown

# absl's line prefix: severity, date, time, thread, file:line.
_ABSL_PREFIX = r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] "
START_UP_NOTICES = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called",
    _ABSL_PREFIX.replace("[IWEF]", "I", 1),  # INFO lines, written before the level is read
)
CONVERTER_NOTICES = (
    _ABSL_PREFIX + r"Ignored (output_format|drop_control_dependency)\.$",
)


def quiet_tensorflow():
    """Keep TensorFlow's C++ start-up notices out of the log; call before TensorFlow loads.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to 1 unless it is set, and, when its value
    is not 0 and TensorFlow is not imported yet, arranges for
    :data:`START_UP_NOTICES` to be dropped while it is imported (whichever
    module imports it first). Calling it again does nothing more.
    """
    os.environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)
    if os.environ[LEVEL_VARIABLE].strip() == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def quiet_tensorflow_for_tools():
    """:func:`quiet_tensorflow` when Python runs ``python -m fcn_tf.<tool>``, else nothing.

    The package face calls it: it runs before any module of the package, so
    before any of them imports TensorFlow. While ``-m`` looks for its module
    (importing its packages), ``sys.argv[0]`` is ``"-m"``; a program that only
    imports the package keeps TensorFlow's defaults.
    """
    if sys.argv[:1] == ["-m"]:
        quiet_tensorflow()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, and imports it with its notices dropped."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and not for the look-up below
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and not isinstance(spec.loader, type):
            _drop_notices_while_executed(spec.loader)
        return spec


def _drop_notices_while_executed(loader):
    exec_module = loader.exec_module

    def quiet_exec_module(module):
        try:
            with notices_dropped(START_UP_NOTICES):
                exec_module(module)
        finally:
            del loader.exec_module  # the loader's own method again

    loader.exec_module = quiet_exec_module


@contextlib.contextmanager
def notices_dropped(notices):
    """While the block runs, lines written to fd 2 that match one of ``notices`` are dropped.

    Every other line is passed on as it comes, by a small process of its own
    (this module run as a script): TensorFlow writes while its libraries load,
    when no thread of this process can run, and a crash's last words must get
    out too. If that process cannot start, nothing is dropped.

    Args:
        notices: regular expressions, each matched at the start of a line.
    """
    try:
        forwarder = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__),
                                      *notices], stdin=subprocess.PIPE, stdout=2)
    except (OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(forwarder.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        forwarder.stdin.close()
        forwarder.wait()


def _forward(notices, source, sink):
    """Copy ``source``'s lines to ``sink``, leaving out those that match a notice."""
    dropped = re.compile("|".join(f"(?:{notice})" for notice in notices).encode())
    for line in source:
        if not dropped.match(line.rstrip(b"\r\n")):
            sink.write(line)
            sink.flush()


def log_to_stderr(level=logging.INFO, logger="fcn_tf"):
    """The package's log records (``fcn_tf.*``) on stderr, with their time and logger name.

    Only ``logger`` gets the handler (once, however often this is called);
    other libraries' loggers keep their own.
    """
    package = logging.getLogger(logger)
    package.setLevel(level)
    if not any(getattr(handler, "fcn_tf_stderr", False) for handler in package.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        handler.fcn_tf_stderr = True
        package.addHandler(handler)


if __name__ == "__main__":
    _forward(sys.argv[1:], sys.stdin.buffer, sys.stdout.buffer)
