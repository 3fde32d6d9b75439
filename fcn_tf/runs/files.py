"""The names of a run folder's files, and how they are written (atomically).

Every file is written to a temporary ``.tmp-*`` name in the same folder and
moved into place with :func:`os.replace`, which is atomic on POSIX and
Windows, so a crash at any moment (``kill -9`` included) leaves either the
old file or the new one, never half of one.

Files and folders get the permissions the user's umask gives (0644 and 0755
under umask 022), like any file the user makes: :mod:`tempfile` would make
them 0600 and 0700, unreadable to the others sharing a folder.
:func:`make_temp_dir` is the folder counterpart, for a temporary folder that
is renamed into place (an export). JSON is always valid JSON: NaN and
infinity (a metric of a split with no labelled pixel) are written as
``null``.

Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> atomic_write_json(os.path.join(folder, STATE_FILE), {"epochs_completed": 1})
    >>> read_json(os.path.join(folder, STATE_FILE))
    {'epochs_completed': 1}
"""

import json
import math
import os
import tempfile

from fcn_tf.utils.files import apply_umask, current_umask, make_temp_dir  # noqa: F401 (re-exported)

# What a run folder holds.
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
PREPROCESSING_FILE = "preprocessing.json"
BEST_CHECKPOINT = "best.keras"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
PREDICTIONS_FILE = "predictions.png"
TENSORBOARD_DIR = "tensorboard"
EXPORT_DIR = "export"
LOCK_FILE = ".lock"
# Written first into every run folder this package makes; see fcn_tf.runs.folder.
RUN_MARKER = "fcn_tf-run.json"
WORKERS_DIR = ".workers"
# What an exported SavedModel folder holds next to saved_model.pb.
SAVED_MODEL_FILE = "saved_model.pb"
METADATA_FILE = "metadata.json"
KERAS_SUFFIX = ".keras"
TMP_PREFIX = ".tmp-"


def eval_dir_name(split):
    """The report folder of ``python -m fcn_tf.evaluate`` for ``split``."""
    return f"eval-{split}"


class DamagedFileError(ValueError):
    """A JSON file of a run folder or export that cannot be read; the message names it."""


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (temp file + ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(path))
    try:
        if hasattr(os, "fchmod"):  # POSIX: mkstemp's 0600 -> what open() would give
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path, data):
    """Write ``data`` as indented JSON to ``path`` atomically; NaN and infinity become ``null``."""
    text = json.dumps(finite_json(data), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def finite_json(data):
    """``data`` with every non-finite float (NaN, infinity) replaced by ``None``."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def atomic_save_model(model, path):
    """``model.save(path)`` through a temporary ``.keras`` file and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(path):
    """The JSON document at ``path``, or ``None`` when there is no such file.

    Raises:
        DamagedFileError: the file is not UTF-8 JSON (truncated, edited or
            overwritten); the message names it.
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        reason = f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except RecursionError:
        reason = "nested too deeply"
    raise DamagedFileError(f"{path} is {reason}: the file is damaged or was edited.")
