"""The names of a run folder's files, and how they are written (atomically).

Every file is written to a temporary ``.tmp-*`` name in the same folder and
moved into place with :func:`os.replace`, which is atomic on POSIX and
Windows, so a crash at any moment (``kill -9`` included) leaves either the
old file or the new one, never half of one.

Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> atomic_write_json(os.path.join(folder, STATE_FILE), {"epochs_completed": 1})
    >>> read_json(os.path.join(folder, STATE_FILE))
    {'epochs_completed': 1}
"""

import json
import os
import tempfile

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
WORKERS_DIR = ".workers"
# What an exported SavedModel folder holds next to saved_model.pb.
SAVED_MODEL_FILE = "saved_model.pb"
METADATA_FILE = "metadata.json"
KERAS_SUFFIX = ".keras"
TMP_PREFIX = ".tmp-"


def eval_dir_name(split):
    """The report folder of ``python -m fcn_tf.evaluate`` for ``split``."""
    return f"eval-{split}"


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (temp file + ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(path))
    try:
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
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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
    """The JSON document at ``path``, or ``None`` when there is no such file."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
