"""Where an export is written, and what it may replace.

An export is written to a temporary ``.tmp-<out>-<pid>-*`` folder next to
``out`` and renamed into place (:func:`written_in_place`), so a failed export
never leaves half a model. Overwriting only ever replaces an earlier export
(``saved_model.pb`` and ``metadata.json``), never a folder that holds the
model being exported (:func:`check_out`). Temporaries an export killed
mid-way left behind are removed by the next export of the same folder
(:func:`remove_stale_temporaries`).

Example:
    >>> check_out("models/seg/1", overwrite=False)   # doctest: +SKIP
    >>> with written_in_place("models/seg/1") as tmp:  # doctest: +SKIP
    ...     tf.saved_model.save(module, tmp)
"""

import contextlib
import os
import re
import shutil

from fcn_tf.runs.files import METADATA_FILE, TMP_PREFIX
from fcn_tf.runs.folder import is_saved_model
from fcn_tf.runs.lock import pid_alive
from fcn_tf.utils.files import make_temp_dir


def check_out(out, overwrite, sources=()):
    """Raise unless an export may be written to ``out``: new, or an earlier export to replace."""
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise FileExistsError(f"out {out} is a file; an export is a folder. Choose a new folder "
                              "(TensorFlow Serving wants MODEL/VERSION, e.g. models/seg/1).")
    if not overwrite:
        raise FileExistsError(
            f"out {out} already exists. Pass overwrite=True to replace it, or choose "
            "a new folder (TensorFlow Serving wants MODEL/VERSION, e.g. models/seg/2)."
        )
    check_replaceable(out, sources)


def check_replaceable(out, sources=()):
    """Raise unless ``out`` may be replaced by an export.

    Only a SavedModel export (``saved_model.pb`` and ``metadata.json``) is ever
    replaced, and never one that holds one of ``sources`` (the checkpoint or
    run folder being exported).
    """
    for source in sources:
        if source and _inside(source, out):
            raise ValueError(
                f"out {out} holds the model being exported ({source}); replacing it would "
                "delete the source. Choose another folder (e.g. RUN/export)."
            )
    if not (is_saved_model(out) and os.path.isfile(os.path.join(out, METADATA_FILE))):
        raise FileExistsError(
            f"out {out} exists and is not a SavedModel export (no saved_model.pb and "
            f"{METADATA_FILE}); overwrite only ever replaces an export. Choose a new folder "
            "or remove this one yourself."
        )


@contextlib.contextmanager
def written_in_place(out):
    """A new temporary folder next to ``out``, moved to ``out`` when the block succeeds.

    An existing ``out`` is replaced last (check it with :func:`check_out`
    first); when the block raises, the temporary folder is deleted and
    ``out`` is left as it was.
    """
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = make_temp_dir(parent, prefix=f"{TMP_PREFIX}{os.path.basename(out)}-{os.getpid()}-")
    try:
        yield tmp
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(out):
    """Delete ``.tmp-*`` / ``.old-*`` folders that an export killed mid-way left next to ``out``.

    Only folders named after ``out`` whose writing process is no longer
    running are removed. Returns the removed paths.
    """
    parent, name = os.path.split(os.path.abspath(out))
    pattern = re.compile(rf"^(?:{re.escape(TMP_PREFIX)}{re.escape(name)}|{re.escape(name)}"
                         r"\.old)-(\d+)(?:-|$)")
    removed = []
    for entry in os.listdir(parent) if os.path.isdir(parent) else ():
        match = pattern.match(entry)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            removed.append(os.path.join(parent, entry))
    return removed


def folder_size(path):
    """The bytes of every file under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _inside(path, folder):
    """Whether ``path`` is ``folder`` or lies inside it."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _replace_folder(source, target):
    """Move ``source`` to ``target``, replacing an existing ``target`` last."""
    if not os.path.exists(target):
        os.replace(source, target)
        return
    old = f"{target}.old-{os.getpid()}"
    os.replace(target, old)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
