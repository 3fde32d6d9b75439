"""Where predictions are written, and what they may replace.

Nothing a user made is written over. predict records each file it writes in
its output folder in ``.fcn_tf_predict.jsonl`` (:data:`MANIFEST`: name, size,
modification time) and replaces, on a later run, only files listed there and
unchanged since (:func:`made_by_predict`). :func:`check_outputs` refuses,
before any work starts, an output that would replace any other existing file
(unless ``overwrite``), an input (even then) or a folder.

Example:
    >>> plan = plan_outputs(["a.png", "b/a.jpg"], probabilities=False)
    >>> [names[0] for _, names in plan]
    ['a.png', 'a-2.png']
"""

import json
import os

MANIFEST = ".fcn_tf_predict.jsonl"


def read_manifest(folder):
    """``{file name: {"size", "mtime_ns"} or None}``: what predict wrote in ``folder``.

    ``None`` marks a file predict was about to write when it stopped. The
    manifest is ``folder/.fcn_tf_predict.jsonl``, one JSON object per line;
    the last line about a name wins, and a line cut short by a crash is skipped.
    """
    path = os.path.join(folder, MANIFEST)
    files = {}
    if not os.path.isfile(path):
        return files
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                files[entry["name"]] = entry.get("stat")
            except (ValueError, KeyError, TypeError):
                continue
    return files


class Manifest:
    """The manifest of ``folder``, compacted once, then appended to as files are written."""

    def __init__(self, folder):
        self.path = os.path.join(folder, MANIFEST)
        self.files = {name: entry for name, entry in read_manifest(folder).items()
                      if os.path.lexists(os.path.join(folder, name))}
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(_line(name, entry) for name, entry in self.files.items())
        os.replace(temporary, self.path)

    def record(self, names, folder, written):
        """Append ``names`` as about to be written (``written=False``) or as written."""
        with open(self.path, "a", encoding="utf-8") as handle:
            for name in names:
                entry = None
                if written:
                    info = os.stat(os.path.join(folder, name))
                    entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
                self.files[name] = entry
                handle.write(_line(name, entry))


def _line(name, entry):
    return json.dumps({"name": name, "stat": entry}, ensure_ascii=False) + "\n"


def made_by_predict(folder, name, manifest):
    """Whether ``folder/name`` is a file predict wrote there and nobody changed since."""
    if name not in manifest:
        return False
    path = os.path.join(folder, name)
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    entry = manifest[name]
    if entry is None:  # predict stopped while writing it
        return True
    info = os.stat(path)
    return info.st_size == entry["size"] and info.st_mtime_ns == entry["mtime_ns"]


def output_names(stem, probabilities):
    """The files predict writes for an image of stem ``stem``."""
    return [f"{stem}.png", f"{stem}_overlay.png"] + (
        [f"{stem}_probabilities.npy"] if probabilities else [])


def plan_outputs(paths, probabilities):
    """``[(path, [output names])]``: a stem of its own for every image.

    Images sharing a stem (``a.png`` and ``a.jpg``, or the same name in two
    folders) get ``a``, ``a-2``, ``a-3`` ..., skipping any stem another image
    already uses; names are compared without case (macOS and Windows folders
    ignore it).
    """
    taken, plan = set(), []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        candidate, number = stem, 1
        while any(n.casefold() in taken for n in output_names(candidate, probabilities)):
            number += 1
            candidate = f"{stem}-{number}"
        names = output_names(candidate, probabilities)
        taken.update(n.casefold() for n in names)
        plan.append((path, names))
    return plan


def _file_id(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_outputs(plan, inputs, out_dir, overwrite=False):
    """Refuse, before anything is written, outputs that would replace inputs or others' files.

    An output may replace only a file predict wrote there (:func:`made_by_predict`),
    or with ``overwrite`` any file; never an input (the same file, also through
    a link) nor a folder.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {out_dir} is a file; give a folder.")
    input_ids = {i for i in map(_file_id, inputs) if i is not None}
    manifest = read_manifest(out_dir) if os.path.isdir(out_dir) else {}
    over_inputs, others = [], []
    for path, names in plan:
        for name in names:
            target = os.path.join(out_dir, name)
            if _file_id(target) in input_ids:
                over_inputs.append(f"{target} (the input {path})" if os.path.normpath(target)
                                   != os.path.normpath(path) else target)
            elif os.path.isdir(target):
                raise IsADirectoryError(
                    f"out_dir {out_dir}: {name} is a folder, where predict would write a file. "
                    "Move it; out_dir may also name another folder.")
            elif os.path.lexists(target) and not overwrite and not made_by_predict(
                    out_dir, name, manifest):
                changed = " (predict wrote it, but it changed since)" if name in manifest else ""
                others.append(f"{target}{changed}")
    if over_inputs:
        raise ValueError(
            f"out_dir {out_dir}: predict would write over {len(over_inputs)} of its inputs:"
            f"{_listed(over_inputs)}\nIt never writes over an input, even with overwrite=True. "
            "out_dir must name another folder.")
    if others:
        raise FileExistsError(
            f"out_dir {out_dir}: predict would write over {len(others)} file(s) it did not "
            f"make:{_listed(others)}\nNothing was written. Pass overwrite=True to replace them "
            f"(files predict made, listed in {os.path.join(out_dir, MANIFEST)}, are replaced "
            "without it); out_dir may also name another folder.")


def _listed(items, limit=10):
    shown = "".join(f"\n  {item}" for item in items[:limit])
    return shown + (f"\n  ... and {len(items) - limit} more" if len(items) > limit else "")
