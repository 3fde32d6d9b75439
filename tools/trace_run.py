"""Follow one tiny training run through ``fcn_tf``: which functions it visits, in which files.

Runs ``python -m fcn_tf.train config.json`` in this process, shrunk to a few
seconds of work (a 4-filter U-Net, 2 steps of 2 crops of 32x32, one epoch),
with the final evaluation, sample pictures and export left on, so every part
of a run is walked. ``sys.setprofile`` (and ``threading.setprofile``) records
each call into a function defined in the ``fcn_tf`` package that was
imported; module bodies (``<module>``), lambdas and comprehensions are not
counted as places. It prints the number of distinct functions and files
visited, and the hub files: those with the most functions visited and those
that most calls cross into or out of.

The built-in dataset is generated, if needed, before tracing starts, so a
first run and a later one walk the same code.

Usage, from a checkout's root (``PYTHONPATH`` picks the checkout to trace)::

    PYTHONPATH=. python tools/trace_run.py [--config config.json] [--list] [--count NAME]
"""

import argparse
import collections
import os
import sys
import tempfile
import threading

import fcn_tf
import fcn_tf.train
from fcn_tf.data import ensure_builtin_dataset

# The overrides that make the default run tiny; everything else is config.json's.
TINY = [
    'model.options={"base_filters": 4, "depth": 2}',
    "data.crop_size=[32, 32]",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.jit_compile=false",
    "output.tensorboard=false",
    "output.sample_images=2",
]


class CallTrace:
    """A ``setprofile`` hook collecting the functions of one package that were called."""

    def __init__(self, package_dir):
        self.package_dir = package_dir
        self.places = set()  # (file, line, function)
        self.calls = collections.Counter()  # place -> number of calls
        self.edges = collections.Counter()  # (caller place, callee place) -> number of calls

    def _place(self, frame):
        code = frame.f_code
        path = os.path.abspath(code.co_filename)
        if not path.startswith(self.package_dir) or code.co_name.startswith("<"):
            return None
        return os.path.relpath(path, os.path.dirname(self.package_dir)), code.co_firstlineno, code.co_name

    def __call__(self, frame, event, arg):
        if event != "call":
            return
        place = self._place(frame)
        if place is None:
            return
        self.places.add(place)
        self.calls[place] += 1
        caller = frame.f_back
        while caller is not None and self._place(caller) is None and \
                os.path.abspath(caller.f_code.co_filename).startswith(self.package_dir):
            caller = caller.f_back  # a lambda or comprehension: its enclosing function
        origin = self._place(caller) if caller is not None else None
        if origin is not None and origin != place:
            self.edges[origin, place] += 1

    def run(self, function, *args):
        threading.setprofile(self)
        sys.setprofile(self)
        try:
            return function(*args)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)


def report(trace, top=6, listing=False, counted=()):
    """The summary lines: places, files, the hub files, and the calls of ``counted`` functions."""
    per_file = collections.Counter(path for path, _, _ in trace.places)
    crossing = collections.Counter()
    for (a, _, _), (b, _, _) in {(o, p) for o, p in trace.edges if o[0] != p[0]}:
        crossing[a] += 1
        crossing[b] += 1
    lines = [f"{len(trace.places)} functions visited in {len(per_file)} files of fcn_tf",
             "files with the most functions visited:"]
    lines += [f"  {count:3d}  {path}" for path, count in per_file.most_common(top)]
    lines.append("files with the most calls crossing into or out of them (distinct caller-callee pairs):")
    lines += [f"  {count:3d}  {path}" for path, count in crossing.most_common(top)]
    for name in counted:
        found = sum(n for place, n in trace.calls.items() if place[2] == name)
        lines.append(f"calls of {name}: {found}, from:")
        lines += [f"  {n:3d}  {path}:{line} {caller}"
                  for ((path, line, caller), callee), n in sorted(trace.edges.items())
                  if callee[2] == name]
    if listing:
        lines.append("functions visited:")
        lines += [f"  {path}:{line} {name}" for path, line, name in sorted(trace.places)]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.json", help="the run config to shrink")
    parser.add_argument("--data-root", help="the built-in dataset's folder (default: a "
                        "scratch folder; generated if needed)")
    parser.add_argument("--list", action="store_true", help="also list every function visited")
    parser.add_argument("--count", action="append", default=[], metavar="FUNCTION",
                        help="also print how often functions of this name were called "
                             "(e.g. get_model_spec); may be repeated")
    args = parser.parse_args(argv)

    package_dir = os.path.dirname(os.path.abspath(fcn_tf.__file__)) + os.sep
    with tempfile.TemporaryDirectory(prefix="trace_run-") as scratch:
        data_root = ensure_builtin_dataset(args.data_root or os.path.join(scratch, "builtin"))
        argv = [args.config, "--quiet", "--set", f"data.root={data_root}",
                "--set", f"output.dir={os.path.join(scratch, 'runs')}"]
        for item in TINY:
            argv += ["--set", item]
        trace = CallTrace(package_dir)
        code = trace.run(fcn_tf.train.main, argv)
    print(f"traced {package_dir} (python -m fcn_tf.train exited with {code})")
    print("\n".join(report(trace, listing=args.list, counted=args.count)))
    return code


if __name__ == "__main__":
    sys.exit(main())
